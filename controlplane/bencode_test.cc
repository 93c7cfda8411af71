#include "controlplane/bencode.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <string>

namespace karl {
namespace {

using ::testing::HasSubstr;

// "<length>:<bytes>".
std::string Str(const std::string& s) { return std::to_string(s.size()) + ":" + s; }

// An offer the way Kamailio's rtpengine module sends it: keys in its own order, not sorted.
std::string KamailioOffer() {
  const std::string sdp =
      "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
      "m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";
  return "d" + Str("command") + Str("offer") + Str("call-id") + Str("a84b4c76e66710@pc330") +
         Str("sdp") + Str(sdp) + Str("flags") + "l" + Str("trust-address") + Str("SIP-source") +
         "e" + Str("replace") + "l" + Str("origin") + Str("session-connection") + "e" +
         Str("from-tag") + Str("1928301774") + Str("received-from") + "l" + Str("IP4") +
         Str("192.0.2.10") + "e" + Str("rtcp-mux") + "l" + Str("demux") + "e" + Str("ptime") +
         Str("20") + "e";
}

TEST(BencodeTest, DecodesEachType) {
  auto i = DecodeBencode("i42e");
  ASSERT_TRUE(i.ok()) << i.status();
  EXPECT_EQ(*i->AsInteger(), 42);
  EXPECT_EQ(*DecodeBencode("i-7e")->AsInteger(), -7);
  EXPECT_EQ(*DecodeBencode("i0e")->AsInteger(), 0);

  auto s = DecodeBencode("4:spam");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(*s->AsString(), "spam");
  EXPECT_EQ(*DecodeBencode("0:")->AsString(), "");

  auto l = DecodeBencode("l4:spami42ee");
  ASSERT_TRUE(l.ok()) << l.status();
  ASSERT_EQ(l->AsList()->size(), 2u);
  EXPECT_EQ(*(*l->AsList())[0].AsString(), "spam");
  EXPECT_EQ(*(*l->AsList())[1].AsInteger(), 42);
  EXPECT_TRUE(DecodeBencode("le")->AsList()->empty());

  auto d = DecodeBencode("d3:bar4:spam3:fooi42ee");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d->Find("bar")->AsString(), "spam");
  EXPECT_EQ(*d->Find("foo")->AsInteger(), 42);
  EXPECT_EQ(d->Find("baz"), nullptr);
  EXPECT_TRUE(DecodeBencode("de")->AsDictionary()->empty());
}

TEST(BencodeTest, IntegersUseTheWholeInt64RangeAndNoMore) {
  EXPECT_EQ(*DecodeBencode("i9223372036854775807e")->AsInteger(), INT64_MAX);
  EXPECT_EQ(*DecodeBencode("i-9223372036854775808e")->AsInteger(), INT64_MIN);
  for (const char* text :
       {"i9223372036854775808e", "i-9223372036854775809e", "i99999999999999999999e"}) {
    auto v = DecodeBencode(text);
    ASSERT_FALSE(v.ok()) << text;
    EXPECT_THAT(v.status().message(), HasSubstr("does not fit in 64 bits at byte 0")) << text;
  }
  EXPECT_EQ(EncodeBencode(INT64_MIN), "i-9223372036854775808e");
  EXPECT_EQ(EncodeBencode(INT64_MAX), "i9223372036854775807e");
}

TEST(BencodeTest, MalformedInputSaysWhatAndWhere) {
  const std::pair<std::string, std::string> cases[] = {
      {"", "empty input at byte 0"},
      {"i", "input ends inside the integer that starts at byte 0 at byte 1"},
      {"i12", "input ends inside the integer that starts at byte 0 at byte 3"},
      {"ie", "integer has no digits at byte 0"},
      {"i-e", "integer has no digits at byte 0"},
      {"i-0e", "integer is \"-0\" at byte 0"},
      {"i03e", "integer has a leading zero at byte 1"},
      {"i-03e", "integer has a leading zero at byte 2"},
      {"i00e", "integer has a leading zero at byte 1"},
      {"i1x2e", "unexpected 'x' in the integer that starts at byte 0 at byte 2"},
      {"i+1e", "unexpected '+' in the integer that starts at byte 0 at byte 1"},
      {"5:abc", "string of 5 bytes runs past the end of the input (3 bytes left) at byte 0"},
      {"03:abc", "string length has a leading zero at byte 0"},
      {"3abc", "expected ':' after the string length, got 'a' at byte 1"},
      {"1", "input ends inside the string length that starts at byte 0 at byte 1"},
      {"12", "string length is longer than the whole input (2 bytes) at byte 0"},
      {"99999999999999999999999:x", "string length is longer than the whole input (25 bytes)"},
      {"l", "input ends inside the list that starts at byte 0 at byte 1"},
      {"li1e", "input ends inside the list that starts at byte 0 at byte 4"},
      {"d", "input ends inside the dictionary that starts at byte 0 at byte 1"},
      {"di1ei2ee", "dictionary key must be a string, got 'i' at byte 1"},
      {"dlee1:ae", "dictionary key must be a string, got 'l' at byte 1"},
      {"d3:foo", "input ends before the value of dictionary key 'foo' (byte 1) at byte 6"},
      {"d3:fooe", "unexpected 'e' where a value should start"},
      {"d03:fooi1ee", "dictionary key length has a leading zero at byte 1"},
      {"d3:fooi1e3:bari2e3:fooi3ee",
       "duplicate dictionary key 'foo' in the dictionary that starts at byte 0 at byte 17"},
      {"i1ei2e", "3 trailing byte(s) after the value at byte 3"},
      {"le ", "1 trailing byte(s) after the value at byte 2"},
      {"x", "unexpected 'x' where a value should start (i, l, d or a digit) at byte 0"},
      {"-1:a", "unexpected '-' where a value should start"},
      {std::string("l\0e", 3), "unexpected '\\x00' where a value should start"},
      {"e", "unexpected 'e' where a value should start"},
  };
  for (const auto& [text, want] : cases) {
    auto v = DecodeBencode(text);
    ASSERT_FALSE(v.ok()) << "'" << text << "' decoded";
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(v.status().message(), HasSubstr(want)) << text;
    EXPECT_THAT(v.status().message(), HasSubstr("bencode: ")) << text;
  }
}

TEST(BencodeTest, NestingDeeperThanTheLimitIsRefused) {
  const std::string ok = std::string(64, 'l') + std::string(64, 'e');
  EXPECT_TRUE(DecodeBencode(ok).ok());
  const std::string deep = std::string(65, 'l') + std::string(65, 'e');
  auto v = DecodeBencode(deep);
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("nested deeper than 64 at byte 64"));
  // Dictionaries count too, and a huge nesting attempt fails fast without recursing.
  std::string dicts;
  for (int i = 0; i < 100000; ++i) dicts += "d1:a";
  v = DecodeBencode(dicts);
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("nested deeper than 64"));
  BencodeLimits shallow;
  shallow.max_depth = 2;
  EXPECT_TRUE(DecodeBencode("llee", shallow).ok());
  EXPECT_FALSE(DecodeBencode("llleee", shallow).ok());
}

