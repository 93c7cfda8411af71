#include "controlplane/bencode.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace karl {
namespace {

// Abseil 20220623's string_view is its own type.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "karl: BencodeValue misuse: %s\n", what);
  std::abort();
}

// A key or string for an error message: printable, at most 40 bytes.
std::string Quote(std::string_view s) {
  constexpr size_t kMax = 40;
  std::string out = absl::CHexEscape(Sv(s.substr(0, kMax)));
  if (s.size() > kMax) out.append("...");
  return absl::StrCat("'", out, "'");
}

const char* TypeName(BencodeValue::Type t) {
  switch (t) {
    case BencodeValue::Type::kInteger:
      return "an integer";
    case BencodeValue::Type::kString:
      return "a string";
    case BencodeValue::Type::kList:
      return "a list";
    case BencodeValue::Type::kDictionary:
      return "a dictionary";
  }
  return "?";
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Recursive descent over the input; depth is bounded by limits.max_depth, so the recursion
// is too.
class Decoder {
 public:
  Decoder(std::string_view in, const BencodeLimits& limits) : in_(in), limits_(limits) {}

  absl::StatusOr<BencodeValue> DecodeTop() {
    if (in_.empty()) return Error(0, "empty input");
    absl::StatusOr<BencodeValue> v = DecodeValue(0);
    if (!v.ok()) return v;
    if (pos_ != in_.size()) {
      return Error(pos_, absl::StrCat(in_.size() - pos_, " trailing byte(s) after the value"));
    }
    return v;
  }

 private:
  absl::Status Error(size_t at, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("bencode: ", what, " at byte ", at));
  }
  absl::Status Truncated(absl::string_view inside, size_t started) const {
    return Error(pos_,
                 absl::StrCat("input ends inside the ", inside, " that starts at byte ", started));
  }

  absl::StatusOr<BencodeValue> DecodeValue(size_t depth) {
    if (pos_ >= in_.size()) return Error(pos_, "input ends where a value should start");
    if (++elements_ > limits_.max_elements) {
      return Error(pos_, absl::StrCat("more than ", limits_.max_elements, " values"));
    }
    const char c = in_[pos_];
    if (c == 'i') {
      absl::StatusOr<int64_t> n = DecodeInteger();
      if (!n.ok()) return n.status();
      return BencodeValue(*n);
    }
    if (IsDigit(c)) {
      absl::StatusOr<std::string> s = DecodeString("string");
      if (!s.ok()) return s.status();
      return BencodeValue(std::move(*s));
    }
    if (c == 'l' || c == 'd') {
      if (depth >= limits_.max_depth) {
        return Error(pos_,
                     absl::StrCat("lists/dictionaries nested deeper than ", limits_.max_depth));
      }
      return c == 'l' ? DecodeList(depth + 1) : DecodeDictionary(depth + 1);
    }
    return Error(pos_, absl::StrCat("unexpected ", Quote(in_.substr(pos_, 1)),
                                    " where a value should start (i, l, d or a digit)"));
  }

  // i<decimal>e: no leading zeros, no "-0", within int64 (BEP 3).
  absl::StatusOr<int64_t> DecodeInteger() {
    const size_t start = pos_++;
    bool negative = false;
    if (pos_ < in_.size() && in_[pos_] == '-') {
      negative = true;
      ++pos_;
    }
    const uint64_t limit =
        negative ? uint64_t{1} << 63 : static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    uint64_t v = 0;
    const size_t first_digit = pos_;
    while (pos_ < in_.size() && IsDigit(in_[pos_])) {
      if (pos_ > first_digit && in_[first_digit] == '0') {
        return Error(first_digit, "integer has a leading zero");
      }
      const uint64_t d = static_cast<uint64_t>(in_[pos_] - '0');
      if (v > (limit - d) / 10) return Error(start, "integer does not fit in 64 bits");
      v = v * 10 + d;
      ++pos_;
    }
    if (pos_ >= in_.size()) return Truncated("integer", start);
    if (in_[pos_] != 'e') {
      return Error(pos_, absl::StrCat("unexpected ", Quote(in_.substr(pos_, 1)),
                                      " in the integer that starts at byte ", start));
    }
    if (pos_ == first_digit) return Error(start, "integer has no digits");
    if (negative && v == 0) return Error(start, "integer is \"-0\"");
    ++pos_;  // 'e'
    if (negative)
      return v == uint64_t{1} << 63 ? std::numeric_limits<int64_t>::min()
                                    : -static_cast<int64_t>(v);
    return static_cast<int64_t>(v);
  }

  // <length>:<bytes>, the length without leading zeros and within the input.
  absl::StatusOr<std::string> DecodeString(absl::string_view what) {
    const size_t start = pos_;
    uint64_t len = 0;
    while (pos_ < in_.size() && IsDigit(in_[pos_])) {
      if (pos_ > start && in_[start] == '0') {
        return Error(start, absl::StrCat(what, " length has a leading zero"));
      }
      len = len * 10 + static_cast<uint64_t>(in_[pos_] - '0');
      if (len > in_.size()) {
        return Error(start, absl::StrCat(what, " length is longer than the whole input (",
                                         in_.size(), " bytes)"));
      }
      ++pos_;
    }
    if (pos_ >= in_.size()) return Truncated(absl::StrCat(what, " length"), start);
    if (in_[pos_] != ':') {
      return Error(pos_, absl::StrCat("expected ':' after the ", what, " length, got ",
                                      Quote(in_.substr(pos_, 1))));
    }
    ++pos_;
    if (len > in_.size() - pos_) {
      return Error(start, absl::StrCat(what, " of ", len, " bytes runs past the end of the input (",
                                       in_.size() - pos_, " bytes left)"));
    }
    std::string s(in_.substr(pos_, len));
    pos_ += len;
    return s;
  }

  absl::StatusOr<BencodeValue> DecodeList(size_t depth) {
    const size_t start = pos_++;
    BencodeValue::List items;
    while (true) {
      if (pos_ >= in_.size()) return Truncated("list", start);
      if (in_[pos_] == 'e') break;
      absl::StatusOr<BencodeValue> v = DecodeValue(depth);
      if (!v.ok()) return v;
      items.push_back(std::move(*v));
    }
    ++pos_;  // 'e'
    return BencodeValue(std::move(items));
  }

  // Keys may come in any order; they are sorted here and must be unique.
  absl::StatusOr<BencodeValue> DecodeDictionary(size_t depth) {
    const size_t start = pos_++;
    struct Item {
      size_t offset;
      BencodeValue::Entry entry;
    };
    std::vector<Item> items;
    while (true) {
      if (pos_ >= in_.size()) return Truncated("dictionary", start);
      if (in_[pos_] == 'e') break;
      const size_t key_at = pos_;
      if (!IsDigit(in_[pos_])) {
        return Error(pos_, absl::StrCat("dictionary key must be a string, got ",
                                        Quote(in_.substr(pos_, 1))));
      }
      if (++elements_ > limits_.max_elements) {
        return Error(pos_, absl::StrCat("more than ", limits_.max_elements, " values"));
      }
      absl::StatusOr<std::string> key = DecodeString("dictionary key");
      if (!key.ok()) return key.status();
      if (pos_ >= in_.size()) {
        return Error(pos_, absl::StrCat("input ends before the value of dictionary key ",
                                        Quote(*key), " (byte ", key_at, ")"));
      }
      absl::StatusOr<BencodeValue> v = DecodeValue(depth);
      if (!v.ok()) return v.status();
      items.push_back(Item{key_at, {std::move(*key), std::move(*v)}});
    }
    ++pos_;  // 'e'
    std::stable_sort(items.begin(), items.end(),
                     [](const Item& a, const Item& b) { return a.entry.first < b.entry.first; });
    size_t dup_at = std::numeric_limits<size_t>::max();
    const std::string* dup_key = nullptr;
    for (size_t i = 1; i < items.size(); ++i) {
      if (items[i].entry.first == items[i - 1].entry.first) {
        const size_t at = std::max(items[i].offset, items[i - 1].offset);
        if (at < dup_at) {
          dup_at = at;
          dup_key = &items[i].entry.first;
        }
      }
    }
    if (dup_key != nullptr) {
      return Error(dup_at, absl::StrCat("duplicate dictionary key ", Quote(*dup_key),
                                        " in the dictionary that starts at byte ", start));
    }
    BencodeValue out;
    for (Item& item : items) out.Set(item.entry.first, std::move(item.entry.second));  // appends
    return out;
  }

  std::string_view in_;
  const BencodeLimits& limits_;
  size_t pos_ = 0;
  size_t elements_ = 0;
};

