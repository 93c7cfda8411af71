// The control plane's side of the exception path: ARP (RFC 826), ICMP echo
// (RFC 792) and ICMPv6 echo / neighbor discovery (RFC 4443, RFC 4861) for Karl's own
// addresses, and ICE connectivity checks (STUN, answered by the StunHandler). Answers are built in
// place in the received mbuf and sent by the worker that received the request. Thread:
// control-plane thread only.
#include <rte_arp.h>
#include <rte_icmp.h>

#include <array>
#include <cstring>

#include "dataplane/dataplane.h"

namespace karl::dp {
namespace {

constexpr uint8_t kIcmp6EchoRequest = 128;
constexpr uint8_t kIcmp6EchoReply = 129;
constexpr uint8_t kIcmp6NeighborSolicit = 135;
constexpr uint8_t kIcmp6NeighborAdvert = 136;
constexpr uint8_t kNdOptSourceLinkAddr = 1;
constexpr uint8_t kNdOptTargetLinkAddr = 2;

void SwapEther(rte_ether_hdr* eth, const MacAddress& ours) {
  std::memcpy(eth->dst_addr.addr_bytes, eth->src_addr.addr_bytes, RTE_ETHER_ADDR_LEN);
  std::memcpy(eth->src_addr.addr_bytes, ours.bytes().data(), RTE_ETHER_ADDR_LEN);
}

// RFC 826: answer a request for one of our IPv4 addresses.
bool AnswerArp(rte_mbuf* m, const PortRuntime& port, uint16_t l3) {
  if (m->data_len < l3 + sizeof(rte_arp_hdr)) return false;
  auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
  auto* arp = rte_pktmbuf_mtod_offset(m, rte_arp_hdr*, l3);
  if (arp->arp_hardware != RTE_BE16(RTE_ARP_HRD_ETHER) ||
      arp->arp_protocol != RTE_BE16(RTE_ETHER_TYPE_IPV4) || arp->arp_hlen != RTE_ETHER_ADDR_LEN ||
      arp->arp_plen != 4 || arp->arp_opcode != RTE_BE16(RTE_ARP_OP_REQUEST) ||
      !port.ctx.IsOurV4(arp->arp_data.arp_tip)) {
    return false;
  }
  const rte_be32_t asked = arp->arp_data.arp_tip;
  arp->arp_opcode = RTE_BE16(RTE_ARP_OP_REPLY);
  arp->arp_data.arp_tha = arp->arp_data.arp_sha;
  arp->arp_data.arp_tip = arp->arp_data.arp_sip;
  std::memcpy(arp->arp_data.arp_sha.addr_bytes, port.mac.bytes().data(), RTE_ETHER_ADDR_LEN);
  arp->arp_data.arp_sip = asked;
  SwapEther(eth, port.mac);
  return true;
}

// An answer goes back the way the request came: addresses swapped, a fresh TTL (and,
// for IPv4, the header checksum over the final header: set total_length first).
void TurnAround(rte_ipv4_hdr* ip) {
  const rte_be32_t src = ip->src_addr;
  ip->src_addr = ip->dst_addr;
  ip->dst_addr = src;
  ip->time_to_live = 64;
  ip->hdr_checksum = 0;
  ip->hdr_checksum = rte_ipv4_cksum(ip);
}

void TurnAround(rte_ipv6_hdr* ip) {
  uint8_t tmp[16];
  std::memcpy(tmp, ip->src_addr, 16);
  std::memcpy(ip->src_addr, ip->dst_addr, 16);
  std::memcpy(ip->dst_addr, tmp, 16);
  ip->hop_limits = 64;
}

// RFC 792: echo request to one of our addresses -> echo reply.
bool AnswerIcmp4(rte_mbuf* m, const PortRuntime& port, const ParsedPacket& p) {
  auto* ip = rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, p.l3_offset);
  const uint32_t ip_len = rte_be_to_cpu_16(ip->total_length);
  const uint32_t icmp_len = ip_len - (p.l4_offset - p.l3_offset);
  if (icmp_len < sizeof(rte_icmp_hdr)) return false;
  auto* icmp = rte_pktmbuf_mtod_offset(m, rte_icmp_hdr*, p.l4_offset);
  if (icmp->icmp_type != RTE_IP_ICMP_ECHO_REQUEST || icmp->icmp_code != 0) return false;
  TurnAround(ip);
  icmp->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
  icmp->icmp_cksum = 0;
  icmp->icmp_cksum = static_cast<uint16_t>(~rte_raw_cksum(icmp, icmp_len));
  SwapEther(rte_pktmbuf_mtod(m, rte_ether_hdr*), port.mac);
  return true;
}

uint16_t Icmp6Checksum(const rte_ipv6_hdr* ip, const void* icmp) {
  // Same pseudo-header sum as UDP (RFC 8200 §8.1) with next header 58.
  return rte_ipv6_udptcp_cksum(ip, icmp);
}

// RFC 4861 §7.2.4 (solicitation for our address -> advertisement) and RFC 4443 §4.1
// (echo request -> echo reply).
bool AnswerIcmp6(rte_mbuf* m, const PortRuntime& port, const ParsedPacket& p) {
  auto* ip = rte_pktmbuf_mtod_offset(m, rte_ipv6_hdr*, p.l3_offset);
  const uint32_t end = p.l3_offset + sizeof(rte_ipv6_hdr) + rte_be_to_cpu_16(ip->payload_len);
  if (end < p.l4_offset + 4u) return false;
  uint8_t* icmp = rte_pktmbuf_mtod_offset(m, uint8_t*, p.l4_offset);
  const uint32_t icmp_len = end - p.l4_offset;
  if (p.l4_offset != p.l3_offset + sizeof(rte_ipv6_hdr)) return false;  // keep it simple
  auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);