TEST(BencodeTest, ElementCountIsLimited) {
  BencodeLimits limits;
  limits.max_elements = 5;
  EXPECT_TRUE(DecodeBencode("li1ei2ei3ei4ee", limits).ok());  // the list + 4
  auto v = DecodeBencode("li1ei2ei3ei4ei5ee", limits);
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("more than 5 values at byte 13"));
  // Dictionary keys count as values.
  EXPECT_TRUE(DecodeBencode("d1:ai1e1:bi2ee", limits).ok());
  EXPECT_FALSE(DecodeBencode("d1:ai1e1:bi2e1:ci3ee", limits).ok());
  // The default allows what fits in a UDP datagram.
  std::string many = "l";
  for (int i = 0; i < 30000; ++i) many += "0:";
  many += "e";
  EXPECT_TRUE(DecodeBencode(many).ok());
}

TEST(BencodeTest, StringsAreBinarySafe) {
  const std::string bytes("a\0b\xff\x80\0", 6);
  auto v = DecodeBencode(std::string("6:") + bytes);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v->AsString(), bytes);
  EXPECT_EQ(EncodeBencode(BencodeValue(bytes)), std::string("6:") + bytes);
  // Binary keys too.
  BencodeValue d;
  d.Set(std::string_view("k\0y", 3), "v");
  auto back = DecodeBencode(EncodeBencode(d));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back->Find(std::string_view("k\0y", 3))->AsString(), "v");
}