// Appends the decimal digits of n (no allocation; replies hold hundreds of numbers).
template <class Int>
void AppendDecimal(Int n, std::string& out) {
  char digits[24];
  const auto r = std::to_chars(digits, digits + sizeof(digits), n);
  out.append(digits, r.ptr);
}

// "<length>:<bytes>", a bencode string.
void AppendString(std::string_view s, std::string& out) {
  AppendDecimal(s.size(), out);
  out.push_back(':');
  out.append(s);
}

void Encode(const BencodeValue& v, std::string& out) {
  switch (v.type()) {
    case BencodeValue::Type::kInteger:
      out.push_back('i');
      AppendDecimal(*v.AsInteger(), out);
      out.push_back('e');
      return;
    case BencodeValue::Type::kString:
      AppendString(*v.AsString(), out);
      return;
    case BencodeValue::Type::kList:
      out.push_back('l');
      for (const BencodeValue& item : *v.AsList()) Encode(item, out);
      out.push_back('e');
      return;
    case BencodeValue::Type::kDictionary:
      out.push_back('d');
      for (const auto& [key, item] : *v.AsDictionary()) {
        AppendString(key, out);
        Encode(item, out);
      }
      out.push_back('e');
      return;
  }
}

std::string KeyName(std::string_view key) { return absl::StrCat("ng key ", Quote(key)); }

}  // namespace