  if (icmp[0] == kIcmp6EchoRequest && icmp[1] == 0 && port.ctx.IsOurV6(ip->dst_addr)) {
    TurnAround(ip);
    icmp[0] = kIcmp6EchoReply;
    icmp[2] = icmp[3] = 0;
    const uint16_t ck = Icmp6Checksum(ip, icmp);
    std::memcpy(icmp + 2, &ck, 2);
    SwapEther(eth, port.mac);
    return true;
  }

  if (icmp[0] != kIcmp6NeighborSolicit || icmp[1] != 0 || icmp_len < 24 || ip->hop_limits != 255) {
    return false;
  }
  const uint8_t* target = icmp + 8;
  if (!port.ctx.IsOurV6(target)) return false;
  static constexpr uint8_t kUnspecified[16] = {};
  static constexpr uint8_t kAllNodes[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const bool dad = std::memcmp(ip->src_addr, kUnspecified, 16) == 0;
  // Reply to the solicitor (or all-nodes for duplicate address detection).
  std::memcpy(ip->dst_addr, dad ? kAllNodes : ip->src_addr, 16);
  std::memcpy(ip->src_addr, target, 16);
  // target stays at icmp+8; flags: Solicited (unless DAD) and Override.
  icmp[0] = kIcmp6NeighborAdvert;
  icmp[1] = 0;
  icmp[4] = static_cast<uint8_t>(dad ? 0x20 : 0x60);
  icmp[5] = icmp[6] = icmp[7] = 0;
  icmp[24] = kNdOptTargetLinkAddr;
  icmp[25] = 1;
  const uint32_t na_len = 32;
  if (m->buf_len < m->data_off + p.l4_offset + na_len) return false;
  std::memcpy(icmp + 26, port.mac.bytes().data(), 6);
  ip->payload_len = rte_cpu_to_be_16(na_len);
  ip->hop_limits = 255;
  const uint32_t frame_len = p.l4_offset + na_len;
  m->data_len = static_cast<uint16_t>(frame_len);
  m->pkt_len = frame_len;
  icmp[2] = icmp[3] = 0;
  const uint16_t ck = Icmp6Checksum(ip, icmp);
  std::memcpy(icmp + 2, &ck, 2);
  if (dad) {
    static constexpr uint8_t kAllNodesMac[6] = {0x33, 0x33, 0, 0, 0, 1};
    std::memcpy(eth->dst_addr.addr_bytes, kAllNodesMac, 6);
    std::memcpy(eth->src_addr.addr_bytes, port.mac.bytes().data(), 6);
  } else {
    SwapEther(eth, port.mac);
  }
  return true;
}

}  // namespace

