#include "common/net_addr.h"

#include <gtest/gtest.h>

#include <string>

namespace karl {
namespace {

using namespace std::string_literals;

TEST(IpAddressTest, ParsesIpv4) {
  auto a = IpAddress::Parse("198.51.100.7");
  ASSERT_TRUE(a.has_value());
  EXPECT_TRUE(a->is_v4());
  EXPECT_FALSE(a->is_v6());
  EXPECT_EQ(a->v4(), 0xc6336407u);
  EXPECT_EQ(a->bytes()[0], 198);
  EXPECT_EQ(a->bytes()[3], 7);
  EXPECT_EQ(a->ToString(), "198.51.100.7");
  // Every octet width, and both ends (the IPv4 text is formatted by Karl itself).
  for (const char* text : {"0.0.0.0", "127.0.0.1", "203.0.113.255", "198.51.100.10"}) {
    EXPECT_EQ(IpAddress::Parse(text)->ToString(), text);
  }
  EXPECT_EQ(IpAddress::V4(0xffffffffu).ToString(), "255.255.255.255");
  EXPECT_EQ(IpAddress::V4(0xcb007109u).ToString(), "203.0.113.9");
  EXPECT_EQ(*a, IpAddress::V4(0xc6336407u));
}

TEST(IpAddressTest, ParsesIpv6AndFormatsCanonically) {
  auto a = IpAddress::Parse("2001:DB8:0:0:0:0:0:1");
  ASSERT_TRUE(a.has_value());
  EXPECT_TRUE(a->is_v6());
  EXPECT_EQ(a->ToString(), "2001:db8::1");
  EXPECT_EQ(a->bytes()[0], 0x20);
  EXPECT_EQ(a->bytes()[1], 0x01);
  EXPECT_EQ(a->bytes()[15], 0x01);
  auto mapped = IpAddress::Parse("::ffff:198.51.100.1");
  ASSERT_TRUE(mapped.has_value());
  EXPECT_TRUE(mapped->is_v6());
  EXPECT_EQ(mapped->ToString(), "::ffff:198.51.100.1");
}

TEST(IpAddressTest, UnspecifiedAndEmpty) {
  EXPECT_TRUE(IpAddress::Parse("0.0.0.0")->IsUnspecified());
  EXPECT_TRUE(IpAddress::Parse("::")->IsUnspecified());
  EXPECT_FALSE(IpAddress::Parse("::1")->IsUnspecified());
  EXPECT_FALSE(IpAddress::Parse("0.0.0.1")->IsUnspecified());
  IpAddress none;
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.ToString(), "");
}

TEST(IpAddressTest, FamiliesCompareApart) {
  // 0.0.0.0 and :: have the same (zero) bytes; only the family tells them apart.
  EXPECT_NE(*IpAddress::Parse("0.0.0.0"), *IpAddress::Parse("::"));
  EXPECT_LT(*IpAddress::Parse("198.51.100.1"), *IpAddress::Parse("198.51.100.2"));
}

TEST(IpAddressTest, RejectsBadInput) {
  for (const std::string& bad : {""s,
                                 "1.2.3"s,
                                 "1.2.3.4.5"s,
                                 "256.1.1.1"s,
                                 "1.2.3.4 "s,
                                 " 1.2.3.4"s,
                                 "01.2.3.4"s,
                                 "1.2.3.-4"s,
                                 "a.b.c.d"s,
                                 "2001:db8::1::2"s,
                                 "2001:db8:::1"s,
                                 "[::1]"s,
                                 "::1/128"s,
                                 "fe80::1%eth0"s,
                                 "2001:db8::g"s,
                                 "1.2.3.4:80"s,
                                 "localhost"s,
                                 std::string(100, '1'),
                                 "1.2.3.4\0junk"s,
                                 "::1\0"s}) {
    EXPECT_FALSE(IpAddress::Parse(bad).has_value()) << "accepted '" << bad << "'";
  }
}

TEST(IpPrefixTest, ParsesAndFormats) {
  auto p = IpPrefix::Parse("198.51.100.1/24");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->length, 24);
  EXPECT_EQ(p->address.ToString(), "198.51.100.1") << "host bits are kept";
  EXPECT_EQ(p->ToString(), "198.51.100.1/24");
  auto v6 = IpPrefix::Parse("2001:db8::1/64");
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ(v6->length, 64);
  EXPECT_EQ(v6->ToString(), "2001:db8::1/64");
  EXPECT_EQ(IpPrefix::Parse("0.0.0.0/0")->length, 0);
  EXPECT_EQ(IpPrefix::Parse("::/0")->length, 0);
}

TEST(IpPrefixTest, BareAddressIsAHostPrefix) {
  EXPECT_EQ(IpPrefix::Parse("198.51.100.1")->length, 32);
  EXPECT_EQ(IpPrefix::Parse("2001:db8::1")->length, 128);
}

TEST(IpPrefixTest, RejectsBadInput) {
  for (const std::string& bad :
       {"198.51.100.1/"s, "198.51.100.1/33"s, "2001:db8::/129"s, "198.51.100.1/-1"s,
        "198.51.100.1/+8"s, "198.51.100.1/24/8"s, "198.51.100.1/ 24"s, "198.51.100.1/24 "s,
        "198.51.100.1/2x"s, "/24"s, "x/24"s, "198.51.100.1/99999999999"s}) {
    EXPECT_FALSE(IpPrefix::Parse(bad).has_value()) << "accepted '" << bad << "'";
  }
}