BencodeValue BencodeValue::StringList(const std::vector<std::string>& items) {
  List l;
  l.reserve(items.size());
  for (const std::string& s : items) l.emplace_back(s);
  return BencodeValue(std::move(l));
}

const BencodeValue* BencodeValue::Find(std::string_view key) const {
  const Dictionary* d = AsDictionary();
  if (d == nullptr) return nullptr;
  auto it = std::lower_bound(d->begin(), d->end(), key,
                             [](const Entry& e, std::string_view k) { return e.first < k; });
  if (it == d->end() || it->first != key) return nullptr;
  return &it->second;
}

BencodeValue* BencodeValue::Find(std::string_view key) {
  return const_cast<BencodeValue*>(std::as_const(*this).Find(key));
}

BencodeValue& BencodeValue::Set(std::string_view key, BencodeValue value) {
  Dictionary* d = std::get_if<Dictionary>(&value_);
  if (d == nullptr) Die("Set() on a value that is not a dictionary");
  // Replies are mostly built in key order: append without a search or a shift.
  if (d->empty() || d->back().first < key) {
    if (d->capacity() == 0) d->reserve(8);
    return d->emplace_back(std::string(key), std::move(value)).second;
  }
  auto it = std::lower_bound(d->begin(), d->end(), key,
                             [](const Entry& e, std::string_view k) { return e.first < k; });
  if (it != d->end() && it->first == key) {
    it->second = std::move(value);
    return it->second;
  }
  return d->insert(it, Entry(std::string(key), std::move(value)))->second;
}

bool BencodeValue::Erase(std::string_view key) {
  Dictionary* d = std::get_if<Dictionary>(&value_);
  if (d == nullptr) return false;
  auto it = std::lower_bound(d->begin(), d->end(), key,
                             [](const Entry& e, std::string_view k) { return e.first < k; });
  if (it == d->end() || it->first != key) return false;
  d->erase(it);
  return true;
}

BencodeValue& BencodeValue::Append(BencodeValue value) {
  List* l = std::get_if<List>(&value_);
  if (l == nullptr) Die("Append() on a value that is not a list");
  l->push_back(std::move(value));
  return l->back();
}

namespace {

// The field `key` of `dict`, or NotFound / InvalidArgument naming the key.
absl::StatusOr<const BencodeValue*> Field(const BencodeValue& dict, std::string_view key) {
  if (!dict.is_dictionary()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", KeyName(key),
                                                   ": the message is ", TypeName(dict.type()),
                                                   ", not a dictionary"));
  }
  const BencodeValue* v = dict.Find(key);
  if (v == nullptr) return absl::NotFoundError(absl::StrCat(KeyName(key), " is missing"));
  return v;
}

absl::Status WrongType(std::string_view key, const char* want, const BencodeValue& got) {
  return absl::InvalidArgumentError(
      absl::StrCat(KeyName(key), " must be ", want, ", not ", TypeName(got.type())));
}

}  // namespace