TEST(BencodeTest, UnsortedKeysAreAcceptedAndEncodedSorted) {
  auto v = DecodeBencode("d1:bi1e1:ai2e2:aai3ee");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(EncodeBencode(*v), "d1:ai2e2:aai3e1:bi1ee");
  // Raw byte order: 0xff sorts after ASCII, "a" before "ab" before "b".
  BencodeValue d;
  d.Set("\xff", 1);
  d.Set("b", 2);
  d.Set("ab", 3);
  d.Set("a", 4);
  EXPECT_EQ(EncodeBencode(d), "d1:ai4e2:abi3e1:bi2e1:\xffi1ee");
}

TEST(BencodeTest, RoundTripsNestedValues) {
  BencodeValue v;
  v.Set("command", "offer");
  v.Set("sdp", std::string("v=0\r\n\0binary\xfe", 14));
  v.Set("negative", -123456789);
  v.Set("zero", 0);
  v.Set("empty", "");
  v.Set("flags", BencodeValue::StringList({"trust-address", "symmetric"}));
  BencodeValue& inner = v.Set("inner", BencodeValue::EmptyDictionary());
  inner.Set("list", BencodeValue::EmptyList()).Append(BencodeValue::EmptyList()).Append(7);
  inner.Set("d", BencodeValue::EmptyDictionary());
  const std::string wire = EncodeBencode(v);
  auto back = DecodeBencode(wire);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, v);
  EXPECT_EQ(EncodeBencode(*back), wire);
  EXPECT_EQ(EncodeBencode(*v.Find("inner")), "d1:dde4:listlli7eeee");
}

TEST(BencodeTest, DictionaryHelpers) {
  BencodeValue d;
  EXPECT_TRUE(d.is_dictionary());
  d.Set("b", 1);
  d.Set("a", "x");
  d.Set("b", 2);  // replaces
  ASSERT_EQ(d.AsDictionary()->size(), 2u);
  EXPECT_EQ(*d.Find("b")->AsInteger(), 2);
  EXPECT_TRUE(d.Erase("a"));
  EXPECT_FALSE(d.Erase("a"));
  EXPECT_EQ(d.Find("a"), nullptr);
  d.Find("b")->AsList();  // wrong type: nullptr, no crash
  EXPECT_EQ(d.Find("b")->AsList(), nullptr);
  BencodeValue i(5);
  EXPECT_EQ(i.Find("x"), nullptr);
  EXPECT_FALSE(i.Erase("x"));
  EXPECT_EQ(EncodeBencode(BencodeValue(uint16_t{65535})), "i65535e");
}

TEST(BencodeDeathTest, SetOnANonDictionaryIsAProgrammingError) {
  BencodeValue l = BencodeValue::EmptyList();
  EXPECT_DEATH(l.Set("a", 1), "not a dictionary");
  BencodeValue d;
  EXPECT_DEATH(d.Append(1), "not a list");
}

