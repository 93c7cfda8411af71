#include "controlplane/sdes.h"

#include <openssl/rand.h>

#include <charconv>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace karl {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

std::optional<uint64_t> ParseDecimal(absl::string_view s) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("a=crypto: ", what));
}

}  // namespace

std::string Base64Encode(const std::vector<uint8_t>& data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    const uint32_t v = (uint32_t{data[i]} << 16) | (uint32_t{data[i + 1]} << 8) | data[i + 2];
    for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[(v >> s) & 63]);
  }
  if (i + 1 == data.size()) {
    const uint32_t v = uint32_t{data[i]} << 16;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.append("==");
  } else if (i + 2 == data.size()) {
    const uint32_t v = (uint32_t{data[i]} << 16) | (uint32_t{data[i + 1]} << 8);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back('=');
  }
  return out;
}

std::optional<std::vector<uint8_t>> Base64Decode(std::string_view text) {
  // rtpengine and other SDES implementations leave the '=' padding off: accept both.
  std::string padded;
  if (text.size() % 4 == 2 || text.size() % 4 == 3) {
    if (text.find('=') != std::string_view::npos) return std::nullopt;
    padded.assign(text);
    padded.append(4 - text.size() % 4, '=');
    text = padded;
  }
  if (text.size() % 4 != 0) return std::nullopt;
  std::vector<uint8_t> out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int v[4];
    int pad = 0;
    for (int j = 0; j < 4; ++j) {
      const char c = text[i + j];
      if (c == '=' && last && j >= 2) {
        v[j] = 0;
        ++pad;
        continue;
      }
      if (pad > 0) return std::nullopt;  // data after padding
      v[j] = Base64Value(c);
      if (v[j] < 0) return std::nullopt;
    }
    const uint32_t w =
        (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) | (uint32_t(v[2]) << 6) | uint32_t(v[3]);
    out.push_back(static_cast<uint8_t>(w >> 16));
    if (pad < 2) out.push_back(static_cast<uint8_t>(w >> 8));
    if (pad < 1) out.push_back(static_cast<uint8_t>(w));
  }
  return out;
}

absl::StatusOr<dp::SrtpSuite> SrtpSuiteFromName(std::string_view name) {
  for (size_t i = 0; i < dp::kSrtpSuiteCount; ++i) {
    const auto suite = static_cast<dp::SrtpSuite>(i);
    if (dp::GetSrtpSuiteInfo(suite).name == name) return suite;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown SRTP crypto suite '",
                                                 absl::string_view(name.data(), name.size()), "'"));
}

