#include "tests/dataplane/packet_builder.h"

#include <cstring>

namespace karl::test {
namespace {

void Put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}

// A loop rather than insert(): GCC 12 at -O3 reports a false stringop-overflow there.
void PutBytes(Bytes& b, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) b.push_back(p[i]);
}

void PutEther(Bytes& b, const MacAddress& dst, const MacAddress& src, uint16_t vlan,
              uint16_t type) {
  PutBytes(b, dst.bytes().data(), 6);
  PutBytes(b, src.bytes().data(), 6);
  if (vlan != 0) {
    Put16(b, 0x8100);
    Put16(b, vlan);
  }
  Put16(b, type);
}

void PutIpv4(Bytes& b, const IpAddress& src, const IpAddress& dst, uint8_t proto,
             uint16_t payload_len, uint16_t id = 0x1234, uint8_t tos = 0) {
  const size_t start = b.size();
  b.push_back(0x45);
  b.push_back(tos);
  Put16(b, static_cast<uint16_t>(20 + payload_len));
  Put16(b, id);
  Put16(b, 0x4000);  // DF
  b.push_back(64);
  b.push_back(proto);
  Put16(b, 0);
  PutBytes(b, src.bytes().data(), 4);
  PutBytes(b, dst.bytes().data(), 4);
  const uint16_t ck = InternetChecksum(b.data() + start, 20);
  b[start + 10] = static_cast<uint8_t>(ck >> 8);
  b[start + 11] = static_cast<uint8_t>(ck);
}

void PutIpv6(Bytes& b, const IpAddress& src, const IpAddress& dst, uint8_t nh, uint16_t payload_len,
             uint8_t hop_limit = 64, uint8_t tc = 0) {
  Put16(b, static_cast<uint16_t>(0x6000 | (tc << 4)));
  Put16(b, 0);
  Put16(b, payload_len);
  b.push_back(nh);
  b.push_back(hop_limit);
  PutBytes(b, src.bytes().data(), 16);
  PutBytes(b, dst.bytes().data(), 16);
}

// Pseudo-header sum (RFC 768 / RFC 8200 §8.1), not yet folded or complemented.
uint32_t PseudoSum(const IpAddress& src, const IpAddress& dst, uint8_t proto, uint32_t len) {
  uint32_t sum = 0;
  const size_t n = src.is_v4() ? 4 : 16;
  for (size_t i = 0; i < n; i += 2) {
    sum += (uint32_t{src.bytes()[i]} << 8) | src.bytes()[i + 1];
    sum += (uint32_t{dst.bytes()[i]} << 8) | dst.bytes()[i + 1];
  }
  sum += proto;
  sum += len;
  return sum;
}

void SetChecksum(Bytes& b, size_t at, uint16_t ck) {
  b[at] = static_cast<uint8_t>(ck >> 8);
  b[at + 1] = static_cast<uint8_t>(ck);
}

}  // namespace

