// Builds test frames byte by byte (Ethernet/802.1Q, IPv4/IPv6, UDP, ARP, ICMP)
// with correct checksums unless a test asks otherwise.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/net_addr.h"

namespace karl::test {

using Bytes = std::vector<uint8_t>;

struct UdpSpec {
  IpAddress src;
  IpAddress dst;
  uint16_t sport = 40000;
  uint16_t dport = 30000;
  Bytes payload = Bytes(160, 0xab);
  uint16_t vlan = 0;
  MacAddress src_mac = *MacAddress::Parse("02:00:00:00:00:02");
  MacAddress dst_mac = *MacAddress::Parse("02:00:00:00:00:01");
  bool udp_checksum = true;   // IPv4: false writes 0 (= none)
  uint16_t ip_id = 0x1234;    // IPv4 identification
  uint8_t traffic_class = 0;  // IPv4 TOS / IPv6 traffic class
};

// A 172-byte RTP packet (12-byte header + 160 bytes) with this sequence number.
Bytes RtpPayload(uint16_t seq, uint32_t ssrc = 0x11223344, uint8_t pt = 0);
// An RTCP receiver report (RR with no report blocks) from `ssrc`.
Bytes RtcpReceiverReport(uint32_t ssrc);

// A complete Ethernet frame carrying UDP over IPv4 or IPv6 (by src family).
Bytes BuildUdp(const UdpSpec& spec);
// ARP request (who-has target, tell sender).
Bytes BuildArpRequest(const MacAddress& sender_mac, const IpAddress& sender,
                      const IpAddress& target);
// ICMP echo request (IPv4) / ICMPv6 echo request (IPv6).
Bytes BuildEchoRequest(const MacAddress& src_mac, const MacAddress& dst_mac, const IpAddress& src,
                       const IpAddress& dst, uint16_t id, uint16_t seq);
// ICMPv6 neighbor solicitation for `target` from `src` to its solicited-node group.
Bytes BuildNeighborSolicit(const MacAddress& src_mac, const IpAddress& src,
                           const IpAddress& target);

// Offsets into frames built without VLAN.
inline constexpr size_t kEthLen = 14;
inline constexpr size_t kIpv4Len = 20;
inline constexpr size_t kIpv6Len = 40;

// Recomputes the IPv4 header checksum of an untagged frame (after a test edits it).
void FixIpv4Checksum(Bytes& frame);
uint16_t InternetChecksum(const uint8_t* data, size_t len, uint32_t initial = 0);

}  // namespace karl::test
