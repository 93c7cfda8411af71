#include "common/net_addr.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstdio>
#include <cstring>

namespace karl {

IpAddress IpAddress::V4(uint32_t host_order) {
  IpAddress a;
  a.family_ = Family::kV4;
  a.bytes_[0] = static_cast<uint8_t>(host_order >> 24);
  a.bytes_[1] = static_cast<uint8_t>(host_order >> 16);
  a.bytes_[2] = static_cast<uint8_t>(host_order >> 8);
  a.bytes_[3] = static_cast<uint8_t>(host_order);
  return a;
}

IpAddress IpAddress::V6(const std::array<uint8_t, 16>& bytes) {
  IpAddress a;
  a.family_ = Family::kV6;
  a.bytes_ = bytes;
  return a;
}

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  // inet_pton stops at a NUL, so "1.2.3.4\0junk" would otherwise parse as 1.2.3.4.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN ||
      text.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddress a;
  if (text.find(':') == std::string_view::npos) {
    if (inet_pton(AF_INET, buf, a.bytes_.data()) != 1) return std::nullopt;
    a.family_ = Family::kV4;
  } else {
    if (inet_pton(AF_INET6, buf, a.bytes_.data()) != 1) return std::nullopt;
    a.family_ = Family::kV6;
  }
  return a;
}

uint32_t IpAddress::v4() const {
  return (uint32_t{bytes_[0]} << 24) | (uint32_t{bytes_[1]} << 16) | (uint32_t{bytes_[2]} << 8) |
         uint32_t{bytes_[3]};
}

bool IpAddress::IsUnspecified() const {
  const size_t n = is_v4() ? 4 : 16;
  for (size_t i = 0; i < n; ++i) {
    if (bytes_[i] != 0) return false;
  }
  return true;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (is_v4()) {
    // Dotted quad by hand: glibc's inet_ntop formats IPv4 with sprintf, and addresses are
    // written into every SDP and ng reply.
    std::string out;
    out.reserve(15);
    for (int i = 0; i < 4; ++i) {
      if (i != 0) out.push_back('.');
      const unsigned octet = bytes_[i];
      if (octet >= 100) out.push_back(static_cast<char>('0' + octet / 100));
      if (octet >= 10) out.push_back(static_cast<char>('0' + octet / 10 % 10));
      out.push_back(static_cast<char>('0' + octet % 10));
    }
    return out;
  }
  if (is_v6()) {
    inet_ntop(AF_INET6, bytes_.data(), buf, sizeof(buf));
  } else {
    return "";
  }
  return buf;
}

std::optional<IpPrefix> IpPrefix::Parse(std::string_view text) {
  IpPrefix p;
  const size_t slash = text.find('/');
  auto addr = IpAddress::Parse(text.substr(0, slash));
  if (!addr) return std::nullopt;
  p.address = *addr;
  const unsigned max = addr->is_v4() ? 32 : 128;
  if (slash == std::string_view::npos) {
    p.length = static_cast<uint8_t>(max);
    return p;
  }
  std::string_view len = text.substr(slash + 1);
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(len.data(), len.data() + len.size(), value);
  if (len.empty() || ec != std::errc() || ptr != len.data() + len.size() || value > max) {
    return std::nullopt;
  }
  p.length = static_cast<uint8_t>(value);
  return p;
}

bool IpPrefix::Contains(const IpAddress& other) const {
  if (other.family() != address.family()) return false;
  unsigned bits = length;
  for (size_t i = 0; bits > 0; ++i) {
    const unsigned take = bits >= 8 ? 8 : bits;
    const uint8_t mask = static_cast<uint8_t>(0xff00u >> take);
    if ((address.bytes()[i] & mask) != (other.bytes()[i] & mask)) return false;
    bits -= take;
  }
  return true;
}

std::string IpPrefix::ToString() const { return address.ToString() + "/" + std::to_string(length); }

std::optional<MacAddress> MacAddress::Parse(std::string_view text) {
  if (text.size() != 17) return std::nullopt;
  std::array<uint8_t, 6> b{};
  for (size_t i = 0; i < 6; ++i) {
    if (i > 0 && text[i * 3 - 1] != ':' && text[i * 3 - 1] != '-') return std::nullopt;
    unsigned v = 0;
    auto [ptr, ec] = std::from_chars(text.data() + i * 3, text.data() + i * 3 + 2, v, 16);
    if (ec != std::errc() || ptr != text.data() + i * 3 + 2) return std::nullopt;
    b[i] = static_cast<uint8_t>(v);
  }
  return MacAddress(b);
}

std::string MacAddress::ToString() const {
  char buf[18];
  std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", bytes_[0], bytes_[1], bytes_[2],
                bytes_[3], bytes_[4], bytes_[5]);
  return buf;
}

std::optional<HostPort> HostPort::Parse(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return std::nullopt;  // v6 needs brackets
  }
  auto addr = IpAddress::Parse(host);
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (!addr || port.empty() || ec != std::errc() || ptr != port.data() + port.size() ||
      value > 65535) {
    return std::nullopt;
  }
  return HostPort{*addr, static_cast<uint16_t>(value)};
}

std::string HostPort::ToString() const {
  std::string out;
  if (address.is_v6()) {
    out.append("[").append(address.ToString()).append("]");
  } else {
    out.append(address.ToString());
  }
  out.append(":").append(std::to_string(port));
  return out;
}

}  // namespace karl
