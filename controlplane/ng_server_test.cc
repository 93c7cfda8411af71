#include "controlplane/ng_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <prometheus/metric_family.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace karl {
namespace {

using std::chrono::milliseconds;

// Long enough for loopback on a loaded machine; only reached when something is wrong.
constexpr milliseconds kReplyTimeout{2000};
// How long "no reply" is waited for.
constexpr milliseconds kSilenceTimeout{200};

// A UDP socket bound to a loopback address, port chosen by the OS.
class UdpClient {
 public:
  explicit UdpClient(const std::string& local_ip) {
    const IpAddress address = *IpAddress::Parse(local_ip);
    const sockaddr_storage local = SockAddr(address, 0, &len_);
    fd_ = socket(local.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd_, 0) << std::strerror(errno);
    EXPECT_EQ(bind(fd_, reinterpret_cast<const sockaddr*>(&local), len_), 0)
        << local_ip << ": " << std::strerror(errno);
    sockaddr_storage bound{};
    socklen_t bound_len = sizeof(bound);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&bound), &bound_len);
    port_ = ntohs(bound.ss_family == AF_INET
                      ? reinterpret_cast<const sockaddr_in*>(&bound)->sin_port
                      : reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port);
  }
  ~UdpClient() {
    if (fd_ >= 0) close(fd_);
  }
  UdpClient(const UdpClient&) = delete;
  UdpClient& operator=(const UdpClient&) = delete;

  uint16_t port() const { return port_; }

  void SendTo(const std::string& ip, uint16_t port, std::string_view data) {
    socklen_t len = 0;
    const sockaddr_storage to = SockAddr(*IpAddress::Parse(ip), port, &len);
    const ssize_t sent =
        sendto(fd_, data.data(), data.size(), 0, reinterpret_cast<const sockaddr*>(&to), len);
    ASSERT_EQ(sent, static_cast<ssize_t>(data.size())) << std::strerror(errno);
  }

  // The next datagram, or nullopt when none arrives within `timeout`.
  std::optional<std::string> Receive(milliseconds timeout = kReplyTimeout) {
    pollfd pfd{};
    pfd.fd = fd_;
    pfd.events = POLLIN;
    if (poll(&pfd, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    std::string buf(70'000, '\0');
    const ssize_t n = recv(fd_, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0) return std::nullopt;
    buf.resize(static_cast<size_t>(n));
    return buf;
  }

 private:
  static sockaddr_storage SockAddr(const IpAddress& address, uint16_t port, socklen_t* len) {
    sockaddr_storage storage{};
    if (address.is_v4()) {
      auto* sin = reinterpret_cast<sockaddr_in*>(&storage);
      sin->sin_family = AF_INET;
      sin->sin_port = htons(port);
      std::memcpy(&sin->sin_addr, address.bytes().data(), 4);
      *len = sizeof(sockaddr_in);
    } else {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&storage);
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons(port);
      std::memcpy(&sin6->sin6_addr, address.bytes().data(), 16);
      *len = sizeof(sockaddr_in6);
    }
    return storage;
  }

  int fd_ = -1;
  socklen_t len_ = 0;
  uint16_t port_ = 0;
};

NgConfig Listen(const std::string& ip, uint16_t port = 0) {
  NgConfig config;
  config.listen = HostPort{*IpAddress::Parse(ip), port};
  return config;
}

// Answers ping with pong, anything else with ok plus the number of calls so far, so a
// reply from the handler can be told from a cached one. Records what it saw.
struct CountingHandler {
  int calls = 0;
  std::vector<NgRequestContext> contexts;

  NgServer::Handler Get() {
    return [this](const BencodeValue& request, const NgRequestContext& ctx) {
      ++calls;
      contexts.push_back(ctx);
      BencodeValue reply;
      const absl::StatusOr<std::string_view> command = request.GetString("command");
      if (command.ok() && *command == "ping") {
        reply.Set("result", "pong");
      } else {
        reply.Set("result", "ok");
        reply.Set("call", calls);
      }
      return reply;
    };
  }
};

BencodeValue DecodeReply(std::string_view datagram, std::string_view cookie) {
  EXPECT_EQ(datagram.substr(0, cookie.size() + 1), std::string(cookie) + " ");
  absl::StatusOr<BencodeValue> value = DecodeBencode(datagram.substr(cookie.size() + 1));
  EXPECT_TRUE(value.ok()) << value.status();
  return value.ok() ? *value : BencodeValue();
}

std::string ResultOf(const BencodeValue& reply) {
  absl::StatusOr<std::string_view> result = reply.GetString("result");
  return result.ok() ? std::string(*result) : "<no result>";
}

std::string ErrorReasonOf(const BencodeValue& reply) {
  absl::StatusOr<std::string_view> reason = reply.GetString("error-reason");
  return reason.ok() ? std::string(*reason) : "<no error-reason>";
}

// The sample of `name` whose labels include all of `labels`; nullptr when absent.
const prometheus::ClientMetric* FindMetric(
    const std::vector<prometheus::MetricFamily>& families, const std::string& name,
    const std::vector<prometheus::ClientMetric::Label>& labels) {
  for (const prometheus::MetricFamily& family : families) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      bool all = true;
      for (const auto& want : labels) {
        bool found = false;
        for (const auto& have : metric.label) {
          if (have.name == want.name && have.value == want.value) found = true;
        }
        all = all && found;
      }
      if (all) return &metric;
    }
  }
  return nullptr;
}

