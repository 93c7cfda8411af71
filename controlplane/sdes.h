// SDES keys in SDP (RFC 4568): the `a=crypto` attribute's value, parsed and formatted,
// and fresh keys from a CSPRNG. Used by the REST API and the ng protocol to exchange
// SRTP master keys. Thread: any (pure functions; key generation uses OpenSSL's RNG).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/srtp.h"

namespace karl {

struct SdesCrypto {
  uint32_t tag = 1;  // RFC 4568 §9.1: 1..999999999
  dp::SrtpSuite suite = dp::SrtpSuite::kAesCm128HmacSha1_80;
  std::vector<uint8_t> key;                 // master key
  std::vector<uint8_t> salt;                // master salt
  std::optional<uint64_t> lifetime;         // packets ("2^n" or decimal), absent = suite maximum
  std::vector<uint8_t> mki;                 // MKI value, big endian, mki.size() = MKI length
  std::vector<std::string> session_params;  // kept as given (e.g. UNENCRYPTED_SRTCP)
};

// The suite named in SDP (RFC 4568 §6.2, RFC 6188 §7, RFC 7714 §14.2).
absl::StatusOr<dp::SrtpSuite> SrtpSuiteFromName(std::string_view name);

// Parses the value of an `a=crypto:` attribute (without "a=crypto:"), e.g.
// "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4".
// InvalidArgument says which part is wrong. One key (one inline: key-param) only.
absl::StatusOr<SdesCrypto> ParseSdesCrypto(std::string_view value);

// The attribute value for `c` (the inverse of ParseSdesCrypto).
std::string FormatSdesCrypto(const SdesCrypto& c);

// SDES key-params alone ("inline:<key||salt>[|lifetime][|MKI:len]", RFC 4568 §9.1) for
// the suite named `suite`: what the REST API carries per SRTP direction.
absl::StatusOr<SdesCrypto> ParseSdesKey(std::string_view suite, std::string_view key_params);
// The key-params of `c` ("inline:..."), the inverse of ParseSdesKey.
std::string FormatSdesKey(const SdesCrypto& c);

// A new master key and salt for `suite` from OpenSSL's CSPRNG.
absl::StatusOr<SdesCrypto> GenerateSdesCrypto(uint32_t tag, dp::SrtpSuite suite);

// RFC 4648 base64 with padding; decoding is strict (no whitespace, correct padding).
std::string Base64Encode(const std::vector<uint8_t>& data);
std::optional<std::vector<uint8_t>> Base64Decode(std::string_view text);

}  // namespace karl
