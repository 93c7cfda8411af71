// bencode (BEP 3) values, a strict decoder for untrusted input and the encoder, plus the
// framing of rtpengine's ng control protocol: a UDP datagram "<cookie> <bencoded dict>",
// answered by "<cookie> <bencoded dict>" with the same cookie.
// Thread: any (values are plain data; no shared state).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace karl {

// One bencode value: an integer, a byte string (binary-safe, may hold NULs), a list or a
// dictionary. Dictionary keys are byte strings, unique, kept sorted by raw bytes (the
// order BEP 3 requires on the wire), so EncodeBencode never has to sort.
class BencodeValue {
 public:
  enum class Type { kInteger, kString, kList, kDictionary };
  using List = std::vector<BencodeValue>;
  using Entry = std::pair<std::string, BencodeValue>;
  using Dictionary = std::vector<Entry>;  // sorted by key, keys unique

  // An empty dictionary (what an ng message or reply starts as).
  BencodeValue() : value_(Dictionary{}) {}
  // Integers. Unsigned values above INT64_MAX do not fit bencode's int64 here and wrap.
  template <std::integral T>
  BencodeValue(T v) : value_(static_cast<int64_t>(v)) {}  // NOLINT(google-explicit-constructor)
  BencodeValue(bool) = delete;  // bencode has no booleans; rtpengine uses strings
  // Byte strings.
  BencodeValue(std::string s) : value_(std::move(s)) {}         // NOLINT
  BencodeValue(std::string_view s) : value_(std::string(s)) {}  // NOLINT
  BencodeValue(const char* s) : value_(std::string(s)) {}       // NOLINT
  BencodeValue(List l) : value_(std::move(l)) {}                // NOLINT

  static BencodeValue EmptyList() { return BencodeValue(List{}); }
  static BencodeValue EmptyDictionary() { return BencodeValue(); }
  // A list of byte strings (an ng "flags"-style list).
  static BencodeValue StringList(const std::vector<std::string>& items);

  Type type() const { return static_cast<Type>(value_.index()); }
  bool is_integer() const { return type() == Type::kInteger; }
  bool is_string() const { return type() == Type::kString; }
  bool is_list() const { return type() == Type::kList; }
  bool is_dictionary() const { return type() == Type::kDictionary; }

  // The value as that type, or nullptr when it is another type.
  const int64_t* AsInteger() const { return std::get_if<int64_t>(&value_); }
  const std::string* AsString() const { return std::get_if<std::string>(&value_); }
  const List* AsList() const { return std::get_if<List>(&value_); }
  List* AsList() { return std::get_if<List>(&value_); }
  const Dictionary* AsDictionary() const { return std::get_if<Dictionary>(&value_); }

  // Dictionary: the value of `key`, or nullptr when absent (or when this is no dictionary).
  const BencodeValue* Find(std::string_view key) const;
  BencodeValue* Find(std::string_view key);
  // Dictionary: inserts `key` or replaces its value; returns the stored value. Calling it on
  // a non-dictionary is a programming error and aborts.
  BencodeValue& Set(std::string_view key, BencodeValue value);
  // Dictionary: removes `key`; false when it was absent.
  bool Erase(std::string_view key);
  // List: appends `value`; returns the stored value. Aborts on a non-list.
  BencodeValue& Append(BencodeValue value);

  // Typed reads of a dictionary's field, for ng requests. Errors name the ng key:
  // NotFound "ng key 'call-id' is missing", InvalidArgument "ng key 'call-id' must be a
  // string, not a list" (also when this value is not a dictionary).
  absl::StatusOr<std::string_view> GetString(std::string_view key) const;
  // An integer, or a string of decimal digits (rtpengine accepts both, and Kamailio sends
  // some numbers as strings), e.g. "ptime".
  absl::StatusOr<int64_t> GetInteger(std::string_view key) const;
  absl::StatusOr<const List*> GetList(std::string_view key) const;
  absl::StatusOr<const BencodeValue*> GetDictionary(std::string_view key) const;
  // A list of strings such as "flags", "replace", "rtcp-mux", "SDES": an absent key is an
  // empty list; a non-list or a non-string element is InvalidArgument naming the index.
  absl::StatusOr<std::vector<std::string>> GetStringList(std::string_view key) const;

  bool operator==(const BencodeValue&) const = default;

 private:
  // Index order matches Type.
  std::variant<int64_t, std::string, List, Dictionary> value_;
};

// Bounds on what DecodeBencode builds from untrusted input.
struct BencodeLimits {
  size_t max_depth = 64;          // nested lists/dictionaries
  size_t max_elements = 100'000;  // values in total (every integer, string, list, dict)
};

// Decodes `input`, which must be exactly one value (no trailing bytes). Strict BEP 3:
// integers without leading zeros, no "-0", within int64; string lengths without leading
// zeros and no longer than the input; dictionary keys are strings, may arrive in any order
// (real ng clients send them unsorted) but must be unique. InvalidArgument says what is
// wrong and at which byte offset, e.g. "bencode: integer has a leading zero at byte 12".
absl::StatusOr<BencodeValue> DecodeBencode(std::string_view input,
                                           const BencodeLimits& limits = {});

// The canonical encoding of `value` (dictionary keys sorted).
std::string EncodeBencode(const BencodeValue& value);

// An ng datagram split at its first space. Both views point into the datagram.
struct NgFrame {
  std::string_view cookie;   // the bytes before the first space, never empty
  std::string_view payload;  // everything after that space (the bencoded dictionary)
};

// Splits "<cookie> <payload>". InvalidArgument when there is no space or the cookie is
// empty; no reply can be sent then (the reply must echo the cookie), so drop the datagram.
absl::StatusOr<NgFrame> SplitNgFrame(std::string_view datagram);

// A decoded ng request: the cookie (copied) and the message, which is a dictionary.
struct NgRequest {
  std::string cookie;
  BencodeValue message;
};

// SplitNgFrame + DecodeBencode + "the payload is a dictionary". On an error whose cookie
// was readable, `cookie_out` (if given) receives it so the caller can send an error reply.
absl::StatusOr<NgRequest> ParseNgRequest(std::string_view datagram,
                                         std::string* cookie_out = nullptr,
                                         const BencodeLimits& limits = {});

// "<cookie> <bencoded reply>".
std::string BuildNgReply(std::string_view cookie, const BencodeValue& reply);
// "<cookie> d6:result5:error12:error-reason<len>:<reason>e", rtpengine's error reply.
std::string BuildNgErrorReply(std::string_view cookie, std::string_view reason);

}  // namespace karl