TEST(IpPrefixTest, Contains) {
  const IpPrefix p = *IpPrefix::Parse("198.51.100.77/24");
  EXPECT_TRUE(p.Contains(*IpAddress::Parse("198.51.100.0")));
  EXPECT_TRUE(p.Contains(*IpAddress::Parse("198.51.100.255")));
  EXPECT_FALSE(p.Contains(*IpAddress::Parse("198.51.101.1")));
  EXPECT_FALSE(p.Contains(*IpAddress::Parse("::ffff:198.51.100.1"))) << "other family";

  const IpPrefix odd = *IpPrefix::Parse("203.0.113.64/26");  // .64 .. .127
  EXPECT_FALSE(odd.Contains(*IpAddress::Parse("203.0.113.63")));
  EXPECT_TRUE(odd.Contains(*IpAddress::Parse("203.0.113.64")));
  EXPECT_TRUE(odd.Contains(*IpAddress::Parse("203.0.113.127")));
  EXPECT_FALSE(odd.Contains(*IpAddress::Parse("203.0.113.128")));

  const IpPrefix v6 = *IpPrefix::Parse("2001:db8:8000::/33");
  EXPECT_TRUE(v6.Contains(*IpAddress::Parse("2001:db8:ffff::1")));
  EXPECT_FALSE(v6.Contains(*IpAddress::Parse("2001:db8:7fff::1")));
  EXPECT_FALSE(v6.Contains(*IpAddress::Parse("198.51.100.1")));

  EXPECT_TRUE(IpPrefix::Parse("0.0.0.0/0")->Contains(*IpAddress::Parse("203.0.113.1")));
  EXPECT_FALSE(IpPrefix::Parse("0.0.0.0/0")->Contains(*IpAddress::Parse("::1")));
  EXPECT_TRUE(IpPrefix::Parse("::/0")->Contains(*IpAddress::Parse("2001:db8::1")));
  const IpPrefix host = *IpPrefix::Parse("2001:db8::1/128");
  EXPECT_TRUE(host.Contains(*IpAddress::Parse("2001:db8::1")));
  EXPECT_FALSE(host.Contains(*IpAddress::Parse("2001:db8::2")));
}

TEST(MacAddressTest, ParsesBothSeparatorsAndFormatsLowercase) {
  auto m = MacAddress::Parse("02:00:5E:10:00:0a");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->bytes()[0], 0x02);
  EXPECT_EQ(m->bytes()[2], 0x5e);
  EXPECT_EQ(m->bytes()[5], 0x0a);
  EXPECT_EQ(m->ToString(), "02:00:5e:10:00:0a");
  EXPECT_EQ(MacAddress::Parse("02-00-5e-10-00-0a"), m);
  EXPECT_EQ(MacAddress::Parse("ff:ff:ff:ff:ff:ff")->ToString(), "ff:ff:ff:ff:ff:ff");
}

TEST(MacAddressTest, RejectsBadInput) {
  for (const std::string& bad :
       {""s, "02:00:5e:10:00"s, "02:00:5e:10:00:0a:01"s, "02:00:5e:10:00:0g"s, "02.00.5e.10.00.0a"s,
        "0200:5e:10:00:0a:1"s, "02:00:5e:10:00:0a "s, "2:0:5e:10:0:a"s, "+2:00:5e:10:00:0a"s,
        "02:00:5e:10:00:-1"s, "020:0:5e:10:00:0a"s}) {
    EXPECT_FALSE(MacAddress::Parse(bad).has_value()) << "accepted '" << bad << "'";
  }
}

TEST(HostPortTest, ParsesIpv4AndBracketedIpv6) {
  auto a = HostPort::Parse("127.0.0.1:22222");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->address.ToString(), "127.0.0.1");
  EXPECT_EQ(a->port, 22222);
  EXPECT_EQ(a->ToString(), "127.0.0.1:22222");

  auto b = HostPort::Parse("[::1]:22222");
  ASSERT_TRUE(b.has_value());
  EXPECT_TRUE(b->address.is_v6());
  EXPECT_EQ(b->port, 22222);
  EXPECT_EQ(b->ToString(), "[::1]:22222");

  auto c = HostPort::Parse("[2001:DB8::5]:65535");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->ToString(), "[2001:db8::5]:65535");
  EXPECT_EQ(HostPort::Parse("0.0.0.0:0")->port, 0);
}

TEST(HostPortTest, RoundTripsThroughToString) {
  for (const char* text : {"198.51.100.1:5060", "[2001:db8::1]:5061", "[::]:1"}) {
    auto hp = HostPort::Parse(text);
    ASSERT_TRUE(hp.has_value()) << text;
    EXPECT_EQ(hp->ToString(), text);
  }
}

TEST(HostPortTest, RejectsBadInput) {
  for (const std::string& bad : {""s,
                                 "127.0.0.1"s,
                                 "127.0.0.1:"s,
                                 ":80"s,
                                 "127.0.0.1:65536"s,
                                 "127.0.0.1:-1"s,
                                 "127.0.0.1:+80"s,
                                 "127.0.0.1:80x"s,
                                 "127.0.0.1:99999999999999999999"s,
                                 "::1:80"s,
                                 "2001:db8::1:5060"s,
                                 "[::1]"s,
                                 "[::1]:"s,
                                 "[::1]80"s,
                                 "[::1:80"s,
                                 "[]:80"s,
                                 "[::1]:80:81"s,
                                 "localhost:80"s,
                                 "[localhost]:80"s,
                                 "127.0.0.1: 80"s}) {
    EXPECT_FALSE(HostPort::Parse(bad).has_value()) << "accepted '" << bad << "'";
  }
}

}  // namespace
}  // namespace karl