TEST(BencodeTest, TypedGettersNameTheKey) {
  auto msg = DecodeBencode(KamailioOffer());
  ASSERT_TRUE(msg.ok()) << msg.status();
  EXPECT_EQ(*msg->GetString("command"), "offer");
  EXPECT_EQ(*msg->GetString("call-id"), "a84b4c76e66710@pc330");
  EXPECT_EQ(*msg->GetInteger("ptime"), 20);  // sent as a string
  EXPECT_EQ(*msg->GetStringList("flags"),
            (std::vector<std::string>{"trust-address", "SIP-source"}));
  EXPECT_EQ(*msg->GetStringList("replace"),
            (std::vector<std::string>{"origin", "session-connection"}));
  EXPECT_TRUE(msg->GetStringList("SDES")->empty());  // absent = empty
  EXPECT_EQ((*msg->GetList("received-from"))->size(), 2u);

  auto missing = msg->GetString("to-tag");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "ng key 'to-tag' is missing");
  auto wrong = msg->GetString("flags");
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(wrong.status().message(), "ng key 'flags' must be a string, not a list");
  EXPECT_EQ(msg->GetInteger("command").status().message(),
            "ng key 'command' must be an integer, got the string 'offer'");
  EXPECT_EQ(msg->GetDictionary("sdp").status().message(),
            "ng key 'sdp' must be a dictionary, not a string");
  EXPECT_EQ(msg->GetList("command").status().message(),
            "ng key 'command' must be a list, not a string");

  BencodeValue d;
  d.Set("n", 3);
  d.Set("neg", "-12");
  d.Set("bad", "12a");
  d.Set("empty", "");
  d.Set("sub", BencodeValue::EmptyDictionary()).Set("x", 1);
  BencodeValue::List mixed;
  mixed.emplace_back("a");
  mixed.emplace_back(2);
  d.Set("mixed", BencodeValue(std::move(mixed)));
  d.Set("flag", "notalist");
  EXPECT_EQ(*d.GetInteger("n"), 3);
  EXPECT_EQ(*d.GetInteger("neg"), -12);
  EXPECT_FALSE(d.GetInteger("bad").ok());
  EXPECT_FALSE(d.GetInteger("empty").ok());
  EXPECT_EQ(*(*d.GetDictionary("sub"))->GetInteger("x"), 1);
  EXPECT_EQ(d.GetStringList("mixed").status().message(),
            "ng key 'mixed'[1] must be a string, not an integer");
  EXPECT_EQ(d.GetStringList("flag").status().message(),
            "ng key 'flag' must be a list, not a string");
  EXPECT_EQ(BencodeValue(1).GetString("x").status().message(),
            "cannot read ng key 'x': the message is an integer, not a dictionary");
}

TEST(BencodeTest, EveryTruncationOfAValidMessageIsAnError) {
  const std::string wire = KamailioOffer();
  ASSERT_TRUE(DecodeBencode(wire).ok());
  for (size_t n = 0; n < wire.size(); ++n) {
    auto v = DecodeBencode(std::string_view(wire).substr(0, n));
    EXPECT_FALSE(v.ok()) << "prefix of " << n << " bytes decoded";
  }
  // The same for a value with every type nested.
  BencodeValue v;
  v.Set("a", BencodeValue::EmptyList()).Append(-5);
  v.Set("b", BencodeValue::EmptyDictionary()).Set("c", std::string("\0\0", 2));
  const std::string nested = EncodeBencode(v);
  for (size_t n = 0; n < nested.size(); ++n) {
    EXPECT_FALSE(DecodeBencode(std::string_view(nested).substr(0, n)).ok()) << n;
  }
}