double CounterValue(const NgServer& server, const std::string& name,
                    const std::vector<prometheus::ClientMetric::Label>& labels = {}) {
  const std::vector<prometheus::MetricFamily> families = server.metrics()->Collect();
  const prometheus::ClientMetric* metric = FindMetric(families, name, labels);
  return metric != nullptr ? metric->counter.value : -1;
}

constexpr char kPing[] = "d7:command4:pinge";
constexpr char kOffer[] = "d7:call-id3:abc7:command5:offere";

TEST(NgServerTest, PingRoundTripOverIpv4) {
  CountingHandler handler;
  NgServer server(handler.Get());
  ASSERT_TRUE(server.Start(Listen("127.0.0.1")).ok());
  ASSERT_NE(server.port(), 0);

  UdpClient client("127.0.0.1");
  client.SendTo("127.0.0.1", server.port(), std::string("5323_1 ") + kPing);
  EXPECT_EQ(server.Poll(kReplyTimeout), 1u);
  const std::optional<std::string> reply = client.Receive();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(*reply, "5323_1 d6:result4:ponge");
  ASSERT_EQ(handler.contexts.size(), 1u);
  EXPECT_EQ(handler.contexts[0].source, *IpAddress::Parse("127.0.0.1"));
  EXPECT_EQ(handler.contexts[0].source_port, client.port());
  EXPECT_EQ(handler.contexts[0].cookie, "5323_1");
}

TEST(NgServerTest, PingRoundTripOverIpv6) {
  CountingHandler handler;
  NgServer server(handler.Get());
  ASSERT_TRUE(server.Start(Listen("::1")).ok());

  UdpClient client("::1");
  client.SendTo("::1", server.port(), std::string("c6 ") + kPing);
  EXPECT_EQ(server.Poll(kReplyTimeout), 1u);
  const std::optional<std::string> reply = client.Receive();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(*reply, "c6 d6:result4:ponge");
  ASSERT_EQ(handler.contexts.size(), 1u);
  EXPECT_EQ(handler.contexts[0].source, *IpAddress::Parse("::1"));
}

// An IPv4 client of a dual-stack socket is seen (and filtered) as its IPv4 address.
TEST(NgServerTest, Ipv4ClientOfAnIpv6SocketShowsAsIpv4) {
  CountingHandler handler;
  NgServer server(handler.Get());
  NgConfig config = Listen("::ffff:127.0.0.1");
  config.allowed_sources = {*IpPrefix::Parse("::ffff:127.0.0.0/104")};  // = 127.0.0.0/8
  ASSERT_TRUE(server.Start(config).ok());

  UdpClient client("127.0.0.1");
  client.SendTo("127.0.0.1", server.port(), std::string("m1 ") + kPing);
  EXPECT_EQ(server.Poll(kReplyTimeout), 1u);
  const std::optional<std::string> reply = client.Receive();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(*reply, "m1 d6:result4:ponge");
  ASSERT_EQ(handler.contexts.size(), 1u);
  EXPECT_EQ(handler.contexts[0].source, *IpAddress::Parse("127.0.0.1"));
}