void Dataplane::Learn(uint16_t port_id, const IpAddress& address, const uint8_t* mac) {
  std::array<uint8_t, 6> b;
  std::memcpy(b.data(), mac, 6);
  if (learned_.size() < 4096) learned_.push_back(LearnedNeighbor{port_id, address, MacAddress(b)});
}

// RFC 826: a request or reply addressed to one of our IPv4 addresses teaches us the
// sender's MAC.
void Dataplane::LearnFromArp(const rte_mbuf* m, const PortRuntime& port, uint16_t l3) {
  if (m->data_len < l3 + sizeof(rte_arp_hdr)) return;
  const auto* arp = rte_pktmbuf_mtod_offset(m, const rte_arp_hdr*, l3);
  if (arp->arp_hardware != RTE_BE16(RTE_ARP_HRD_ETHER) ||
      arp->arp_protocol != RTE_BE16(RTE_ETHER_TYPE_IPV4) ||
      !port.ctx.IsOurV4(arp->arp_data.arp_tip) || arp->arp_data.arp_sip == 0) {
    return;
  }
  Learn(port.port_id, IpAddress::V4(rte_be_to_cpu_32(arp->arp_data.arp_sip)),
        arp->arp_data.arp_sha.addr_bytes);
}

// RFC 4861 §7.2.3/§7.2.5: a solicitation's source link-layer option and an
// advertisement's target link-layer option teach us a neighbor's MAC.
void Dataplane::LearnFromNdp(const rte_mbuf* m, const PortRuntime& port, const ParsedPacket& p) {
  const auto* ip = rte_pktmbuf_mtod_offset(m, const rte_ipv6_hdr*, p.l3_offset);
  const uint32_t end = p.l3_offset + sizeof(rte_ipv6_hdr) + rte_be_to_cpu_16(ip->payload_len);
  if (end < p.l4_offset + 24u || ip->hop_limits != 255) return;
  const uint8_t* icmp = rte_pktmbuf_mtod_offset(m, const uint8_t*, p.l4_offset);
  const bool ns = icmp[0] == kIcmp6NeighborSolicit;
  const bool na = icmp[0] == kIcmp6NeighborAdvert;
  if (!ns && !na) return;
  static constexpr uint8_t kUnspecified[16] = {};
  const uint8_t* who = ns ? ip->src_addr : icmp + 8;
  if (std::memcmp(who, kUnspecified, 16) == 0) return;
  const uint8_t wanted_opt = ns ? kNdOptSourceLinkAddr : kNdOptTargetLinkAddr;
  for (uint32_t off = p.l4_offset + 24u; off + 8 <= end;) {
    const uint8_t* opt = rte_pktmbuf_mtod_offset(m, const uint8_t*, off);
    if (opt[1] == 0) return;
    if (opt[0] == wanted_opt && opt[1] == 1) {
      std::array<uint8_t, 16> b;
      std::memcpy(b.data(), who, 16);
      Learn(port.port_id, IpAddress::V6(b), opt + 2);
      return;
    }
    off += uint32_t{opt[1]} * 8;
  }
}

