#include "controlplane/sdp.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>

#include "controlplane/sdes.h"

namespace karl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::filesystem::path kCorpus = std::filesystem::path(KARL_SOURCE_DIR) / "tests/data/sdp";

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Every line ending (CRLF or LF, and a missing last one) as CRLF.
std::string Crlf(std::string_view text) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? nl : nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.append(line).append("\r\n");
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
  }
  return out;
}

Sdp MustParse(std::string_view text) {
  absl::StatusOr<Sdp> sdp = Sdp::Parse(text);
  EXPECT_TRUE(sdp.ok()) << sdp.status();
  return sdp.ok() ? *std::move(sdp) : *Sdp::Parse("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\n");
}

// The rewrites the corpus has expected outputs for. Each is what one ng option makes the
// handler do, built only from the library's operations.
const std::map<std::string, std::function<void(Sdp&)>>& Rewrites() {
  static const auto* rewrites = new std::map<std::string, std::function<void(Sdp&)>>{
      // Anchor media on Karl: its address everywhere (o= too) except on streams held the
      // RFC 2543 way (c=0.0.0.0 stays, so the peer still sees hold), RTP ports 40000,
      // 40002, ... for accepted streams, a=rtcp following the RTP port, sess-version + 1.
      {"relay",
       [](Sdp& sdp) {
         const SdpConnection karl = sdp.origin().addrtype == "IP6"
                                        ? SdpConnection{"IN", "IP6", "2001:db8:ffff::1"}
                                        : SdpConnection{"IN", "IP4", "203.0.113.1"};
         for (size_t i = 0; i < sdp.media().size(); ++i) {
           SdpMedia& m = sdp.media(i);
           const std::optional<SdpConnection> c = sdp.EffectiveConnection(i);
           const bool zero_hold = sdp.IsOnHold(i) && c && c->Ip() && c->Ip()->IsUnspecified();
           if (!zero_hold) sdp.SetMediaConnection(i, karl);
           if (m.rejected()) continue;
           const uint16_t port = static_cast<uint16_t>(40000 + 2 * i);
           m.SetPort(port);
           if (std::optional<SdpRtcp> rtcp = m.rtcp()) {
             rtcp->port = m.rtcp_mux() ? port : static_cast<uint16_t>(port + 1);
             if (rtcp->connection) rtcp->connection = karl;
             m.SetRtcp(*rtcp);
           }
         }
         sdp.SetOriginAddress(karl);
         sdp.BumpSessionVersion();
       }},
      // SRTP (SDES or DTLS) to plain RTP: AVP(F) proto, no keys, no ICE, no DTLS.
      {"plain",
       [](Sdp& sdp) {
         for (size_t i = 0; i < sdp.media().size(); ++i) {
           SdpMedia& m = sdp.media(i);
           m.SetProto(m.proto().ends_with("AVPF") ? "RTP/AVPF" : "RTP/AVP");
           m.RemoveAllCrypto();
           m.RemoveAttributes("fingerprint");
           m.RemoveAttributes("setup");
         }
         sdp.session().RemoveAttributes("fingerprint");
         sdp.RemoveIce();
       }},
      // Plain RTP to SDES-SRTP with Karl's keys.
      {"srtp",
       [](Sdp& sdp) {
         for (size_t i = 0; i < sdp.media().size(); ++i) {
           SdpMedia& m = sdp.media(i);
           if (m.rejected()) continue;
           m.SetProto(m.proto() == "RTP/AVPF" ? "RTP/SAVPF" : "RTP/SAVP");
           m.RemoveAllCrypto();
           m.AddCrypto("1 AES_CM_128_HMAC_SHA1_80 inline:zVHrbsiEtRkJ0OTCxXhKPMuzOP1w6bLtC5dDw+lq");
           m.AddCrypto("2 AES_CM_128_HMAC_SHA1_32 inline:f1DezSLEkxnWRn+tdUDTRZrO1jf+LHz6LbMpbzbK");
         }
       }},
      // Put every accepted stream on hold (RFC 3264 §8.4): sendrecv becomes sendonly,
      // recvonly becomes inactive.
      {"hold",
       [](Sdp& sdp) {
         for (size_t i = 0; i < sdp.media().size(); ++i) {
           if (sdp.media(i).rejected()) continue;
           const SdpDirection d = sdp.EffectiveDirection(i);
           sdp.media(i).SetDirection(d == SdpDirection::kSendRecv || d == SdpDirection::kSendOnly
                                         ? SdpDirection::kSendOnly
                                         : SdpDirection::kInactive);
         }
       }},
      // Take every held stream off hold, including the RFC 2543 c=0.0.0.0 form.
      {"resume",
       [](Sdp& sdp) {
         for (size_t i = 0; i < sdp.media().size(); ++i) {
           if (!sdp.IsOnHold(i)) continue;
           sdp.media(i).SetDirection(SdpDirection::kSendRecv);
           std::optional<SdpConnection> c = sdp.EffectiveConnection(i);
           if (c && c->Ip() && c->Ip()->IsUnspecified()) {
             sdp.SetMediaConnection(i, SdpConnection{"IN", "IP4", "192.0.2.99"});
           }
         }
       }},
      // Offer rtcp-mux only: a=rtcp-mux, no separate a=rtcp.
      {"rtcpmux",
       [](Sdp& sdp) {
         for (size_t i = 0; i < sdp.media().size(); ++i) {
           if (sdp.media(i).rejected()) continue;
           sdp.media(i).SetRtcpMux(true);
           sdp.media(i).RemoveRtcp();
         }
       }},
      // rtcp-mux off: drop a=rtcp-mux; RTCP goes to RTP port + 1.
      {"demux",
       [](Sdp& sdp) {
         for (size_t i = 0; i < sdp.media().size(); ++i) {
           SdpMedia& m = sdp.media(i);
           if (m.rejected()) continue;
           m.SetRtcpMux(false);
           m.SetRtcp(SdpRtcp{static_cast<uint16_t>(m.port() + 1), std::nullopt});
         }
       }},
      {"noice", [](Sdp& sdp) { sdp.RemoveIce(); }},
  };
  return *rewrites;
}