TEST(NgServerTest, RetransmissionGetsTheCachedReplyWithoutRunningTheHandler) {
  CountingHandler handler;
  NgServer server(handler.Get());
  ASSERT_TRUE(server.Start(Listen("127.0.0.1")).ok());
  UdpClient client("127.0.0.1");

  const std::string request = std::string("r1 ") + kOffer;
  client.SendTo("127.0.0.1", server.port(), request);
  EXPECT_EQ(server.Poll(kReplyTimeout), 1u);
  const std::optional<std::string> first = client.Receive();
  ASSERT_TRUE(first.has_value());

  client.SendTo("127.0.0.1", server.port(), request);
  EXPECT_EQ(server.Poll(kReplyTimeout), 1u);
  const std::optional<std::string> second = client.Receive();
  ASSERT_TRUE(second.has_value());

  EXPECT_EQ(*second, *first);
  EXPECT_EQ(*first, "r1 d4:calli1e6:result2:oke");
  EXPECT_EQ(handler.calls, 1);
  EXPECT_EQ(CounterValue(server, "karl_ng_retransmissions_total"), 1);

  // A new cookie from the same client is a new request.
  client.SendTo("127.0.0.1", server.port(), std::string("r2 ") + kOffer);
  EXPECT_EQ(server.Poll(kReplyTimeout), 1u);
  const std::optional<std::string> third = client.Receive();
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(*third, "r2 d4:calli2e6:result2:oke");
}

TEST(NgServerTest, SameCookieFromAnotherSourcePortRunsTheHandlerAgain) {
  CountingHandler handler;
  NgServer server(handler.Get());
  ASSERT_TRUE(server.Start(Listen("127.0.0.1")).ok());
  UdpClient a("127.0.0.1");
  UdpClient b("127.0.0.1");

  const std::string request = std::string("same ") + kOffer;
  a.SendTo("127.0.0.1", server.port(), request);
  EXPECT_EQ(server.Poll(kReplyTimeout), 1u);
  const std::optional<std::string> from_a = a.Receive();
  b.SendTo("127.0.0.1", server.port(), request);
  EXPECT_EQ(server.Poll(kReplyTimeout), 1u);
  const std::optional<std::string> from_b = b.Receive();

  ASSERT_TRUE(from_a.has_value());
  ASSERT_TRUE(from_b.has_value());
  EXPECT_EQ(*from_a, "same d4:calli1e6:result2:oke");
  EXPECT_EQ(*from_b, "same d4:calli2e6:result2:oke");
  EXPECT_EQ(handler.calls, 2);
  EXPECT_EQ(CounterValue(server, "karl_ng_retransmissions_total"), 0);
}

TEST(NgServerTest, ExpiredCacheEntryRunsTheHandlerAgain) {
  CountingHandler handler;
  NgServer server(handler.Get());
  server.set_cache_ttl(milliseconds(1));
  ASSERT_TRUE(server.Start(Listen("127.0.0.1")).ok());
  UdpClient client("127.0.0.1");

  const std::string request = std::string("ttl ") + kOffer;
  client.SendTo("127.0.0.1", server.port(), request);
  EXPECT_EQ(server.Poll(kReplyTimeout), 1u);
  ASSERT_TRUE(client.Receive().has_value());
  std::this_thread::sleep_for(milliseconds(20));

  client.SendTo("127.0.0.1", server.port(), request);
  EXPECT_EQ(server.Poll(kReplyTimeout), 1u);
  const std::optional<std::string> again = client.Receive();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, "ttl d4:calli2e6:result2:oke");
  EXPECT_EQ(handler.calls, 2);
  EXPECT_EQ(CounterValue(server, "karl_ng_retransmissions_total"), 0);
}

// Sends `cookie kOffer` from `client` and returns the reply ("" when none came).
std::string Exchange(NgServer& server, UdpClient& client, const std::string& cookie) {
  client.SendTo("127.0.0.1", server.port(), cookie + " " + kOffer);
  EXPECT_EQ(server.Poll(kReplyTimeout), 1u);
  return client.Receive().value_or("");
}