// RFC 8445 §7.3 (answered by the handler): the response goes back from the address and
// port the request was sent to, to its source (§7.2.2: symmetric transport addresses).
bool Dataplane::AnswerStun(rte_mbuf* m, const PortRuntime& port, const ParsedPacket& p) {
  if (!stun_handler_ || m->nb_segs != 1) return false;
  const uint32_t id = flow_slots_[p.flow_slot].load(std::memory_order_acquire);
  if (id == kNoStream) return false;
  uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
  auto* udp = reinterpret_cast<rte_udp_hdr*>(frame + p.l4_offset);
  uint8_t* payload = frame + p.l4_offset + sizeof(rte_udp_hdr);
  StunRequest req;
  req.stream = id;
  req.source_port = rte_be_to_cpu_16(udp->src_port);
  std::array<uint8_t, 6> mac;
  std::memcpy(mac.data(), frame + RTE_ETHER_ADDR_LEN, RTE_ETHER_ADDR_LEN);
  req.source_mac = MacAddress(mac);
  auto* ip4 = reinterpret_cast<rte_ipv4_hdr*>(frame + p.l3_offset);
  auto* ip6 = reinterpret_cast<rte_ipv6_hdr*>(frame + p.l3_offset);
  if (p.ip_version == 4) {
    req.source = IpAddress::V4(rte_be_to_cpu_32(ip4->src_addr));
  } else {
    if (p.l4_offset != p.l3_offset + sizeof(rte_ipv6_hdr)) return false;  // extension headers
    std::array<uint8_t, 16> a;
    std::memcpy(a.data(), ip6->src_addr, 16);
    req.source = IpAddress::V6(a);
  }
  req.message = std::span<const uint8_t>(payload, p.udp_payload_len);
  const std::optional<std::vector<uint8_t>> reply = stun_handler_(req);
  if (!reply) return false;
  const uint32_t udp_len = static_cast<uint32_t>(sizeof(rte_udp_hdr) + reply->size());
  const uint32_t frame_len = p.l4_offset + udp_len;
  if (uint32_t{m->data_off} + frame_len > m->buf_len || frame_len > UINT16_MAX) return false;
  std::memcpy(payload, reply->data(), reply->size());
  const rte_be16_t sport = udp->src_port;
  udp->src_port = udp->dst_port;
  udp->dst_port = sport;
  udp->dgram_len = rte_cpu_to_be_16(static_cast<uint16_t>(udp_len));
  udp->dgram_cksum = 0;
  m->data_len = static_cast<uint16_t>(frame_len);
  m->pkt_len = frame_len;
  m->ol_flags = 0;
  if (p.ip_version == 4) {
    ip4->total_length =
        rte_cpu_to_be_16(static_cast<uint16_t>(p.l4_offset - p.l3_offset + udp_len));
    TurnAround(ip4);
    udp->dgram_cksum = rte_ipv4_udptcp_cksum(ip4, udp);
  } else {
    ip6->payload_len = rte_cpu_to_be_16(static_cast<uint16_t>(udp_len));
    TurnAround(ip6);
    udp->dgram_cksum = rte_ipv6_udptcp_cksum(ip6, udp);
  }
  SwapEther(rte_pktmbuf_mtod(m, rte_ether_hdr*), port.mac);
  return true;
}

void Dataplane::HandleException(WorkerState& w, rte_mbuf* m) {
  const PortRuntime* port = FindPortById(m->port);
  bool answered = false;
  if (port != nullptr) {
    ParsedPacket p;
    const Verdict v = ClassifyPacket(m, port->ctx, &p);
    if (v == Verdict::kUdp) {
      answered = AnswerStun(m, *port, p);  // the workers pass only STUN of ICE streams
      if (answered) exception_counters_.stun_responses.Add(1);
    } else if (v == Verdict::kException) {
      if (p.ip_version == 4 && p.l4_proto == IPPROTO_ICMP) {
        answered = AnswerIcmp4(m, *port, p);
        if (answered) exception_counters_.icmp_echo_replies.Add(1);
      } else if (p.ip_version == 6) {
        LearnFromNdp(m, *port, p);
        const uint8_t type = rte_pktmbuf_mtod_offset(m, uint8_t*, p.l4_offset)[0];
        answered = AnswerIcmp6(m, *port, p);
        if (answered) {
          (type == kIcmp6NeighborSolicit ? exception_counters_.neighbor_advertisements
                                         : exception_counters_.icmp_echo_replies)
              .Add(1);
        }
      } else if (p.ip_version == 0) {
        LearnFromArp(m, *port, p.l3_offset);
        answered = AnswerArp(m, *port, p.l3_offset);
        if (answered) exception_counters_.arp_replies.Add(1);
      }
    }
  }
  if (answered) {
    SendThroughWorker(w, m);
  } else {
    exception_counters_.ignored.Add(1);
    rte_pktmbuf_free(m);
  }
}

}  // namespace karl::dp