// Which rewrite each corpus file has an expected output for.
const std::map<std::string, std::vector<std::string>> kExpected = {
    {"asterisk_audio", {"relay", "srtp", "hold", "rtcpmux"}},
    {"chrome_webrtc", {"relay", "plain", "noice"}},
    {"cisco_oldstyle_hold", {"relay", "resume"}},
    {"firefox_trickle", {"relay", "noice"}},
    {"freeswitch_sdes", {"relay", "plain"}},
    {"linphone_ipv6", {"relay", "srtp"}},
    {"polycom_audio_video", {"relay", "hold"}},
    {"rtpengine_out", {"relay", "rtcpmux"}},
    {"sbc_multi_rejected", {"relay", "hold"}},
    {"snom_sdes_mux", {"relay", "plain", "demux"}},
    {"yealink_hold", {"relay", "resume"}},
};

std::vector<std::string> CorpusNames() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(kCorpus)) {
    const std::string file = entry.path().filename().string();
    if (file.ends_with(".sdp") && !file.ends_with(".expected.sdp")) {
      names.push_back(file.substr(0, file.size() - 4));
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(SdpCorpusTest, EveryFileParsesAndComesBackByteForByte) {
  const std::vector<std::string> names = CorpusNames();
  ASSERT_GE(names.size(), 11u) << "corpus missing under " << kCorpus;
  for (const std::string& name : names) {
    const std::string text = ReadFile(kCorpus / (name + ".sdp"));
    absl::StatusOr<Sdp> sdp = Sdp::Parse(text);
    ASSERT_TRUE(sdp.ok()) << name << ": " << sdp.status();
    EXPECT_EQ(sdp->ToString(), Crlf(text)) << name;
  }
}

// Compares each rewrite with tests/data/sdp/<name>.<rewrite>.expected.sdp. With
// KARL_SDP_WRITE_EXPECTED=1 the files are (re)written instead: review their diff.
TEST(SdpCorpusTest, RewritesGiveTheExpectedFiles) {
  const bool write = std::getenv("KARL_SDP_WRITE_EXPECTED") != nullptr;
  std::set<std::string> listed;
  size_t compared = 0;
  for (const auto& [name, rewrites] : kExpected) {
    const std::string text = ReadFile(kCorpus / (name + ".sdp"));
    for (const std::string& rewrite : rewrites) {
      SCOPED_TRACE(name + "." + rewrite);
      const std::string file = name + "." + rewrite + ".expected.sdp";
      listed.insert(file);
      ASSERT_TRUE(Rewrites().contains(rewrite));
      Sdp sdp = MustParse(text);
      Rewrites().at(rewrite)(sdp);
      const std::string got = sdp.ToString();
      if (write) {
        std::ofstream(kCorpus / file, std::ios::binary) << got;
        continue;
      }
      // Compared line by line for a readable failure; CRLF either way (see Crlf).
      EXPECT_EQ(got, Crlf(ReadFile(kCorpus / file)));
      // The output parses again and is stable.
      absl::StatusOr<Sdp> again = Sdp::Parse(got);
      ASSERT_TRUE(again.ok()) << again.status();
      EXPECT_EQ(again->ToString(), got);
      ++compared;
    }
  }
  if (!write) {
    EXPECT_EQ(compared, 26u);
  }
  // No expected file without an entry above (a rewrite nobody runs).
  for (const auto& entry : std::filesystem::directory_iterator(kCorpus)) {
    const std::string file = entry.path().filename().string();
    if (file.ends_with(".expected.sdp")) {
      EXPECT_TRUE(listed.contains(file)) << file;
    }
  }
}

TEST(SdpCorpusTest, ReadsWhatTheDevicesSent) {
  Sdp asterisk = MustParse(ReadFile(kCorpus / "asterisk_audio.sdp"));
  EXPECT_EQ(asterisk.origin(),
            (SdpOrigin{"-", "1651048382", "1651048382", "IN", "IP4", "192.0.2.20"}));
  ASSERT_EQ(asterisk.media().size(), 1u);
  EXPECT_EQ(asterisk.media(0).media(), "audio");
  EXPECT_EQ(asterisk.media(0).port(), 14264);
  EXPECT_EQ(asterisk.media(0).proto(), "RTP/AVP");
  EXPECT_THAT(asterisk.media(0).formats(), ElementsAre("0", "8", "3", "9", "101"));
  EXPECT_EQ(asterisk.EffectiveConnection(0), (SdpConnection{"IN", "IP4", "192.0.2.20"}));
  EXPECT_FALSE(asterisk.media(0).connection());
  EXPECT_FALSE(asterisk.IsOnHold(0));

  Sdp fs = MustParse(ReadFile(kCorpus / "freeswitch_sdes.sdp"));
  const std::vector<std::string_view> crypto = fs.media(0).crypto();
  ASSERT_EQ(crypto.size(), 7u);
  int usable = 0;
  for (std::string_view c : crypto) usable += ParseSdesCrypto(c).ok() ? 1 : 0;
  EXPECT_EQ(usable, 4);  // the GCM "_8" and AES_192 names are FreeSWITCH's own
  EXPECT_EQ(fs.media(0).rtcp(), (SdpRtcp{22177, SdpConnection{"IN", "IP4", "198.51.100.7"}}));

  Sdp polycom = MustParse(ReadFile(kCorpus / "polycom_audio_video.sdp"));
  ASSERT_EQ(polycom.media().size(), 2u);
  EXPECT_EQ(polycom.session().direction(), SdpDirection::kSendRecv);
  EXPECT_FALSE(polycom.media(1).direction());
  EXPECT_EQ(polycom.EffectiveDirection(1), SdpDirection::kSendRecv);

  Sdp yealink = MustParse(ReadFile(kCorpus / "yealink_hold.sdp"));
  EXPECT_EQ(yealink.EffectiveDirection(0), SdpDirection::kSendOnly);
  EXPECT_TRUE(yealink.IsOnHold(0));

  Sdp cisco = MustParse(ReadFile(kCorpus / "cisco_oldstyle_hold.sdp"));
  EXPECT_EQ(cisco.EffectiveDirection(0), SdpDirection::kSendRecv);
  EXPECT_TRUE(cisco.IsOnHold(0));

  Sdp chrome = MustParse(ReadFile(kCorpus / "chrome_webrtc.sdp"));
  ASSERT_EQ(chrome.media().size(), 2u);
  EXPECT_EQ(chrome.media(0).Attributes("candidate").size(), 3u);
  EXPECT_EQ(chrome.media(0).Attribute("ice-ufrag"), "Oy7v");
  EXPECT_TRUE(chrome.media(0).rtcp_mux());
  EXPECT_EQ(chrome.media(1).proto(), "UDP/TLS/RTP/SAVPF");
  EXPECT_EQ(chrome.session().Attribute("group"), "BUNDLE 0 1");

  Sdp firefox = MustParse(ReadFile(kCorpus / "firefox_trickle.sdp"));
  EXPECT_EQ(firefox.media(0).port(), 9);
  EXPECT_FALSE(firefox.IsOnHold(0)) << "JSEP's 0.0.0.0 with ICE is not hold";

  Sdp linphone = MustParse(ReadFile(kCorpus / "linphone_ipv6.sdp"));
  EXPECT_EQ(linphone.EffectiveConnection(0)->Ip(), IpAddress::Parse("2001:db8:a::10"));
  EXPECT_EQ(linphone.media(0).rtcp()->connection->addrtype, "IP6");

  Sdp sbc = MustParse(ReadFile(kCorpus / "sbc_multi_rejected.sdp"));
  ASSERT_EQ(sbc.media().size(), 4u);
  EXPECT_FALSE(sbc.session().connection());
  EXPECT_TRUE(sbc.media(1).rejected());
  EXPECT_TRUE(sbc.media(3).rejected());
  EXPECT_THAT(sbc.media(3).formats(), ElementsAre("*"));
  EXPECT_FALSE(sbc.EffectiveConnection(3));
  EXPECT_EQ(sbc.EffectiveConnection(2)->address, "192.0.2.31");
  EXPECT_TRUE(sbc.IsOnHold(2));  // inactive
  EXPECT_EQ(sbc.media(2).line_number(), 13);

  Sdp snom = MustParse(ReadFile(kCorpus / "snom_sdes_mux.sdp"));
  EXPECT_TRUE(snom.media(0).rtcp_mux());
  EXPECT_EQ(snom.media(0).rtcp()->port, snom.media(0).port());
  auto key = ParseSdesCrypto(snom.media(0).crypto()[0]);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->mki, std::vector<uint8_t>{1});
}

// Unit tests of each operation on small SDPs.

constexpr char kOffer[] =
    "v=0\r\n"
    "o=- 100 7 IN IP4 192.0.2.1\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.1\r\n"
    "t=0 0\r\n"
    "m=audio 5000 RTP/AVP 0 101\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=sendrecv\r\n"
    "m=video 5002 RTP/AVP 96\r\n"
    "a=rtpmap:96 H264/90000\r\n";

TEST(SdpTest, AcceptsLfAndCrlfAndWritesCrlf) {
  const std::string lf = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\r\nc=IN IP4 192.0.2.1\nt=0 0";
  Sdp sdp = MustParse(lf);
  EXPECT_EQ(sdp.ToString(),
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n");
  EXPECT_TRUE(sdp.media().empty());
  // Blank lines are skipped, line numbers still count them.
  absl::StatusOr<Sdp> blank = Sdp::Parse("v=0\r\n\r\no=- 1 1 IN IP4 x\r\ns=-\r\n\r\nbad\r\n");
  ASSERT_FALSE(blank.ok());
  EXPECT_EQ(blank.status().message(), "SDP line 6: expected '<letter>=<value>', got 'bad'");
}

TEST(SdpTest, KeepsUnknownLinesAndOddSpacingUntouched) {
  const std::string text =
      "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
      "x=unknown line type\r\na=weird:value with  two spaces\r\n"
      "m=audio  5000 RTP/AVP 0\r\na=\r\na=rtcp-fb:* nack\r\n";
  Sdp sdp = MustParse(text);
  EXPECT_EQ(sdp.ToString(), text);
  EXPECT_EQ(sdp.media(0).port(), 5000);
  // Only the line Karl changes is regenerated.
  sdp.media(0).SetPort(6000);
  EXPECT_THAT(sdp.ToString(), HasSubstr("\r\nm=audio 6000 RTP/AVP 0\r\n"));
  EXPECT_THAT(sdp.ToString(), HasSubstr("a=weird:value with  two spaces\r\n"));
}

TEST(SdpTest, MediaLineFields) {
  Sdp sdp = MustParse(
      "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 233.252.0.1/127\nt=0 0\n"
      "m=video 49170/2 RTP/AVP 31 32\n");
  SdpMedia& m = sdp.media(0);
  EXPECT_EQ(m.port(), 49170);
  EXPECT_EQ(m.port_count(), 2u);
  EXPECT_EQ(sdp.EffectiveConnection(0)->address, "233.252.0.1/127");
  EXPECT_EQ(sdp.EffectiveConnection(0)->Ip(), IpAddress::Parse("233.252.0.1"));
  m.SetPort(50000);
  m.SetProto("RTP/SAVP");
  m.SetFormats({"31"});
  EXPECT_EQ(m.lines()[0].value, "video 50000/2 RTP/SAVP 31");
  EXPECT_EQ(m.lines()[0].line_number, 6);
  m.SetPort(0);
  EXPECT_TRUE(m.rejected());
}

TEST(SdpTest, SetConnectionRewritesSessionAndMediaLevel) {
  Sdp sdp = MustParse(std::string(kOffer) + "c=IN IP4 192.0.2.2\r\n");  // video has its own
  const SdpConnection karl{"IN", "IP4", "203.0.113.1"};
  sdp.SetConnection(karl);
  EXPECT_EQ(sdp.session().connection(), karl);
  EXPECT_FALSE(sdp.media(0).connection());  // still inherits
  EXPECT_EQ(sdp.media(1).connection(), karl);
  EXPECT_EQ(sdp.EffectiveConnection(0), karl);
  EXPECT_EQ(sdp.EffectiveConnection(1), karl);
  EXPECT_EQ(sdp.session().lines()[3].value, "IN IP4 203.0.113.1");
  EXPECT_EQ(sdp.session().lines()[3].line_number, 0);  // regenerated
}

TEST(SdpTest, SetConnectionAddsMediaLevelWhenThereIsNoSessionLevel) {
  Sdp sdp = MustParse(
      "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\n"
      "m=audio 5000 RTP/AVP 0\ni=title\nc=IN IP4 192.0.2.1\nb=AS:64\n"
      "m=video 0 RTP/AVP 96\nb=AS:64\na=inactive\n");
  sdp.SetConnection(SdpConnection::FromIp(*IpAddress::Parse("2001:db8::1")));
  EXPECT_FALSE(sdp.session().connection());
  EXPECT_EQ(sdp.ToString(),
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"
            "m=audio 5000 RTP/AVP 0\r\ni=title\r\nc=IN IP6 2001:db8::1\r\nb=AS:64\r\n"
            "m=video 0 RTP/AVP 96\r\nc=IN IP6 2001:db8::1\r\nb=AS:64\r\na=inactive\r\n");
}

TEST(SdpTest, SetMediaConnectionOnlyChangesThatSection) {
  const SdpConnection a{"IN", "IP4", "203.0.113.1"};
  const SdpConnection b{"IN", "IP4", "203.0.113.2"};
  Sdp sdp = MustParse(kOffer);
  // Both inherit the session c=: the first one gets its own c=, after m= and before a=.
  sdp.SetMediaConnection(0, a);
  EXPECT_EQ(sdp.media(0).lines()[1], (SdpLine{'c', "IN IP4 203.0.113.1", 0}));
  EXPECT_EQ(sdp.EffectiveConnection(1)->address, "192.0.2.1");
  // The last one inheriting it takes the session c= over: no stale address is left.
  sdp.SetMediaConnection(1, b);
  EXPECT_FALSE(sdp.media(1).connection());
  EXPECT_EQ(sdp.session().connection(), b);
  EXPECT_EQ(sdp.EffectiveConnection(0), a);
  EXPECT_EQ(sdp.EffectiveConnection(1), b);
  // Its own c= is rewritten in place.
  sdp.SetMediaConnection(0, b);
  EXPECT_EQ(sdp.media(0).connection(), b);
  // Setting what is already inherited adds nothing.
  Sdp same = MustParse(kOffer);
  same.SetMediaConnection(0, SdpConnection{"IN", "IP4", "192.0.2.1"});
  EXPECT_EQ(same.ToString(), kOffer);
}

TEST(SdpTest, SetMediaConnectionOnEverySectionEqualsSetConnection) {
  const SdpConnection karl{"IN", "IP4", "203.0.113.1"};
  const std::string text = std::string(kOffer) + "m=audio 5004 RTP/AVP 8\r\n";
  Sdp each = MustParse(text);
  for (size_t i = 0; i < each.media().size(); ++i) each.SetMediaConnection(i, karl);
  Sdp all = MustParse(text);
  all.SetConnection(karl);
  EXPECT_EQ(each.ToString(), all.ToString());
  EXPECT_EQ(each.ToString().find("c=", each.ToString().find("m=")), std::string::npos)
      << "no media-level c= is left behind: " << each.ToString();
}

TEST(SdpTest, SetMediaConnectionIgnoresRejectedSectionsThatInherit) {
  Sdp sdp = MustParse(
      "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"
      "m=audio 5000 RTP/AVP 0\nm=video 0 RTP/AVP 96\n");
  sdp.SetMediaConnection(0, SdpConnection{"IN", "IP4", "203.0.113.1"});
  EXPECT_EQ(sdp.session().connection()->address, "203.0.113.1");
  EXPECT_FALSE(sdp.media(0).connection());
}

TEST(SdpTest, SeveralConnectionLinesCollapseToOne) {
  Sdp sdp = MustParse(
      "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\n"
      "m=audio 5000 RTP/AVP 0\nc=IN IP4 233.252.0.1/127\nc=IN IP4 233.252.0.2/127\na=x\n");
  sdp.media(0).SetConnection(SdpConnection{"IN", "IP4", "203.0.113.1"});
  EXPECT_EQ(sdp.ToString(),
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"
            "m=audio 5000 RTP/AVP 0\r\nc=IN IP4 203.0.113.1\r\na=x\r\n");
}

TEST(SdpTest, SessionLevelConnectionIsAddedWhereRfc8866PutsIt) {
  Sdp sdp = MustParse(
      "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\ni=info\nu=http://example.com\ne=a@example.com\n"
      "p=+1 555\nb=AS:64\nt=0 0\na=tool:x\nm=audio 0 RTP/AVP 0\n");
  sdp.session().SetConnection(SdpConnection{"IN", "IP4", "203.0.113.1"});
  EXPECT_THAT(sdp.ToString(), HasSubstr("p=+1 555\r\nc=IN IP4 203.0.113.1\r\nb=AS:64\r\n"));
}

TEST(SdpTest, ConnectionIp) {
  EXPECT_EQ((SdpConnection{"IN", "IP4", "192.0.2.1"}).Ip(), IpAddress::Parse("192.0.2.1"));
  EXPECT_EQ((SdpConnection{"IN", "IP6", "2001:db8::1"}).Ip(), IpAddress::Parse("2001:db8::1"));
  EXPECT_FALSE((SdpConnection{"IN", "IP4", "2001:db8::1"}).Ip());  // family mismatch
  EXPECT_FALSE((SdpConnection{"IN", "IP6", "192.0.2.1"}).Ip());
  EXPECT_FALSE((SdpConnection{"IN", "IP4", "host.example.com"}).Ip());  // FQDN: not resolved
  EXPECT_EQ(SdpConnection::FromIp(*IpAddress::Parse("192.0.2.9")).ToString(), "IN IP4 192.0.2.9");
}

TEST(SdpTest, Rtcp) {
  Sdp sdp = MustParse(std::string(kOffer) + "a=rtcp:5003 IN IP6 2001:db8::5\r\n");
  EXPECT_FALSE(sdp.media(0).rtcp());
  EXPECT_EQ(sdp.media(1).rtcp(), (SdpRtcp{5003, SdpConnection{"IN", "IP6", "2001:db8::5"}}));
  // Set in place (keeps position), add when absent (appended), remove.
  sdp.media(1).SetRtcp(SdpRtcp{40001, std::nullopt});
  EXPECT_EQ(sdp.media(1).lines().back().value, "rtcp:40001");
  sdp.media(0).SetRtcp(SdpRtcp{40003, SdpConnection{"IN", "IP4", "203.0.113.1"}});
  EXPECT_EQ(sdp.media(0).lines().back().value, "rtcp:40003 IN IP4 203.0.113.1");
  EXPECT_EQ(sdp.media(0).rtcp()->port, 40003);
  EXPECT_TRUE(sdp.media(0).RemoveRtcp());
  EXPECT_FALSE(sdp.media(0).RemoveRtcp());
  EXPECT_FALSE(sdp.media(0).rtcp());
  // a=rtcp-mux and a=rtcp-fb are not a=rtcp.
  Sdp mux = MustParse(std::string(kOffer) + "a=rtcp-mux\r\na=rtcp-fb:96 nack\r\n");
  EXPECT_FALSE(mux.media(1).rtcp());
  EXPECT_TRUE(mux.media(1).rtcp_mux());
}

TEST(SdpTest, RtcpMux) {
  Sdp sdp = MustParse(kOffer);
  EXPECT_FALSE(sdp.media(0).rtcp_mux());
  sdp.media(0).SetRtcpMux(true);
  sdp.media(0).SetRtcpMux(true);  // once only
  EXPECT_EQ(sdp.media(0).Attributes("rtcp-mux").size(), 1u);
  EXPECT_EQ(sdp.media(0).lines().back().value, "rtcp-mux");
  sdp.media(0).SetRtcpMux(false);
  EXPECT_FALSE(sdp.media(0).rtcp_mux());
  EXPECT_EQ(sdp.ToString(), kOffer);
}

TEST(SdpTest, Crypto) {
  Sdp sdp = MustParse(std::string(kOffer) +
                      "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:A\r\n"
                      "a=fmtp:96 x\r\n"
                      "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:B\r\n"
                      "a=sendrecv\r\n");
  SdpMedia& v = sdp.media(1);
  EXPECT_THAT(v.crypto(), ElementsAre("1 AES_CM_128_HMAC_SHA1_80 inline:A",
                                      "2 AES_CM_128_HMAC_SHA1_32 inline:B"));
  v.AddCrypto("3 AEAD_AES_128_GCM inline:C");  // after the last a=crypto
  EXPECT_EQ(v.lines()[5].value, "crypto:3 AEAD_AES_128_GCM inline:C");
  EXPECT_EQ(v.lines()[6].value, "sendrecv");
  EXPECT_TRUE(v.RemoveCrypto(0));
  EXPECT_FALSE(v.RemoveCrypto(2));
  EXPECT_THAT(v.crypto(),
              ElementsAre("2 AES_CM_128_HMAC_SHA1_32 inline:B", "3 AEAD_AES_128_GCM inline:C"));
  EXPECT_EQ(v.RemoveAllCrypto(), 2u);
  EXPECT_TRUE(v.crypto().empty());
  // Without any a=crypto, a new one is appended.
  sdp.media(0).AddCrypto("1 AES_CM_128_HMAC_SHA1_80 inline:D");
  EXPECT_EQ(sdp.media(0).lines().back().value, "crypto:1 AES_CM_128_HMAC_SHA1_80 inline:D");
}

TEST(SdpTest, RemoveIceAtBothLevels) {
  Sdp sdp = MustParse(
      "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"
      "a=ice-lite\na=ice-options:trickle\na=ice-ufrag:abcd\na=ice-pwd:0123456789abcdefghijkl\n"
      "a=group:BUNDLE 0\n"
      "m=audio 5000 RTP/AVP 0\na=mid:0\n"
      "a=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host\n"
      "a=candidate:1 2 udp 2130706430 192.0.2.1 5001 typ host\n"
      "a=remote-candidates:1 192.0.2.9 6000\na=end-of-candidates\na=ice-mismatch\n"
      "a=ice-pacing:50\na=candidate-like:keep\na=sendrecv\n");
  EXPECT_EQ(sdp.RemoveIce(), 10u);
  EXPECT_EQ(sdp.ToString(),
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
            "a=group:BUNDLE 0\r\n"
            "m=audio 5000 RTP/AVP 0\r\na=mid:0\r\na=candidate-like:keep\r\na=sendrecv\r\n");
  EXPECT_EQ(sdp.RemoveIce(), 0u);
}

TEST(SdpTest, Direction) {
  Sdp sdp = MustParse(std::string(kOffer) + "a=recvonly\r\na=inactive\r\n");
  EXPECT_EQ(sdp.media(0).direction(), SdpDirection::kSendRecv);
  EXPECT_EQ(sdp.media(1).direction(), SdpDirection::kRecvOnly);  // the first one counts
  EXPECT_FALSE(sdp.session().direction());
  // Written over the first, the others dropped.
  sdp.media(1).SetDirection(SdpDirection::kSendOnly);
  EXPECT_THAT(sdp.media(1).Attributes("sendonly"), ElementsAre(""));
  EXPECT_TRUE(sdp.media(1).Attributes("inactive").empty());
  EXPECT_EQ(sdp.media(1).lines().back().value, "sendonly");
  // Session level: appended after t=, before the first m=.
  sdp.session().SetDirection(SdpDirection::kInactive);
  EXPECT_THAT(sdp.ToString(), HasSubstr("t=0 0\r\na=inactive\r\nm=audio"));
  EXPECT_EQ(sdp.media(0).RemoveDirection(), 1u);
  EXPECT_EQ(sdp.EffectiveDirection(0), SdpDirection::kInactive);  // from the session
  EXPECT_EQ(sdp.EffectiveDirection(1), SdpDirection::kSendOnly);
  EXPECT_EQ(sdp.session().RemoveDirection(), 1u);
  EXPECT_EQ(sdp.EffectiveDirection(0), SdpDirection::kSendRecv);  // the default
  EXPECT_EQ(SdpDirectionName(SdpDirection::kRecvOnly), "recvonly");
}

TEST(SdpTest, Hold) {
  auto hold = [](const std::string& session_extra, const std::string& media_extra) {
    Sdp sdp = MustParse("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\n" + session_extra +
                        "t=0 0\nm=audio 5000 RTP/AVP 0\n" + media_extra);
    return sdp.IsOnHold(0);
  };
  EXPECT_FALSE(hold("c=IN IP4 192.0.2.1\n", ""));
  EXPECT_FALSE(hold("c=IN IP4 192.0.2.1\n", "a=sendrecv\n"));
  EXPECT_FALSE(hold("c=IN IP4 192.0.2.1\n", "a=recvonly\n"));
  EXPECT_TRUE(hold("c=IN IP4 192.0.2.1\n", "a=sendonly\n"));
  EXPECT_TRUE(hold("c=IN IP4 192.0.2.1\n", "a=inactive\n"));
  EXPECT_TRUE(hold("c=IN IP4 192.0.2.1\na=sendonly\n", ""));               // session level
  EXPECT_FALSE(hold("c=IN IP4 192.0.2.1\na=sendonly\n", "a=sendrecv\n"));  // media wins
  EXPECT_TRUE(hold("c=IN IP4 0.0.0.0\n", ""));                             // RFC 2543 style
  EXPECT_TRUE(hold("c=IN IP4 192.0.2.1\n", "c=IN IP4 0.0.0.0\n"));         // media level
  EXPECT_FALSE(hold("c=IN IP4 0.0.0.0\n", "c=IN IP4 192.0.2.1\n"));        // media overrides
  EXPECT_FALSE(hold("c=IN IP4 0.0.0.0\n", "a=ice-ufrag:x\n"));             // JSEP placeholder
  EXPECT_FALSE(hold("c=IN IP4 0.0.0.0\na=ice-ufrag:x\n", ""));
  EXPECT_TRUE(hold("c=IN IP4 0.0.0.0\n", "a=ice-ufrag:x\na=inactive\n"));
  EXPECT_FALSE(hold("c=IN IP6 ::\n", ""));  // only the IPv4 form is hold
}

TEST(SdpTest, OriginVersionAndAddress) {
  Sdp sdp = MustParse(kOffer);
  EXPECT_EQ(sdp.origin().sess_version, "7");
  sdp.BumpSessionVersion();
  EXPECT_EQ(sdp.origin().sess_version, "8");
  sdp.SetOriginAddress(SdpConnection{"IN", "IP6", "2001:db8::1"});
  EXPECT_EQ(sdp.session().lines()[1].value, "- 100 8 IN IP6 2001:db8::1");
  // Any length, carrying through nines.
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"0", "1"},
           {"9", "10"},
           {"199", "200"},
           {"18446744073709551615", "18446744073709551616"},  // past 64 bits
           {"99999999999999999999", "100000000000000000000"}}) {
    Sdp s = MustParse("v=0\no=- 1 " + from + " IN IP4 192.0.2.1\ns=-\n");
    s.BumpSessionVersion();
    EXPECT_EQ(s.origin().sess_version, to) << from;
  }
  SdpOrigin o = sdp.origin();
  o.username = "karl";
  sdp.SetOrigin(o);
  EXPECT_EQ(sdp.session().lines()[1].value, "karl 100 8 IN IP6 2001:db8::1");
  EXPECT_EQ(sdp.session().lines()[1].line_number, 0);
}