absl::StatusOr<std::string_view> BencodeValue::GetString(std::string_view key) const {
  absl::StatusOr<const BencodeValue*> v = Field(*this, key);
  if (!v.ok()) return v.status();
  const std::string* s = (*v)->AsString();
  if (s == nullptr) return WrongType(key, "a string", **v);
  return std::string_view(*s);
}

absl::StatusOr<int64_t> BencodeValue::GetInteger(std::string_view key) const {
  absl::StatusOr<const BencodeValue*> v = Field(*this, key);
  if (!v.ok()) return v.status();
  if (const int64_t* i = (*v)->AsInteger()) return *i;
  if (const std::string* s = (*v)->AsString()) {
    int64_t n = 0;
    const char* end = s->data() + s->size();
    auto [ptr, ec] = std::from_chars(s->data(), end, n);
    if (!s->empty() && ec == std::errc() && ptr == end) return n;
    return absl::InvalidArgumentError(
        absl::StrCat(KeyName(key), " must be an integer, got the string ", Quote(*s)));
  }
  return WrongType(key, "an integer", **v);
}

absl::StatusOr<const BencodeValue::List*> BencodeValue::GetList(std::string_view key) const {
  absl::StatusOr<const BencodeValue*> v = Field(*this, key);
  if (!v.ok()) return v.status();
  const List* l = (*v)->AsList();
  if (l == nullptr) return WrongType(key, "a list", **v);
  return l;
}

absl::StatusOr<const BencodeValue*> BencodeValue::GetDictionary(std::string_view key) const {
  absl::StatusOr<const BencodeValue*> v = Field(*this, key);
  if (!v.ok()) return v.status();
  if (!(*v)->is_dictionary()) return WrongType(key, "a dictionary", **v);
  return *v;
}

absl::StatusOr<std::vector<std::string>> BencodeValue::GetStringList(std::string_view key) const {
  absl::StatusOr<const List*> l = GetList(key);
  if (absl::IsNotFound(l.status())) return std::vector<std::string>{};
  if (!l.ok()) return l.status();
  std::vector<std::string> out;
  out.reserve((*l)->size());
  for (size_t i = 0; i < (*l)->size(); ++i) {
    const std::string* s = (**l)[i].AsString();
    if (s == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          KeyName(key), "[", i, "] must be a string, not ", TypeName((**l)[i].type())));
    }
    out.push_back(*s);
  }
  return out;
}

absl::StatusOr<BencodeValue> DecodeBencode(std::string_view input, const BencodeLimits& limits) {
  return Decoder(input, limits).DecodeTop();
}

std::string EncodeBencode(const BencodeValue& value) {
  std::string out;
  Encode(value, out);
  return out;
}

absl::StatusOr<NgFrame> SplitNgFrame(std::string_view datagram) {
  const size_t space = datagram.find(' ');
  if (space == std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("ng: no space in the ", datagram.size(),
                     "-byte datagram; expected '<cookie> <bencoded dictionary>'"));
  }
  if (space == 0) {
    return absl::InvalidArgumentError("ng: the datagram starts with a space (empty cookie)");
  }
  return NgFrame{datagram.substr(0, space), datagram.substr(space + 1)};
}

absl::StatusOr<NgRequest> ParseNgRequest(std::string_view datagram, std::string* cookie_out,
                                         const BencodeLimits& limits) {
  absl::StatusOr<NgFrame> frame = SplitNgFrame(datagram);
  if (!frame.ok()) return frame.status();
  if (cookie_out != nullptr) cookie_out->assign(frame->cookie);
  absl::StatusOr<BencodeValue> message = DecodeBencode(frame->payload, limits);
  if (!message.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ng message (after the cookie): ", message.status().message()));
  }
  if (!message->is_dictionary()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ng message must be a dictionary, not ", TypeName(message->type())));
  }
  return NgRequest{std::string(frame->cookie), std::move(*message)};
}

std::string BuildNgReply(std::string_view cookie, const BencodeValue& reply) {
  std::string out(cookie);
  out.push_back(' ');
  Encode(reply, out);
  return out;
}

std::string BuildNgErrorReply(std::string_view cookie, std::string_view reason) {
  BencodeValue reply;
  reply.Set("result", "error");
  reply.Set("error-reason", reason);
  return BuildNgReply(cookie, reply);
}

}  // namespace karl