TEST(NgServerTest, ExpiredRepliesArePrunedAsNewOnesArrive) {
  CountingHandler handler;
  NgServer server(handler.Get());
  server.set_cache_ttl(milliseconds(1));
  ASSERT_TRUE(server.Start(Listen("127.0.0.1")).ok());
  UdpClient client("127.0.0.1");
  for (int i = 0; i < 5; ++i) {
    EXPECT_NE(Exchange(server, client, absl::StrCat("p", i)), "");
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_EQ(server.cached_replies(), 1u);  // only the newest; the others had expired
}

TEST(NgServerTest, FullCacheEvictsTheOldestReplyFirst) {
  CountingHandler handler;
  NgServer server(handler.Get());
  server.set_cache_limits(2, size_t{1} << 20);
  ASSERT_TRUE(server.Start(Listen("127.0.0.1")).ok());
  UdpClient client("127.0.0.1");

  EXPECT_EQ(Exchange(server, client, "e1"), "e1 d4:calli1e6:result2:oke");
  EXPECT_EQ(Exchange(server, client, "e2"), "e2 d4:calli2e6:result2:oke");
  EXPECT_EQ(Exchange(server, client, "e3"), "e3 d4:calli3e6:result2:oke");  // evicts e1
  EXPECT_EQ(server.cached_replies(), 2u);
  EXPECT_EQ(Exchange(server, client, "e3"), "e3 d4:calli3e6:result2:oke");  // cached
  EXPECT_EQ(Exchange(server, client, "e2"), "e2 d4:calli2e6:result2:oke");  // cached
  EXPECT_EQ(Exchange(server, client, "e1"), "e1 d4:calli4e6:result2:oke");  // ran again
  EXPECT_EQ(handler.calls, 4);

  // A byte budget that holds one reply keeps only the newest.
  NgServer small(handler.Get());
  small.set_cache_limits(100, 40);
  ASSERT_TRUE(small.Start(Listen("127.0.0.1")).ok());
  EXPECT_EQ(Exchange(small, client, "b1"), "b1 d4:calli5e6:result2:oke");
  EXPECT_EQ(Exchange(small, client, "b2"), "b2 d4:calli6e6:result2:oke");
  EXPECT_EQ(small.cached_replies(), 1u);
  EXPECT_EQ(Exchange(small, client, "b2"), "b2 d4:calli6e6:result2:oke");  // cached
  EXPECT_EQ(Exchange(small, client, "b1"), "b1 d4:calli7e6:result2:oke");  // ran again
}

TEST(NgServerTest, BadBencodeGetsAnErrorReplyWithTheCookie) {
  CountingHandler handler;
  NgServer server(handler.Get());
  ASSERT_TRUE(server.Start(Listen("127.0.0.1")).ok());
  UdpClient client("127.0.0.1");

  client.SendTo("127.0.0.1", server.port(), "bad1 d7:command");
  EXPECT_EQ(server.Poll(kReplyTimeout), 1u);
  const std::optional<std::string> truncated = client.Receive();
  ASSERT_TRUE(truncated.has_value());
  const BencodeValue reply1 = DecodeReply(*truncated, "bad1");
  EXPECT_EQ(ResultOf(reply1), "error");
  EXPECT_NE(ErrorReasonOf(reply1).find("ng message"), std::string::npos) << ErrorReasonOf(reply1);

  client.SendTo("127.0.0.1", server.port(), "bad2 li1ee");  // a list, not a dictionary
  EXPECT_EQ(server.Poll(kReplyTimeout), 1u);
  const std::optional<std::string> list = client.Receive();
  ASSERT_TRUE(list.has_value());
  const BencodeValue reply2 = DecodeReply(*list, "bad2");
  EXPECT_EQ(ResultOf(reply2), "error");
  EXPECT_NE(ErrorReasonOf(reply2).find("dictionary"), std::string::npos) << ErrorReasonOf(reply2);

  EXPECT_EQ(handler.calls, 0);
  EXPECT_EQ(
      CounterValue(server, "karl_ng_requests_total", {{"command", "invalid"}, {"result", "error"}}),
      2);
}

TEST(NgServerTest, DatagramWithoutACookieIsDroppedSilently) {
  CountingHandler handler;
  NgServer server(handler.Get());
  ASSERT_TRUE(server.Start(Listen("127.0.0.1")).ok());
  UdpClient client("127.0.0.1");

  client.SendTo("127.0.0.1", server.port(), "d7:command4:pinge");
  EXPECT_EQ(server.Poll(kReplyTimeout), 1u);
  EXPECT_FALSE(client.Receive(kSilenceTimeout).has_value());
  EXPECT_EQ(handler.calls, 0);
  EXPECT_EQ(CounterValue(server, "karl_ng_dropped_total", {{"reason", "malformed"}}), 1);
  EXPECT_EQ(CounterValue(server, "karl_ng_dropped_total", {{"reason", "source"}}), 0);
}

TEST(NgServerTest, SourceOutsideAllowedSourcesGetsNoReply) {
  CountingHandler handler;
  NgServer server(handler.Get());
  NgConfig config = Listen("127.0.0.1");
  config.allowed_sources = {*IpPrefix::Parse("198.51.100.0/24")};
  ASSERT_TRUE(server.Start(config).ok());
  UdpClient client("127.0.0.1");

  client.SendTo("127.0.0.1", server.port(), std::string("s1 ") + kPing);
  client.SendTo("127.0.0.1", server.port(), std::string("s2 ") + kPing);
  size_t handled = 0;
  for (int i = 0; i < 20 && handled < 2; ++i) handled += server.Poll(milliseconds(100));
  EXPECT_EQ(handled, 2u);
  EXPECT_FALSE(client.Receive(kSilenceTimeout).has_value());
  EXPECT_EQ(handler.calls, 0);
  EXPECT_EQ(CounterValue(server, "karl_ng_dropped_total", {{"reason", "source"}}), 2);
}

TEST(NgServerTest, ThrowingHandlerGetsAnErrorReplyAndTheServerKeepsServing) {
  int calls = 0;
  NgServer server([&calls](const BencodeValue& request, const NgRequestContext&) {
    ++calls;
    if (*request.GetString("command") == "offer") throw std::runtime_error("no ports left");
    BencodeValue reply;
    reply.Set("result", "pong");
    return reply;
  });
  ASSERT_TRUE(server.Start(Listen("127.0.0.1")).ok());
  UdpClient client("127.0.0.1");

  client.SendTo("127.0.0.1", server.port(), std::string("t1 ") + kOffer);
  EXPECT_EQ(server.Poll(kReplyTimeout), 1u);
  const std::optional<std::string> failed = client.Receive();
  ASSERT_TRUE(failed.has_value());
  const BencodeValue reply = DecodeReply(*failed, "t1");
  EXPECT_EQ(ResultOf(reply), "error");
  EXPECT_EQ(ErrorReasonOf(reply), "internal error: no ports left");

  client.SendTo("127.0.0.1", server.port(), std::string("t2 ") + kPing);
  EXPECT_EQ(server.Poll(kReplyTimeout), 1u);
  const std::optional<std::string> pong = client.Receive();
  ASSERT_TRUE(pong.has_value());
  EXPECT_EQ(*pong, "t2 d6:result4:ponge");
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(
      CounterValue(server, "karl_ng_requests_total", {{"command", "offer"}, {"result", "error"}}),
      1);
}

TEST(NgServerTest, ReplyTooLargeForUdpBecomesAnErrorReply) {
  NgServer server([](const BencodeValue&, const NgRequestContext&) {
    BencodeValue reply;
    reply.Set("result", "ok");
    reply.Set("sdp", std::string(70'000, 'v'));
    return reply;
  });
  ASSERT_TRUE(server.Start(Listen("127.0.0.1")).ok());
  UdpClient client("127.0.0.1");

  client.SendTo("127.0.0.1", server.port(), std::string("big ") + kOffer);
  EXPECT_EQ(server.Poll(kReplyTimeout), 1u);
  const std::optional<std::string> datagram = client.Receive();
  ASSERT_TRUE(datagram.has_value());
  const BencodeValue reply = DecodeReply(*datagram, "big");
  EXPECT_EQ(ResultOf(reply), "error");
  // "big " + d6:result2:ok3:sdp70000:<70000 bytes>e
  EXPECT_EQ(ErrorReasonOf(reply), "reply too large (70029 bytes)");
}

TEST(NgServerTest, MetricsCountRequestsByCommandAndResult) {
  NgServer server([](const BencodeValue& request, const NgRequestContext&) {
    BencodeValue reply;
    const absl::StatusOr<std::string_view> command = request.GetString("command");
    if (command.ok() && *command == "ping") {
      reply.Set("result", "pong");
    } else if (command.ok() && *command == "offer") {
      reply.Set("result", "ok");
    } else {
      reply.Set("result", "error");
      reply.Set("error-reason", "Unrecognized command");
    }
    return reply;
  });
  ASSERT_TRUE(server.Start(Listen("127.0.0.1")).ok());
  UdpClient client("127.0.0.1");

  const std::vector<std::string> requests = {
      std::string("m1 ") + kPing,
      std::string("m2 ") + kPing,
      std::string("m3 ") + kOffer,
      std::string("m3 ") + kOffer,  // retransmission
      "m4 d7:command6:unknowe",
      "m5 d4:callde",
      "m6 i1e",
  };
  for (const std::string& request : requests) {
    client.SendTo("127.0.0.1", server.port(), request);
    EXPECT_EQ(server.Poll(kReplyTimeout), 1u);
    EXPECT_TRUE(client.Receive().has_value()) << request;
  }

  const std::vector<prometheus::MetricFamily> families = server.metrics()->Collect();
  const auto requests_of = [&](const std::string& command, const std::string& result) {
    const prometheus::ClientMetric* metric =
        FindMetric(families, "karl_ng_requests_total", {{"command", command}, {"result", result}});
    return metric != nullptr ? metric->counter.value : -1;
  };
  EXPECT_EQ(requests_of("ping", "pong"), 2);
  EXPECT_EQ(requests_of("offer", "ok"), 1);
  EXPECT_EQ(requests_of("other", "error"), 1);    // unknown command
  EXPECT_EQ(requests_of("invalid", "error"), 2);  // no "command" key; not a dictionary
  EXPECT_EQ(requests_of("ping", "ok"), -1);       // never happened: no series

  const prometheus::ClientMetric* ping_seconds =
      FindMetric(families, "karl_ng_request_seconds", {{"command", "ping"}});
  ASSERT_NE(ping_seconds, nullptr);
  EXPECT_EQ(ping_seconds->histogram.sample_count, 2u);
  EXPECT_GT(ping_seconds->histogram.sample_sum, 0);
  EXPECT_EQ(ping_seconds->histogram.bucket.back().upper_bound,
            std::numeric_limits<double>::infinity());

  const prometheus::ClientMetric* retransmissions =
      FindMetric(families, "karl_ng_retransmissions_total", {});
  ASSERT_NE(retransmissions, nullptr);
  EXPECT_EQ(retransmissions->counter.value, 1);
  // Both drop reasons are exported from the start, zeros included.
  EXPECT_EQ(CounterValue(server, "karl_ng_dropped_total", {{"reason", "source"}}), 0);
  EXPECT_EQ(CounterValue(server, "karl_ng_dropped_total", {{"reason", "malformed"}}), 0);
}

TEST(NgServerTest, PollHandlesEveryWaitingDatagramUpToMax) {
  CountingHandler handler;
  NgServer server(handler.Get());
  ASSERT_TRUE(server.Start(Listen("127.0.0.1")).ok());
  UdpClient client("127.0.0.1");
  for (int i = 0; i < 5; ++i) {
    client.SendTo("127.0.0.1", server.port(), absl::StrCat("b", i, " ", kPing));
  }
  // Loopback delivery is practically immediate; the pause makes sure all five are
  // queued before Poll runs.
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_EQ(server.Poll(kReplyTimeout, 3), 3u);
  size_t rest = 0;
  for (int i = 0; i < 20 && rest < 2; ++i) rest += server.Poll(milliseconds(100));
  EXPECT_EQ(rest, 2u);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(client.Receive().has_value());
  EXPECT_EQ(handler.calls, 5);
}

TEST(NgServerTest, IdlePollSleepsForTheWaitAndReturns) {
  CountingHandler handler;
  NgServer server(handler.Get());
  ASSERT_TRUE(server.Start(Listen("127.0.0.1")).ok());

  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(server.Poll(milliseconds(20)), 0u);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, milliseconds(15));  // slept rather than spun
  EXPECT_LT(elapsed, milliseconds(500));

  // Disabled (nothing bound): Poll still paces the caller.
  NgServer disabled(handler.Get());
  NgConfig off = Listen("127.0.0.1");
  off.enabled = false;
  ASSERT_TRUE(disabled.Start(off).ok());
  EXPECT_EQ(disabled.port(), 0);
  const auto start_off = std::chrono::steady_clock::now();
  EXPECT_EQ(disabled.Poll(milliseconds(20)), 0u);
  const auto elapsed_off = std::chrono::steady_clock::now() - start_off;
  EXPECT_GE(elapsed_off, milliseconds(15));
  EXPECT_LT(elapsed_off, milliseconds(500));
}

TEST(NgServerTest, StartOnABusyPortFailsNamingTheAddress) {
  CountingHandler handler;
  NgServer first(handler.Get());
  ASSERT_TRUE(first.Start(Listen("127.0.0.1")).ok());

  NgServer second(handler.Get());
  const absl::Status status = second.Start(Listen("127.0.0.1", first.port()));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(status.message(), "ng: cannot listen on 127.0.0.1:" + std::to_string(first.port()) +
                                  ": Address already in use");
  EXPECT_EQ(second.port(), 0);

  EXPECT_EQ(first.Start(Listen("127.0.0.1")).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace karl