// Random and mutated inputs never crash; whatever decodes re-encodes to a value that
// decodes to the same thing.
TEST(BencodeTest, FuzzedInputNeverCrashes) {
  std::mt19937 rng(20240605);
  const std::string seed = KamailioOffer();
  const std::string alphabet = "ilde0123456789:-";
  auto check = [](const std::string& input) {
    auto v = DecodeBencode(input);
    if (!v.ok()) {
      EXPECT_THAT(v.status().message(), HasSubstr(" at byte "));
      return;
    }
    const std::string again = EncodeBencode(*v);
    auto back = DecodeBencode(again);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, *v);
  };
  int decoded = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string input;
    const int mode = iter % 4;
    if (mode == 0) {  // random bytes from the bencode alphabet
      const size_t len = rng() % 40;
      for (size_t i = 0; i < len; ++i) input.push_back(alphabet[rng() % alphabet.size()]);
    } else if (mode == 1) {  // random bytes
      const size_t len = rng() % 40;
      for (size_t i = 0; i < len; ++i) input.push_back(static_cast<char>(rng() & 0xff));
    } else {  // mutations of a real message
      input = seed;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits && !input.empty(); ++e) {
        const size_t at = rng() % input.size();
        switch (rng() % 5) {
          case 0:
            input[at] = static_cast<char>(rng() & 0xff);
            break;
          case 1:
            input[at] = alphabet[rng() % alphabet.size()];
            break;
          case 2:
            input.erase(at, 1 + rng() % 8);
            break;
          case 3:
            input.insert(at, 1, alphabet[rng() % alphabet.size()]);
            break;
          case 4:
            input.insert(at, input.substr(rng() % input.size(), rng() % 16));
            break;
        }
      }
    }
    if (DecodeBencode(input).ok()) ++decoded;
    check(input);
  }
  EXPECT_GT(decoded, 0) << "the fuzz loop never produced a valid input";
}

TEST(NgFrameTest, SplitsAtTheFirstSpace) {
  auto f = SplitNgFrame("5323_1 d7:command4:pinge");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->cookie, "5323_1");
  EXPECT_EQ(f->payload, "d7:command4:pinge");
  f = SplitNgFrame("c  x");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->cookie, "c");
  EXPECT_EQ(f->payload, " x");
  EXPECT_EQ(SplitNgFrame("c ")->payload, "");

  auto no_space = SplitNgFrame("d7:command4:pinge");
  ASSERT_FALSE(no_space.ok());
  EXPECT_EQ(no_space.status().message(),
            "ng: no space in the 17-byte datagram; expected '<cookie> <bencoded dictionary>'");
  auto empty_cookie = SplitNgFrame(" d7:command4:pinge");
  ASSERT_FALSE(empty_cookie.ok());
  EXPECT_THAT(empty_cookie.status().message(), HasSubstr("empty cookie"));
  EXPECT_FALSE(SplitNgFrame("").ok());
}

TEST(NgFrameTest, ParsesRequestsAndKeepsTheCookieForErrorReplies) {
  auto r = ParseNgRequest("7f2a " + KamailioOffer());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->cookie, "7f2a");
  EXPECT_EQ(*r->message.GetString("command"), "offer");

  std::string cookie;
  auto not_dict = ParseNgRequest("c1 l7:commande", &cookie);
  ASSERT_FALSE(not_dict.ok());
  EXPECT_EQ(not_dict.status().message(), "ng message must be a dictionary, not a list");
  EXPECT_EQ(cookie, "c1");

  cookie.clear();
  auto bad = ParseNgRequest("c2 d7:command", &cookie);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(),
              HasSubstr("ng message (after the cookie): bencode: input ends before the value"));
  EXPECT_EQ(cookie, "c2");

  cookie = "unchanged";
  EXPECT_FALSE(ParseNgRequest("nospace", &cookie).ok());
  EXPECT_EQ(cookie, "unchanged");
}

TEST(NgFrameTest, BuildsReplies) {
  BencodeValue pong;
  pong.Set("result", "pong");
  EXPECT_EQ(BuildNgReply("5323_1", pong), "5323_1 d6:result4:ponge");
  EXPECT_EQ(BuildNgErrorReply("c9", "Unknown call-id"),
            "c9 d12:error-reason15:Unknown call-id6:result5:errore");
  // The reply decodes back through the request path.
  auto back = ParseNgRequest(BuildNgErrorReply("c9", "x"));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back->message.GetString("result"), "error");
}

}  // namespace
}  // namespace karl
