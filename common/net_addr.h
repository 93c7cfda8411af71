// Plain address types shared by both planes: IPv4/IPv6 addresses, prefixes and
// MAC addresses, with parsing and formatting. No I/O.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace karl {

class IpAddress {
 public:
  enum class Family : uint8_t { kNone = 0, kV4 = 4, kV6 = 6 };

  IpAddress() = default;
  static IpAddress V4(uint32_t host_order);
  static IpAddress V6(const std::array<uint8_t, 16>& bytes);
  // Accepts dotted quad or RFC 4291 text ("2001:db8::1"); no brackets, no port.
  static std::optional<IpAddress> Parse(std::string_view text);

  Family family() const { return family_; }
  bool is_v4() const { return family_ == Family::kV4; }
  bool is_v6() const { return family_ == Family::kV6; }
  bool empty() const { return family_ == Family::kNone; }
  // IPv4 in host byte order (only for is_v4()).
  uint32_t v4() const;
  // Network-order bytes: 4 for IPv4 (first four), 16 for IPv6.
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }
  bool IsUnspecified() const;

  std::string ToString() const;
  auto operator<=>(const IpAddress&) const = default;

 private:
  Family family_ = Family::kNone;
  std::array<uint8_t, 16> bytes_{};
};

struct IpPrefix {
  IpAddress address;
  uint8_t length = 0;

  // "198.51.100.1/24", "2001:db8::1/64". A bare address gets /32 or /128.
  static std::optional<IpPrefix> Parse(std::string_view text);
  bool Contains(const IpAddress& other) const;
  std::string ToString() const;
  bool operator==(const IpPrefix&) const = default;
};

class MacAddress {
 public:
  MacAddress() = default;
  explicit MacAddress(const std::array<uint8_t, 6>& b) : bytes_(b) {}
  // "02:00:00:00:00:01" (also '-' separated).
  static std::optional<MacAddress> Parse(std::string_view text);
  const std::array<uint8_t, 6>& bytes() const { return bytes_; }
  std::string ToString() const;
  bool operator==(const MacAddress&) const = default;

 private:
  std::array<uint8_t, 6> bytes_{};
};

// "host:port" / "[v6]:port" / "v4:port" split; port must be 0..65535.
struct HostPort {
  IpAddress address;
  uint16_t port = 0;
  static std::optional<HostPort> Parse(std::string_view text);
  std::string ToString() const;
};

}  // namespace karl