// RFC 4568 §9.1: tag SP crypto-suite SP key-params *(SP session-param)
absl::StatusOr<SdesCrypto> ParseSdesCrypto(std::string_view text) {
  const absl::string_view value(text.data(), text.size());
  std::vector<absl::string_view> parts = absl::StrSplit(value, ' ', absl::SkipEmpty());
  if (parts.size() < 3) return Bad("expected '<tag> <crypto-suite> inline:<key||salt>...'");
  SdesCrypto c;
  const std::optional<uint64_t> tag = ParseDecimal(parts[0]);
  if (!tag || *tag == 0 || *tag > 999999999 || parts[0].size() > 9) {
    return Bad(absl::StrCat("tag '", parts[0], "' must be 1..999999999"));
  }
  c.tag = static_cast<uint32_t>(*tag);
  absl::StatusOr<dp::SrtpSuite> suite =
      SrtpSuiteFromName(std::string_view(parts[1].data(), parts[1].size()));
  if (!suite.ok()) return Bad(suite.status().message());
  c.suite = *suite;
  const dp::SrtpSuiteInfo& info = dp::GetSrtpSuiteInfo(c.suite);

  std::vector<absl::string_view> keys = absl::StrSplit(parts[2], ';');
  if (keys.size() != 1) return Bad("several keys (key-params separated by ';') are not supported");
  absl::string_view kp = keys[0];
  if (kp.substr(0, 7) != "inline:") return Bad("the key method must be 'inline:'");
  std::vector<absl::string_view> fields = absl::StrSplit(kp.substr(7), '|');
  if (fields.size() > 3) return Bad("key-info has more than key, lifetime and MKI");
  const std::optional<std::vector<uint8_t>> key_salt =
      Base64Decode(std::string_view(fields[0].data(), fields[0].size()));
  if (!key_salt) return Bad("the inline key is not valid base64");
  const size_t want = size_t{info.master_key_len} + info.master_salt_len;
  if (key_salt->size() != want) {
    return Bad(absl::StrCat("the inline key is ", key_salt->size(), " bytes; ",
                            absl::string_view(info.name.data(), info.name.size()), " needs ", want,
                            " (key ", int{info.master_key_len}, " + salt ",
                            int{info.master_salt_len}, ")"));
  }
  c.key.assign(key_salt->begin(), key_salt->begin() + info.master_key_len);
  c.salt.assign(key_salt->begin() + info.master_key_len, key_salt->end());
  // Lifetime and MKI are optional and told apart by the MKI's ':' (RFC 4568 §6.1).
  for (size_t i = 1; i < fields.size(); ++i) {
    const absl::string_view f = fields[i];
    const size_t colon = f.find(':');
    if (colon == absl::string_view::npos) {
      if (c.lifetime || !c.mki.empty()) return Bad("the lifetime must come once, before the MKI");
      std::optional<uint64_t> v;
      if (f.substr(0, 2) == "2^") {
        const std::optional<uint64_t> e = ParseDecimal(f.substr(2));
        if (e && *e <= 63) v = uint64_t{1} << *e;
      } else {
        v = ParseDecimal(f);
      }
      if (!v || *v == 0) return Bad(absl::StrCat("lifetime '", f, "' is not 2^n or a number"));
      c.lifetime = v;
    } else {
      if (!c.mki.empty()) return Bad("more than one MKI");
      const std::optional<uint64_t> mki_value = ParseDecimal(f.substr(0, colon));
      const std::optional<uint64_t> mki_len = ParseDecimal(f.substr(colon + 1));
      // The worker carries MKIs up to 16 bytes; RFC 4568 allows up to 128.
      if (!mki_value || !mki_len || *mki_len == 0 || *mki_len > 16) {
        return Bad(absl::StrCat("MKI '", f, "' must be <value>:<length 1..16>"));
      }
      if (*mki_len < 8 && *mki_value >> (8 * *mki_len) != 0) {
        return Bad(absl::StrCat("MKI value ", *mki_value, " does not fit in ", *mki_len, " bytes"));
      }
      c.mki.assign(*mki_len, 0);
      for (size_t b = 0; b < *mki_len && b < 8; ++b) {
        c.mki[*mki_len - 1 - b] = static_cast<uint8_t>(*mki_value >> (8 * b));
      }
    }
  }
  for (size_t i = 3; i < parts.size(); ++i) c.session_params.emplace_back(parts[i]);
  return c;
}

std::string FormatSdesCrypto(const SdesCrypto& c) {
  std::vector<uint8_t> key_salt = c.key;
  key_salt.insert(key_salt.end(), c.salt.begin(), c.salt.end());
  const std::string_view name = dp::GetSrtpSuiteInfo(c.suite).name;
  std::string out = absl::StrCat(c.tag, " ", absl::string_view(name.data(), name.size()),
                                 " inline:", Base64Encode(key_salt));
  if (c.lifetime) {
    const uint64_t l = *c.lifetime;
    if ((l & (l - 1)) == 0) {
      int n = 0;
      while ((uint64_t{1} << n) != l) ++n;
      absl::StrAppend(&out, "|2^", n);
    } else {
      absl::StrAppend(&out, "|", l);
    }
  }
  if (!c.mki.empty()) {
    uint64_t v = 0;
    for (uint8_t b : c.mki) v = (v << 8) | b;
    absl::StrAppend(&out, "|", v, ":", c.mki.size());
  }
  for (const std::string& p : c.session_params) absl::StrAppend(&out, " ", p);
  return out;
}

absl::StatusOr<SdesCrypto> ParseSdesKey(std::string_view suite, std::string_view key_params) {
  if (key_params.find(' ') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        "the key must be one 'inline:<key||salt>[|lifetime][|MKI:len]'");
  }
  return ParseSdesCrypto(absl::StrCat("1 ", absl::string_view(suite.data(), suite.size()), " ",
                                      absl::string_view(key_params.data(), key_params.size())));
}

std::string FormatSdesKey(const SdesCrypto& c) {
  SdesCrypto bare = c;
  bare.session_params.clear();
  const std::string full = FormatSdesCrypto(bare);
  return full.substr(full.find("inline:"));
}

absl::StatusOr<SdesCrypto> GenerateSdesCrypto(uint32_t tag, dp::SrtpSuite suite) {
  const dp::SrtpSuiteInfo& info = dp::GetSrtpSuiteInfo(suite);
  SdesCrypto c;
  c.tag = tag;
  c.suite = suite;
  c.key.resize(info.master_key_len);
  c.salt.resize(info.master_salt_len);
  if (RAND_bytes(c.key.data(), static_cast<int>(c.key.size())) != 1 ||
      RAND_bytes(c.salt.data(), static_cast<int>(c.salt.size())) != 1) {
    return absl::UnavailableError("the CSPRNG (OpenSSL RAND_bytes) failed");
  }
  return c;
}

}  // namespace karl