TEST(SdpTest, GenericAttributes) {
  Sdp sdp = MustParse(kOffer);
  SdpMedia& a = sdp.media(0);
  EXPECT_EQ(a.Attribute("rtpmap"), "101 telephone-event/8000");
  EXPECT_FALSE(a.Attribute("fmtp"));
  EXPECT_TRUE(a.HasAttribute("sendrecv"));
  EXPECT_FALSE(a.HasAttribute("SENDRECV"));  // case-sensitive
  a.AddAttribute("ptime", "20");
  a.AddAttribute("rtcp-rsize");
  a.AddAttribute("empty", "");
  EXPECT_EQ(a.lines()[3].value, "ptime:20");
  EXPECT_EQ(a.lines()[4].value, "rtcp-rsize");
  EXPECT_EQ(a.lines()[5].value, "empty:");
  EXPECT_EQ(a.lines()[5].AttributeName(), "empty");
  EXPECT_EQ(a.RemoveAttributes("ptime"), 1u);
  EXPECT_EQ(a.RemoveAttributes("ptime"), 0u);
  EXPECT_EQ(a.lines()[0].AttributeName(), "");  // not an a= line
}

TEST(SdpTest, ErrorsNameTheLineAndWhatIsWrong) {
  const std::string head = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n";
  const std::pair<std::string, std::string> cases[] = {
      {"", "SDP is empty (no v= line)"},
      {"\r\n\r\n", "SDP is empty (no v= line)"},
      {"o=- 1 1 IN IP4 192.0.2.1\n", "SDP line 1: SDP must start with v=0 (RFC 8866 §5.1), got"},
      {"v=1\n", "SDP line 1: v=1: only version 0 exists"},
      {"v=0\ns=-\n", "SDP has no o= line (RFC 8866 §5.2)"},
      {"v=0\no=- 1 1 IN IP4 192.0.2.1\n", "SDP has no s= line"},
      {"v=0\nv=0\n", "SDP line 2: second v= line"},
      {"v=0\no=- 1 1 IN IP4 a\no=- 1 1 IN IP4 b\ns=-\n",
       "SDP line 3: second o= line (the first is line 2)"},
      {"v=0\no=- 1 1 IN IP4 a\ns=-\ns=x\n", "SDP line 4: second s= line (the first is line 3)"},
      {"v=0\no=- 1 1 IN IP4\ns=-\n",
       "SDP line 2: o= must be '<username> <sess-id> "
       "<sess-version> <nettype> <addrtype> <address>' (6 fields), "
       "got 5"},
      {"v=0\no=- 1 v2 IN IP4 a\ns=-\n", "SDP line 2: o= sess-version 'v2' is not a decimal number"},
      {"v=0\n o=x\n", "SDP line 2: expected '<letter>=<value>', got ' o=x'"},
      {"v=0\nO=x\n", "SDP line 2: expected '<letter>=<value>', got 'O=x'"},
      {"v=0\no =x\n", "SDP line 2: expected '<letter>=<value>', got 'o =x'"},
      {"v=0\no\n", "SDP line 2: expected '<letter>=<value>', got 'o'"},
      {head + "c=IN IP4\n",
       "SDP line 6: c= must be '<nettype> <addrtype> <address>', got 'IN IP4'"},
      {head + "c=ATM NSAP 47.0005\n", "SDP line 6: c= network type 'ATM' is not IN"},
      {head + "c=IN IPX 1.2.3.4\n", "SDP line 6: c= address type 'IPX' is not IP4 or IP6"},
      {head + "m=audio\n", "SDP line 6: m= must be '<media> <port>[/<count>] <proto> <fmt> ...'"},
      {head + "m=audio 7x RTP/AVP 0\n", "SDP line 6: m= port '7x' is not a number 0..65535"},
      {head + "m=audio 65536 RTP/AVP 0\n", "SDP line 6: m= port '65536' is not a number"},
      {head + "m=audio -1 RTP/AVP 0\n", "SDP line 6: m= port '-1' is not a number"},
      {head + "m=audio 5000/0 RTP/AVP 0\n",
       "SDP line 6: m= port count '0' is not a number 1..65535"},
      {head + "m=audio 5000/ RTP/AVP 0\n", "SDP line 6: m= port count '' is not a number"},
      {head + "m=audio 5000 RTP/AVP\n", "SDP line 6: m=audio 5000 RTP/AVP has no format"},
      {head + "m=audio 5000 RTP/AVP 0\no=- 1 1 IN IP4 a\n",
       "SDP line 7: o= inside the media section of line 6 (only allowed at session level)"},
      {head + "m=audio 5000 RTP/AVP 0\ns=x\n", "SDP line 7: s= inside the media section of line 6"},
      {head + "m=audio 5000 RTP/AVP 0\nv=0\n", "SDP line 7: v= inside the media section of line 6"},
      {head + "m=audio 5000 RTP/AVP 0\na=rtcp:abc\n",
       "SDP line 7: a=rtcp port 'abc' is not a number 0..65535"},
      {head + "m=audio 5000 RTP/AVP 0\na=rtcp:70000\n", "SDP line 7: a=rtcp port '70000'"},
      {head + "m=audio 5000 RTP/AVP 0\na=rtcp:\n",
       "SDP line 7: a=rtcp must be '<port> [IN "
       "<IP4|IP6> <address>]' (RFC 3605), got ''"},
      {head + "m=audio 5000 RTP/AVP 0\na=rtcp:5001 IN IP4\n", "SDP line 7: a=rtcp must be"},
      {head + "m=audio 5000 RTP/AVP 0\na=rtcp:5001 IN IPX 1.2.3.4\n",
       "SDP line 7: a=rtcp address type 'IPX' is not IP4 or IP6"},
      {"v=0\no=- 1 1 IN IP4 a\ns=-\nt=0 0\nm=audio 5000 RTP/AVP 0\n",
       "SDP line 5: m=audio has no c= line and the session has none (RFC 8866 §5.7)"},
      {"v=0\no=- 1 1 IN IP4 a\ns=-\nt=0 0\nm=audio 0 RTP/AVP 0\nm=video 5000 RTP/AVP 0\n",
       "SDP line 6: m=video has no c= line"},
      {std::string("v=0\n\x01=\n", 7), "SDP line 2: expected '<letter>=<value>', got '\\x01='"},
  };
  for (const auto& [text, want] : cases) {
    absl::StatusOr<Sdp> sdp = Sdp::Parse(text);
    ASSERT_FALSE(sdp.ok()) << "parsed: " << text;
    EXPECT_EQ(sdp.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(sdp.status().message(), HasSubstr(want)) << text;
  }
  // A rejected stream without c= is fine, and so is no m= at all.
  EXPECT_TRUE(Sdp::Parse("v=0\no=- 1 1 IN IP4 a\ns=-\nt=0 0\nm=video 0 RTP/AVP\n").ok());
  EXPECT_TRUE(Sdp::Parse("v=0\no=- 1 1 IN IP4 a\ns=-\n").ok());
}

// Truncations and byte flips of real SDPs never crash; whatever parses writes out and
// parses again to the same text.
TEST(SdpTest, MangledInputNeverCrashes) {
  std::mt19937 rng(8866);
  const std::vector<std::string> names = CorpusNames();
  ASSERT_FALSE(names.empty());
  int parsed = 0;
  for (const std::string& name : names) {
    const std::string text = ReadFile(kCorpus / (name + ".sdp"));
    for (size_t n = 0; n <= text.size(); n += 7) {
      absl::StatusOr<Sdp> sdp = Sdp::Parse(std::string_view(text).substr(0, n));
      if (sdp.ok()) ++parsed;
    }
    for (int iter = 0; iter < 300; ++iter) {
      std::string input = text;
      for (int e = 0; e < 3; ++e) {
        const size_t at = rng() % input.size();
        static const std::string junk(" =\r\n:/0aovsmc\0\xff", 15);
        input[at] = junk[rng() % junk.size()];
      }
      absl::StatusOr<Sdp> sdp = Sdp::Parse(input);
      if (!sdp.ok()) {
        EXPECT_THAT(sdp.status().message(), HasSubstr("SDP ")) << input;
        continue;
      }
      ++parsed;
      const std::string out = sdp->ToString();
      absl::StatusOr<Sdp> again = Sdp::Parse(out);
      ASSERT_TRUE(again.ok()) << again.status() << "\n" << out;
      EXPECT_EQ(again->ToString(), out);
      // Every operation works on whatever parsed.
      for (size_t i = 0; i < sdp->media().size(); ++i) {
        (void)sdp->IsOnHold(i);
        (void)sdp->media(i).rtcp();
        sdp->SetMediaConnection(i, SdpConnection{"IN", "IP4", "203.0.113.1"});
      }
      sdp->BumpSessionVersion();
      EXPECT_TRUE(Sdp::Parse(sdp->ToString()).ok()) << sdp->ToString();
    }
  }
  EXPECT_GT(parsed, 100);
}

}  // namespace
}  // namespace karl