uint16_t InternetChecksum(const uint8_t* data, size_t len, uint32_t sum) {
  for (size_t i = 0; i + 1 < len; i += 2) sum += (uint32_t{data[i]} << 8) | data[i + 1];
  if (len & 1) sum += uint32_t{data[len - 1]} << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

Bytes BuildUdp(const UdpSpec& s) {
  Bytes b;
  const bool v4 = s.src.is_v4();
  PutEther(b, s.dst_mac, s.src_mac, s.vlan, v4 ? 0x0800 : 0x86dd);
  const uint16_t udp_len = static_cast<uint16_t>(8 + s.payload.size());
  if (v4) {
    PutIpv4(b, s.src, s.dst, 17, udp_len, s.ip_id, s.traffic_class);
  } else {
    PutIpv6(b, s.src, s.dst, 17, udp_len, 64, s.traffic_class);
  }
  const size_t udp = b.size();
  Put16(b, s.sport);
  Put16(b, s.dport);
  Put16(b, udp_len);
  Put16(b, 0);
  PutBytes(b, s.payload.data(), s.payload.size());
  if (s.udp_checksum || !v4) {
    uint16_t ck = InternetChecksum(b.data() + udp, udp_len, PseudoSum(s.src, s.dst, 17, udp_len));
    if (ck == 0) ck = 0xffff;
    SetChecksum(b, udp + 6, ck);
  }
  return b;
}

Bytes BuildArpRequest(const MacAddress& sender_mac, const IpAddress& sender,
                      const IpAddress& target) {
  Bytes b;
  PutEther(b, *MacAddress::Parse("ff:ff:ff:ff:ff:ff"), sender_mac, 0, 0x0806);
  Put16(b, 1);
  Put16(b, 0x0800);
  b.push_back(6);
  b.push_back(4);
  Put16(b, 1);
  PutBytes(b, sender_mac.bytes().data(), 6);
  PutBytes(b, sender.bytes().data(), 4);
  const uint8_t zero[6] = {};
  PutBytes(b, zero, 6);
  PutBytes(b, target.bytes().data(), 4);
  while (b.size() < 60) b.push_back(0);
  return b;
}

Bytes BuildEchoRequest(const MacAddress& src_mac, const MacAddress& dst_mac, const IpAddress& src,
                       const IpAddress& dst, uint16_t id, uint16_t seq) {
  Bytes b;
  const bool v4 = src.is_v4();
  PutEther(b, dst_mac, src_mac, 0, v4 ? 0x0800 : 0x86dd);
  const uint16_t icmp_len = 8 + 32;
  if (v4) {
    PutIpv4(b, src, dst, 1, icmp_len);
  } else {
    PutIpv6(b, src, dst, 58, icmp_len);
  }
  const size_t icmp = b.size();
  b.push_back(v4 ? 8 : 128);
  b.push_back(0);
  Put16(b, 0);
  Put16(b, id);
  Put16(b, seq);
  for (int i = 0; i < 32; ++i) b.push_back(static_cast<uint8_t>(i));
  const uint32_t initial = v4 ? 0 : PseudoSum(src, dst, 58, icmp_len);
  SetChecksum(b, icmp + 2, InternetChecksum(b.data() + icmp, icmp_len, initial));
  return b;
}

Bytes BuildNeighborSolicit(const MacAddress& src_mac, const IpAddress& src,
                           const IpAddress& target) {
  std::array<uint8_t, 16> group = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff};
  group[13] = target.bytes()[13];
  group[14] = target.bytes()[14];
  group[15] = target.bytes()[15];
  const IpAddress dst = IpAddress::V6(group);
  const std::array<uint8_t, 6> mac = {0x33, 0x33, 0xff, group[13], group[14], group[15]};
  Bytes b;
  PutEther(b, MacAddress(mac), src_mac, 0, 0x86dd);
  const uint16_t len = 32;
  PutIpv6(b, src, dst, 58, len, 255);
  const size_t icmp = b.size();
  b.push_back(135);
  b.push_back(0);
  Put16(b, 0);
  Put16(b, 0);
  Put16(b, 0);
  PutBytes(b, target.bytes().data(), 16);
  b.push_back(1);  // source link-layer address option
  b.push_back(1);
  PutBytes(b, src_mac.bytes().data(), 6);
  SetChecksum(b, icmp + 2, InternetChecksum(b.data() + icmp, len, PseudoSum(src, dst, 58, len)));
  return b;
}

Bytes RtpPayload(uint16_t seq, uint32_t ssrc, uint8_t pt) {
  Bytes b;
  b.push_back(0x80);
  b.push_back(pt);
  Put16(b, seq);
  const uint32_t ts = uint32_t{seq} * 160;
  Put16(b, static_cast<uint16_t>(ts >> 16));
  Put16(b, static_cast<uint16_t>(ts));
  Put16(b, static_cast<uint16_t>(ssrc >> 16));
  Put16(b, static_cast<uint16_t>(ssrc));
  for (int i = 0; i < 160; ++i) b.push_back(static_cast<uint8_t>(seq * 7 + i));
  return b;
}

Bytes RtcpReceiverReport(uint32_t ssrc) {
  Bytes b = {0x80, 201, 0, 1};  // V=2, RC=0, PT=RR, length 1 (8 bytes)
  Put16(b, static_cast<uint16_t>(ssrc >> 16));
  Put16(b, static_cast<uint16_t>(ssrc));
  return b;
}

void FixIpv4Checksum(Bytes& frame) {
  frame[kEthLen + 10] = 0;
  frame[kEthLen + 11] = 0;
  SetChecksum(frame, kEthLen + 10, InternetChecksum(frame.data() + kEthLen, kIpv4Len));
}

}  // namespace karl::test
