#include "controlplane/stun.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace karl::stun {
namespace {

constexpr uint16_t kAttrUsername = 0x0006;
constexpr uint16_t kAttrMessageIntegrity = 0x0008;
constexpr uint16_t kAttrErrorCode = 0x0009;
constexpr uint16_t kAttrUnknownAttributes = 0x000a;
constexpr uint16_t kAttrXorMappedAddress = 0x0020;
constexpr uint16_t kAttrPriority = 0x0024;
constexpr uint16_t kAttrUseCandidate = 0x0025;
constexpr uint16_t kAttrSoftware = 0x8022;
constexpr uint16_t kAttrFingerprint = 0x8028;
constexpr uint16_t kAttrIceControlled = 0x8029;
constexpr uint16_t kAttrIceControlling = 0x802a;
constexpr uint32_t kFingerprintXor = 0x5354554e;
constexpr size_t kIntegrityLen = 20;  // HMAC-SHA1

uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t Get32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}
uint64_t Get64(const uint8_t* p) { return uint64_t{Get32(p)} << 32 | Get32(p + 4); }
void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void Put32(uint8_t* p, uint32_t v) {
  Put16(p, static_cast<uint16_t>(v >> 16));
  Put16(p + 2, static_cast<uint16_t>(v));
}

size_t Padded(size_t n) { return (n + 3) & ~size_t{3}; }

// HMAC-SHA1 of `data` with the header's length field replaced by `length`.
std::array<uint8_t, kIntegrityLen> Hmac(std::span<const uint8_t> data, uint16_t length,
                                        std::string_view key) {
  std::vector<uint8_t> copy(data.begin(), data.end());
  Put16(&copy[2], length);
  std::array<uint8_t, kIntegrityLen> out{};
  unsigned len = 0;
  HMAC(EVP_sha1(), key.data(), static_cast<int>(key.size()), copy.data(), copy.size(), out.data(),
       &len);
  return out;
}

void AppendAttribute(std::vector<uint8_t>& m, uint16_t type, std::span<const uint8_t> value,
                     uint8_t pad) {
  const size_t at = m.size();
  m.resize(at + 4 + Padded(value.size()), pad);
  Put16(&m[at], type);
  Put16(&m[at + 2], static_cast<uint16_t>(value.size()));
  if (!value.empty()) std::memcpy(&m[at + 4], value.data(), value.size());
}

void SetLength(std::vector<uint8_t>& m) {
  Put16(&m[2], static_cast<uint16_t>(m.size() - kHeaderLen));
}

std::vector<uint8_t> Header(uint16_t type, const std::array<uint8_t, 12>& transaction_id) {
  std::vector<uint8_t> m(kHeaderLen, 0);
  Put16(&m[0], type);
  Put32(&m[4], kMagicCookie);
  std::memcpy(&m[8], transaction_id.data(), 12);
  return m;
}

// FINGERPRINT over everything before it (the header's length counting it).
void AppendFingerprint(std::vector<uint8_t>& m) {
  const size_t fp_at = m.size();
  m.resize(fp_at + 8, 0);
  Put16(&m[fp_at], kAttrFingerprint);
  Put16(&m[fp_at + 2], 4);
  SetLength(m);
  Put32(&m[fp_at + 4], Crc32(std::span<const uint8_t>(m).first(fp_at)) ^ kFingerprintXor);
}

// MESSAGE-INTEGRITY over everything before it (the header's length counting it), then
// FINGERPRINT.
void Seal(std::vector<uint8_t>& m, std::string_view key, uint8_t pad) {
  const size_t mi_at = m.size();
  const auto mac = Hmac(m, static_cast<uint16_t>(mi_at + 4 + kIntegrityLen - kHeaderLen), key);
  AppendAttribute(m, kAttrMessageIntegrity, mac, pad);
  AppendFingerprint(m);
}

