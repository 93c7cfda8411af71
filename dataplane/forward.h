// The forward action's header rewrite: a media packet received on one local port
// leaves from the egress leg's local address/port toward its peer, with new
// Ethernet (+802.1Q), IPv4 or IPv6 and UDP headers in front of the unchanged UDP
// payload. IPv4<->IPv6 bridging is the same operation with another header length.
// Thread: worker lcores; no allocation.
#pragma once

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_udp.h>

#include <cstdint>
#include <cstring>

#include "common/drop_reasons.h"
#include "dataplane/flow.h"
#include "dataplane/packet.h"

namespace karl::dp {

// What the worker knows of the egress port.
struct EgressPort {
  uint16_t port_id = 0;
  uint16_t vlan = 0;
  uint8_t mac[6] = {};
  // TX checksum offloads the port was configured with (D24): the IPv4 header checksum,
  // and the UDP checksum where a full one is needed (a payload SRTP rewrote; IPv4
  // without a checksum bridged to IPv6). An unchanged payload keeps the cheaper RFC 1624
  // incremental update in software.
  bool tx_ip_cksum_offload = false;
  bool tx_udp_cksum_offload = false;
};

namespace detail {

inline uint32_t Sum16(const void* p, size_t len) noexcept {
  return FastSum(p, static_cast<uint32_t>(len));  // already folded to 16 bits
}

// RFC 1624 incremental update: the checksum field `old` covered `old_sum` (folded
// one's complement sum of the fields that change) and must now cover `new_sum`.
inline uint16_t UpdateChecksum(uint16_t old, uint32_t old_sum, uint32_t new_sum) noexcept {
  old_sum = Fold(old_sum);
  new_sum = Fold(new_sum);
  uint32_t sum = static_cast<uint16_t>(~old);
  sum += static_cast<uint16_t>(~old_sum);
  sum += new_sum;
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  const uint16_t out = static_cast<uint16_t>(~sum);
  return out == 0 ? 0xffff : out;  // RFC 768: a computed 0 is sent as all ones
}

// The one's complement sum (native byte order, as FastSum) of the egress's two
// addresses, the part of the UDP pseudo-header that comes from it. Read from the stream
// config, never from the frame being rewritten: reading back header fields just stored
// with narrower writes stalls store forwarding (measured: two such reloads were 40 % of
// the rewrite). Adding both ports gives the sum of everything the rewrite changes in
// what the UDP checksum covers.
inline uint32_t AddressSum(const Egress& e) noexcept {
  if (e.family == 4) {
    uint32_t src, dst;
    std::memcpy(&src, e.src_addr, 4);
    std::memcpy(&dst, e.dst_addr, 4);
    return FoldWords(uint64_t{src} + dst);
  }
  return uint32_t{Sum16(e.src_addr, 16)} + Sum16(e.dst_addr, 16);
}

// The UDP checksum computed over pseudo-header, header and payload (RFC 768; RFC 8200
// §8.1 for IPv6) for a datagram leaving on `e`: `egress_sum` is AddressSum(e) plus both
// ports, `udp` carries the final length field.
inline uint16_t FullUdpChecksum(uint32_t egress_sum, const rte_udp_hdr* udp,
                                uint16_t udp_len) noexcept {
  uint32_t sum = egress_sum;
  sum += rte_cpu_to_be_16(IPPROTO_UDP) + rte_cpu_to_be_16(udp_len);  // pseudo-header
  sum += rte_cpu_to_be_16(udp_len);  // the header's length field; the checksum counts as zero
  sum += Sum16(reinterpret_cast<const uint8_t*>(udp) + sizeof(rte_udp_hdr),
               udp_len - sizeof(rte_udp_hdr));
  sum = Fold(Fold(sum));
  const uint16_t out = static_cast<uint16_t>(~sum);
  return out == 0 ? 0xffff : out;
}

// Writes the 20-octet IPv4 header (no options, DF, TTL 64, UDP); its checksum (unless
// the device computes it) is summed from the words as they are built, in registers.
inline void WriteIpv4Header(rte_ipv4_hdr* ip, const Egress& e, uint8_t tos, uint16_t total_len,
                            bool compute_checksum) noexcept {
  static_assert(RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN, "the words below are built little-endian");
  // The five words in memory order, as native loads would read them: version/IHL, TOS,
  // total length | identification 0, flags DF | TTL 64, protocol UDP, checksum |
  // source | destination. Built with shifts, not through a stack buffer, so summing
  // them never reloads narrow stores.
  const uint32_t w0 =
      RTE_IPV4_VHL_DEF | uint32_t{tos} << 8 | uint32_t{rte_cpu_to_be_16(total_len)} << 16;
  const uint32_t w1 = uint32_t{RTE_BE16(RTE_IPV4_HDR_DF_FLAG)} << 16;
  uint32_t w2 = 64u | uint32_t{IPPROTO_UDP} << 8;
  uint32_t src, dst;
  std::memcpy(&src, e.src_addr, 4);
  std::memcpy(&dst, e.dst_addr, 4);
  if (compute_checksum) {
    const uint16_t sum = FoldWords(uint64_t{w0} + w1 + w2 + src + dst);
    w2 |= uint32_t{static_cast<uint16_t>(~sum)} << 16;
  }
  auto* out = reinterpret_cast<uint8_t*>(ip);
  std::memcpy(out, &w0, 4);
  std::memcpy(out + 4, &w1, 4);
  std::memcpy(out + 8, &w2, 4);
  std::memcpy(out + 12, &src, 4);
  std::memcpy(out + 16, &dst, 4);
}

// The pseudo-header sum a device offloading the UDP checksum expects in the field
// (DPDK's rte_ipv4_phdr_cksum / rte_ipv6_phdr_cksum without TSO); `address_sum` is
// AddressSum(e).
inline uint16_t PseudoHeaderSum(uint32_t address_sum, uint16_t udp_len) noexcept {
  return Fold(Fold(address_sum + rte_cpu_to_be_16(IPPROTO_UDP) + rte_cpu_to_be_16(udp_len)));
}

}  // namespace detail

// Rewrites `m` in place for `e` and returns kCount on success, else the drop reason.
// `p` is what ClassifyPacket found for the incoming frame. With `payload_changed` (an
// SRTP transform rewrote the payload and set the UDP length) the UDP checksum is
// computed afresh instead of updated (by the device when `port` offloads it). Without a next-hop
// MAC (`e.have_mac` false): with `unresolved` null the packet is dropped (no_neighbor); else it is
// rewritten with a zero destination MAC, *unresolved is set, and the caller hands it to the control
// plane, which holds it until ARP/NDP answers (the frame starts with the MAC to fill).
inline DropReason RewriteForEgress(rte_mbuf* m, const ParsedPacket& p, const Egress& e,
                                   const EgressPort& port, bool payload_changed = false,
                                   bool* unresolved = nullptr) noexcept {
  if (e.family == 0) return DropReason::kNoPeer;
  if (!e.have_mac) {
    if (unresolved == nullptr) return DropReason::kNoNeighbor;
    *unresolved = true;
  }
  uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
  auto* udp = reinterpret_cast<rte_udp_hdr*>(frame + p.l4_offset);
  const uint16_t udp_len = rte_be_to_cpu_16(udp->dgram_len);

  // Old pseudo-header addresses and ports, for the incremental checksum update.
  uint8_t traffic_class;
  uint32_t old_sum;
  uint32_t old_ports;
  std::memcpy(&old_ports, &udp->src_port, 4);
  if (p.ip_version == 4) {
    const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(frame + p.l3_offset);
    traffic_class = ip->type_of_service;
    uint32_t src, dst;
    std::memcpy(&src, &ip->src_addr, 4);
    std::memcpy(&dst, &ip->dst_addr, 4);
    old_sum = detail::FoldWords(uint64_t{src} + dst + old_ports);
  } else {
    const auto* ip = reinterpret_cast<const rte_ipv6_hdr*>(frame + p.l3_offset);
    traffic_class = static_cast<uint8_t>(rte_be_to_cpu_32(ip->vtc_flow) >> 20);
    old_sum = detail::Sum16(ip->src_addr, 32) + detail::FoldWords(old_ports);
  }
  const uint16_t old_cksum = udp->dgram_cksum;
  if (e.dscp != 0xff) traffic_class = static_cast<uint8_t>((e.dscp << 2) | (traffic_class & 3));

  // New header stack in front of the UDP header.
  const uint16_t l2_len = port.vlan ? RTE_ETHER_HDR_LEN + 4 : RTE_ETHER_HDR_LEN;
  const uint16_t l3_len = e.family == 4 ? sizeof(rte_ipv4_hdr) : sizeof(rte_ipv6_hdr);
  const uint16_t new_off = static_cast<uint16_t>(l2_len + l3_len);
  if (new_off > p.l4_offset) {
    if (rte_pktmbuf_prepend(m, static_cast<uint16_t>(new_off - p.l4_offset)) == nullptr) {
      return DropReason::kNoHeadroom;
    }
  } else if (new_off < p.l4_offset) {
    rte_pktmbuf_adj(m, static_cast<uint16_t>(p.l4_offset - new_off));
  }
  // Drop Ethernet padding and anything past the UDP datagram.
  const uint32_t want = uint32_t{new_off} + udp_len;
  if (m->data_len > want) rte_pktmbuf_trim(m, static_cast<uint16_t>(m->data_len - want));

  frame = rte_pktmbuf_mtod(m, uint8_t*);
  auto* eth = reinterpret_cast<rte_ether_hdr*>(frame);
  std::memcpy(eth->dst_addr.addr_bytes, e.dst_mac, 6);
  std::memcpy(eth->src_addr.addr_bytes, port.mac, 6);
  const uint16_t l3_type = e.family == 4 ? RTE_ETHER_TYPE_IPV4 : RTE_ETHER_TYPE_IPV6;
  if (port.vlan) {
    eth->ether_type = RTE_BE16(RTE_ETHER_TYPE_VLAN);
    auto* vh = reinterpret_cast<rte_vlan_hdr*>(frame + RTE_ETHER_HDR_LEN);
    vh->vlan_tci = rte_cpu_to_be_16(port.vlan);
    vh->eth_proto = rte_cpu_to_be_16(l3_type);
  } else {
    eth->ether_type = rte_cpu_to_be_16(l3_type);
  }

  udp = reinterpret_cast<rte_udp_hdr*>(frame + new_off);
  uint64_t ol_flags = 0;  // TX offload requests for the device
  udp->src_port = e.src_port_be;
  udp->dst_port = e.dst_port_be;
  const uint32_t address_sum = detail::AddressSum(e);
  const uint32_t new_sum = address_sum + e.src_port_be + e.dst_port_be;
  bool full_udp = payload_changed;  // else the RFC 1624 update of the old checksum
  if (e.family == 4) {
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(frame + l2_len);
    detail::WriteIpv4Header(ip, e, traffic_class, static_cast<uint16_t>(l3_len + udp_len),
                            !port.tx_ip_cksum_offload);
    if (port.tx_ip_cksum_offload) ol_flags |= RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM;
    if (!payload_changed && old_cksum == 0) {
      udp->dgram_cksum = 0;  // RFC 768: none before, none now
      full_udp = false;
    } else if (payload_changed && port.tx_udp_cksum_offload) {
      ol_flags |= RTE_MBUF_F_TX_IPV4;
    }
  } else {
    auto* ip = reinterpret_cast<rte_ipv6_hdr*>(frame + l2_len);
    ip->vtc_flow = rte_cpu_to_be_32((6u << 28) | (uint32_t{traffic_class} << 20));
    ip->payload_len = rte_cpu_to_be_16(udp_len);
    ip->proto = IPPROTO_UDP;
    ip->hop_limits = 64;
    std::memcpy(ip->src_addr, e.src_addr, 16);
    std::memcpy(ip->dst_addr, e.dst_addr, 16);
    // IPv4 without a checksum bridged to IPv6 needs one: RFC 8200 §8.1.
    full_udp = payload_changed || old_cksum == 0;
    if (full_udp && port.tx_udp_cksum_offload) ol_flags |= RTE_MBUF_F_TX_IPV6;
  }
  if (full_udp && port.tx_udp_cksum_offload) {
    // The device sums header and payload; it expects the pseudo-header's sum in the
    // field (DPDK's convention, rte_ipv4_phdr_cksum).
    ol_flags |= RTE_MBUF_F_TX_UDP_CKSUM;
    udp->dgram_cksum = detail::PseudoHeaderSum(address_sum, udp_len);
  } else if (full_udp) {
    udp->dgram_cksum = detail::FullUdpChecksum(new_sum, udp, udp_len);
  } else if (e.family == 6 || old_cksum != 0) {
    udp->dgram_cksum = detail::UpdateChecksum(old_cksum, old_sum, new_sum);
  }
  m->port = port.port_id;
  m->ol_flags = ol_flags;
  if (ol_flags != 0) {
    m->l2_len = l2_len;  // the VLAN tag Karl writes is part of L2
    m->l3_len = l3_len;
  }
  return DropReason::kCount;
}

}  // namespace karl::dp
