// STUN (RFC 5389) messages as an ICE-lite agent (RFC 8445 §2.5) needs them: recognise a
// STUN packet among RTP/RTCP on a media port (RFC 7983), parse a Binding request with the
// ICE attributes (RFC 8445 §7.1: PRIORITY, USE-CANDIDATE, ICE-CONTROLLING/-CONTROLLED),
// check its short-term-credential MESSAGE-INTEGRITY and its FINGERPRINT, and build the
// Binding success response (XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT).
// The session manager answers ICE checks with it (D25).
// Thread: any; no shared state.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net_addr.h"

namespace karl::stun {

inline constexpr uint32_t kMagicCookie = 0x2112a442;
inline constexpr size_t kHeaderLen = 20;
inline constexpr uint16_t kBindingRequest = 0x0001;
inline constexpr uint16_t kBindingSuccess = 0x0101;
inline constexpr uint16_t kBindingError = 0x0111;

// RFC 7983 §7 demultiplexing plus RFC 5389 §6: first octet 0..3, the magic cookie, a
// length that is a multiple of 4 and covers the rest of the datagram exactly.
bool LooksLikeStun(std::span<const uint8_t> datagram);

struct Message {
  uint16_t type = 0;
  std::array<uint8_t, 12> transaction_id{};
  std::optional<std::string> username;  // USERNAME (RFC 5389 §15.3)
  std::optional<std::string> software;  // SOFTWARE (§15.10)
  std::optional<uint32_t> priority;     // PRIORITY (RFC 8445 §7.1.1)
  bool use_candidate = false;           // USE-CANDIDATE (§7.1.2)
  std::optional<uint64_t> ice_controlling;
  std::optional<uint64_t> ice_controlled;
  // Offsets of the MESSAGE-INTEGRITY and FINGERPRINT attribute headers, when present.
  std::optional<size_t> integrity_at;
  std::optional<size_t> fingerprint_at;
  // Comprehension-required attributes (type < 0x8000) this codec does not know (§7.3.1:
  // a request carrying one is answered 420).
  std::vector<uint16_t> unknown_required;
};

// Parses a whole STUN message. Errors say what is wrong and at which octet. Attributes
// after MESSAGE-INTEGRITY other than FINGERPRINT are ignored (§15.4); FINGERPRINT must
// be the last attribute (§15.5).
absl::StatusOr<Message> Parse(std::span<const uint8_t> datagram);

// MESSAGE-INTEGRITY (§15.4): HMAC-SHA1 keyed with `key` (the short-term password, ICE's
// ice-pwd of the receiving agent) over the message up to the attribute, with the header's
// length as if the message ended after it. False when absent.
bool CheckIntegrity(std::span<const uint8_t> datagram, const Message& m, std::string_view key);

// FINGERPRINT (§15.5): CRC-32 of the message up to the attribute, XOR 0x5354554e.
bool CheckFingerprint(std::span<const uint8_t> datagram, const Message& m);

// CRC-32 (ISO 3309 / ITU-T V.42, as FINGERPRINT uses it).
uint32_t Crc32(std::span<const uint8_t> data);

// A Binding success response to `transaction_id`: SOFTWARE (when not empty),
// XOR-MAPPED-ADDRESS = the request's source `address`:`port`, MESSAGE-INTEGRITY keyed
// with `key`, FINGERPRINT. `pad` fills attribute padding (RFC 5389 lets it be anything;
// the RFC 5769 vectors use spaces).
std::vector<uint8_t> BindingSuccess(const std::array<uint8_t, 12>& transaction_id,
                                    const IpAddress& address, uint16_t port, std::string_view key,
                                    std::string_view software = {}, uint8_t pad = 0);

// A Binding error response (RFC 5389 §7.3.1, §10.1.2): ERROR-CODE `code` with `reason`,
// UNKNOWN-ATTRIBUTES for a 420, FINGERPRINT; no MESSAGE-INTEGRITY (the request could not
// be authenticated, so there is no key to use).
std::vector<uint8_t> BindingError(const std::array<uint8_t, 12>& transaction_id, int code,
                                  std::string_view reason, std::span<const uint16_t> unknown = {},
                                  std::string_view software = {});

// A Binding request as an ICE agent sends it (RFC 8445 §7.1): SOFTWARE (when not empty),
// PRIORITY, ICE-CONTROLLED / ICE-CONTROLLING, USE-CANDIDATE, USERNAME, then
// MESSAGE-INTEGRITY keyed with `key` (the receiver's ice-pwd) and FINGERPRINT. Karl never
// sends checks (it is ICE-lite); tests and the benchmark play the other agent with it.
struct RequestSpec {
  std::array<uint8_t, 12> transaction_id{};
  std::string_view software;
  uint32_t priority = 0;
  std::optional<uint64_t> ice_controlled;
  std::optional<uint64_t> ice_controlling;
  bool use_candidate = false;
  std::string_view username;  // "<receiver's ufrag>:<sender's ufrag>"
  std::string_view key;
  uint8_t pad = 0;
};
std::vector<uint8_t> BindingRequest(const RequestSpec& request);

}  // namespace karl::stun