std::span<const uint8_t> Octets(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

bool LooksLikeStun(std::span<const uint8_t> d) {
  if (d.size() < kHeaderLen || d[0] > 3) return false;
  const uint16_t length = Get16(&d[2]);
  return Get32(&d[4]) == kMagicCookie && length % 4 == 0 && kHeaderLen + length == d.size();
}

absl::StatusOr<Message> Parse(std::span<const uint8_t> d) {
  if (d.size() < kHeaderLen) {
    return absl::InvalidArgumentError(
        absl::StrCat("STUN: ", d.size(), " octets, shorter than the 20-octet header"));
  }
  if ((d[0] & 0xc0) != 0) return absl::InvalidArgumentError("STUN: top two bits not zero");
  if (Get32(&d[4]) != kMagicCookie) {
    return absl::InvalidArgumentError("STUN: no magic cookie at octet 4");
  }
  const size_t length = Get16(&d[2]);
  if (length % 4 != 0 || kHeaderLen + length != d.size()) {
    return absl::InvalidArgumentError(absl::StrCat("STUN: length field ", length,
                                                   " does not match ", d.size() - kHeaderLen,
                                                   " octets after the header"));
  }
  Message m;
  m.type = Get16(&d[0]);
  std::memcpy(m.transaction_id.data(), &d[8], 12);
  size_t at = kHeaderLen;
  while (at < d.size()) {
    if (d.size() - at < 4) {
      return absl::InvalidArgumentError(absl::StrCat("STUN: truncated attribute at octet ", at));
    }
    const uint16_t type = Get16(&d[at]);
    const size_t len = Get16(&d[at + 2]);
    if (d.size() - at - 4 < Padded(len)) {
      return absl::InvalidArgumentError(absl::StrCat("STUN: attribute 0x",
                                                     absl::Hex(type, absl::kZeroPad4), " at octet ",
                                                     at, " runs past the end"));
    }
    const uint8_t* v = &d[at + 4];
    if (m.fingerprint_at) {
      return absl::InvalidArgumentError(
          absl::StrCat("STUN: attribute after FINGERPRINT at octet ", at));
    }
    const auto need = [&](size_t want) -> absl::Status {
      if (len == want) return absl::OkStatus();
      return absl::InvalidArgumentError(absl::StrCat("STUN: attribute 0x",
                                                     absl::Hex(type, absl::kZeroPad4), " at octet ",
                                                     at, " has length ", len, ", not ", want));
    };
    if (type == kAttrFingerprint) {
      if (absl::Status s = need(4); !s.ok()) return s;
      m.fingerprint_at = at;
    } else if (m.integrity_at) {
      // §15.4: after MESSAGE-INTEGRITY only FINGERPRINT counts.
    } else if (type == kAttrMessageIntegrity) {
      if (absl::Status s = need(kIntegrityLen); !s.ok()) return s;
      m.integrity_at = at;
    } else if (type == kAttrUsername) {
      m.username.emplace(reinterpret_cast<const char*>(v), len);
    } else if (type == kAttrSoftware) {
      m.software.emplace(reinterpret_cast<const char*>(v), len);
    } else if (type == kAttrPriority) {
      if (absl::Status s = need(4); !s.ok()) return s;
      m.priority = Get32(v);
    } else if (type == kAttrUseCandidate) {
      if (absl::Status s = need(0); !s.ok()) return s;
      m.use_candidate = true;
    } else if (type == kAttrIceControlling || type == kAttrIceControlled) {
      if (absl::Status s = need(8); !s.ok()) return s;
      (type == kAttrIceControlling ? m.ice_controlling : m.ice_controlled) = Get64(v);
    } else if (type < 0x8000) {
      m.unknown_required.push_back(type);
    }
    at += 4 + Padded(len);
  }
  return m;
}

bool CheckIntegrity(std::span<const uint8_t> d, const Message& m, std::string_view key) {
  if (!m.integrity_at) return false;
  const size_t at = *m.integrity_at;
  const auto mac =
      Hmac(d.first(at), static_cast<uint16_t>(at + 4 + kIntegrityLen - kHeaderLen), key);
  return CRYPTO_memcmp(mac.data(), &d[at + 4], kIntegrityLen) == 0;
}

bool CheckFingerprint(std::span<const uint8_t> d, const Message& m) {
  if (!m.fingerprint_at) return false;
  const size_t at = *m.fingerprint_at;
  return (Crc32(d.first(at)) ^ kFingerprintXor) == Get32(&d[at + 4]);
}

uint32_t Crc32(std::span<const uint8_t> data) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xffffffffu;
  for (uint8_t b : data) c = table[(c ^ b) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

std::vector<uint8_t> BindingSuccess(const std::array<uint8_t, 12>& transaction_id,
                                    const IpAddress& address, uint16_t port, std::string_view key,
                                    std::string_view software, uint8_t pad) {
  std::vector<uint8_t> m = Header(kBindingSuccess, transaction_id);
  if (!software.empty()) AppendAttribute(m, kAttrSoftware, Octets(software), pad);
  // XOR-MAPPED-ADDRESS (§15.2): port XOR the cookie's top half, the address XOR the
  // cookie (IPv4) or the cookie and the transaction id (IPv6).
  std::vector<uint8_t> xma(address.is_v4() ? 8 : 20, 0);
  xma[1] = address.is_v4() ? 0x01 : 0x02;
  Put16(&xma[2], static_cast<uint16_t>(port ^ (kMagicCookie >> 16)));
  uint8_t mask[16];
  Put32(mask, kMagicCookie);
  std::memcpy(mask + 4, transaction_id.data(), 12);
  const size_t alen = address.is_v4() ? 4 : 16;
  for (size_t i = 0; i < alen; ++i) xma[4 + i] = address.bytes()[i] ^ mask[i];
  AppendAttribute(m, kAttrXorMappedAddress, xma, pad);
  Seal(m, key, pad);
  return m;
}

std::vector<uint8_t> BindingError(const std::array<uint8_t, 12>& transaction_id, int code,
                                  std::string_view reason, std::span<const uint16_t> unknown,
                                  std::string_view software) {
  std::vector<uint8_t> m = Header(kBindingError, transaction_id);
  if (!software.empty()) AppendAttribute(m, kAttrSoftware, Octets(software), 0);
  // ERROR-CODE (§15.6): 21 zero bits, the hundreds digit, the rest, then the reason.
  std::vector<uint8_t> ec(4, 0);
  ec[2] = static_cast<uint8_t>(code / 100);
  ec[3] = static_cast<uint8_t>(code % 100);
  ec.insert(ec.end(), reason.begin(), reason.end());
  AppendAttribute(m, kAttrErrorCode, ec, 0);
  if (!unknown.empty()) {  // UNKNOWN-ATTRIBUTES (§15.9)
    std::vector<uint8_t> ua(unknown.size() * 2);
    for (size_t i = 0; i < unknown.size(); ++i) Put16(&ua[2 * i], unknown[i]);
    AppendAttribute(m, kAttrUnknownAttributes, ua, 0);
  }
  AppendFingerprint(m);
  return m;
}

std::vector<uint8_t> BindingRequest(const RequestSpec& r) {
  std::vector<uint8_t> m = Header(kBindingRequest, r.transaction_id);
  if (!r.software.empty()) AppendAttribute(m, kAttrSoftware, Octets(r.software), r.pad);
  uint8_t v[8];
  Put32(v, r.priority);
  AppendAttribute(m, kAttrPriority, std::span<const uint8_t>(v, 4), r.pad);
  for (const auto& [type, value] : {std::pair{kAttrIceControlled, r.ice_controlled},
                                    std::pair{kAttrIceControlling, r.ice_controlling}}) {
    if (!value) continue;
    Put32(v, static_cast<uint32_t>(*value >> 32));
    Put32(v + 4, static_cast<uint32_t>(*value));
    AppendAttribute(m, type, std::span<const uint8_t>(v, 8), r.pad);
  }
  if (r.use_candidate) AppendAttribute(m, kAttrUseCandidate, {}, r.pad);
  AppendAttribute(m, kAttrUsername, Octets(r.username), r.pad);
  Seal(m, r.key, r.pad);
  return m;
}

}  // namespace karl::stun
