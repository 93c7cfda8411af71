// The UDP transport of rtpengine's ng control protocol: receives "<cookie> <bencoded
// dict>" datagrams from the SIP proxies (Kamailio, OpenSIPS), filters them by source
// address, decodes them, hands each request to a Handler and sends back "<cookie>
// <bencoded reply>". Replies are cached per (source address, source port, cookie) for
// 30 s, so a proxy's retransmission gets the byte-identical reply without the command
// running twice (an offer must not allocate ports again). The commands themselves live
// in the Handler, not here.
//
// Threads: the owner (the control-plane thread) constructs, calls Start, port and Poll;
// the Handler runs inside Poll on that thread. metrics() may be collected from any
// thread (the ops HTTP request threads): prometheus-cpp registries and counters are
// thread-safe.
#pragma once

#include <netinet/in.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "common/net_addr.h"
#include "controlplane/bencode.h"
#include "controlplane/config.h"

namespace karl {

// Who sent an ng request. An IPv4 client reaching a dual-stack "::" socket shows as
// its IPv4 address, not as ::ffff:a.b.c.d.
struct NgRequestContext {
  IpAddress source;
  uint16_t source_port = 0;
  std::string cookie;
};

class NgServer {
 public:
  // Handles one decoded request (a bencode dictionary); returns the reply dictionary,
  // which must contain "result". Called on the thread that calls Poll(). An exception
  // it throws becomes the error reply "internal error: <what>"; the server keeps going.
  using Handler =
      std::function<BencodeValue(const BencodeValue& request, const NgRequestContext& ctx)>;
  using Clock = std::chrono::steady_clock;

  // How long a reply stays cached for retransmissions (rtpengine: 30 s).
  static constexpr std::chrono::milliseconds kDefaultCacheTtl{30'000};
  // Default bounds on the reply cache; the oldest entries go first when either is
  // reached.
  static constexpr size_t kMaxCacheEntries = 65'536;
  static constexpr size_t kMaxCacheBytes = size_t{64} << 20;
  // The largest UDP payload over IPv4 (65,535 - 8 UDP - 20 IP header bytes).
  static constexpr size_t kMaxReplyBytes = 65'507;
  // Receive buffer asked for with SO_RCVBUF (best effort: capped by net.core.rmem_max).
  static constexpr int kReceiveBufferBytes = 4 << 20;

  explicit NgServer(Handler handler);
  ~NgServer();  // closes the socket
  NgServer(const NgServer&) = delete;
  NgServer& operator=(const NgServer&) = delete;

  // Binds config.listen (UDP, IPv4 or IPv6 by the address; "::" and ::ffff:a.b.c.d
  // also take IPv4 clients) and takes config.allowed_sources (empty = loopback only:
  // 127.0.0.0/8 and ::1). Port 0 = chosen by the OS (tests). Errors: UnavailableError
  // naming the address and errno ("ng: cannot listen on 127.0.0.1:22222: Address
  // already in use"); FailedPrecondition when already started. With config.enabled
  // false nothing is bound and OK is returned; Poll then only sleeps.
  absl::Status Start(const NgConfig& config);

  // The bound port (after Start with port 0, the one the OS chose); 0 when not bound.
  uint16_t port() const { return port_; }

  // Waits up to `wait` for a datagram (ppoll(2), so an idle control loop sleeps here
  // instead of spinning), then handles every datagram already waiting, at most `max`.
  // Returns how many datagrams it handled, dropped ones included. Never blocks longer
  // than `wait` plus the handlers' time. Without a bound socket it sleeps `wait`.
  size_t Poll(std::chrono::microseconds wait, size_t max = 64);

  // The registry holding karl_ng_* metrics; lives as long as the server.
  const prometheus::Collectable* metrics() const { return &registry_; }

  // How long replies stay cached (tests use a short one). Applies to lookups from now
  // on, including entries already cached.
  void set_cache_ttl(std::chrono::milliseconds ttl) { cache_ttl_ = ttl; }
  // Bounds on the cache (tests use small ones); checked as replies are added.
  void set_cache_limits(size_t max_entries, size_t max_bytes) {
    max_cache_entries_ = max_entries;
    max_cache_bytes_ = max_bytes;
  }
  // Replies cached now, expired ones not yet pruned included (tests).
  size_t cached_replies() const { return cache_.size(); }

 private:
  // Bounded label values of karl_ng_requests_total / karl_ng_request_seconds.
  enum class CommandLabel : uint8_t {
    kPing,
    kOffer,
    kAnswer,
    kDelete,
    kQuery,
    kList,
    kStatistics,
    kOther,
    kInvalid,
    kCount
  };
  enum class ResultLabel : uint8_t { kOk, kError, kPong, kOther, kCount };
  static constexpr size_t kCommands = static_cast<size_t>(CommandLabel::kCount);
  static constexpr size_t kResults = static_cast<size_t>(ResultLabel::kCount);

  struct CacheKey {
    IpAddress source;
    uint16_t port = 0;
    std::string cookie;
    bool operator==(const CacheKey&) const = default;
  };
  struct CacheKeyHash {
    size_t operator()(const CacheKey& key) const;
  };
  struct CacheEntry {
    std::shared_ptr<const std::string> reply;  // the whole datagram sent, cookie included
    Clock::time_point inserted;
    uint64_t sequence = 0;  // matches the deque element that owns this entry
  };
  struct CacheOrder {
    CacheKey key;
    uint64_t sequence = 0;
    Clock::time_point inserted;  // = the entry's: expiry is seen without a lookup
  };

  // A reply datagram and the result label it counts under.
  struct Outcome {
    std::string datagram;
    ResultLabel result = ResultLabel::kError;
  };

  // One received datagram: filters, decodes, answers (from the cache or the handler).
  void HandleDatagram(std::string_view datagram, const sockaddr_storage& from, socklen_t from_len);
  // Runs the handler and turns every failure (exception, reply without "result", reply
  // too large for UDP) into an error reply.
  Outcome RunHandler(const BencodeValue& request, const NgRequestContext& ctx);
  bool SourceAllowed(const IpAddress& source) const;
  void WarnDroppedSource(const IpAddress& source, uint16_t port);
  // Queues `reply` for FlushReplies (shared with the cache: no copy).
  void Send(std::shared_ptr<const std::string> reply, const sockaddr_storage& to, socklen_t to_len,
            const NgRequestContext& ctx);
  // The cached reply for `key`, or nullptr when there is none or it expired.
  std::shared_ptr<const std::string> CacheLookup(const CacheKey& key, Clock::time_point now) const;
  // Drops expired entries from the front, evicts the oldest while full, then adds.
  void CacheInsert(CacheKey key, std::shared_ptr<const std::string> reply, Clock::time_point now);
  void CachePopFront();

  void CountRequest(CommandLabel command, ResultLabel result, Clock::duration elapsed);
  static CommandLabel ClassifyCommand(const BencodeValue& request);
  static ResultLabel ClassifyResult(const BencodeValue& reply);

  const Handler handler_;
  // Everything below is owned by the Poll thread, except the prometheus objects, which
  // scrapes read concurrently (they are thread-safe).
  int fd_ = -1;
  uint16_t port_ = 0;
  bool started_ = false;
  std::vector<IpPrefix> allowed_sources_;
  // Receive buffers for one recvmmsg(2) batch: kBatch datagrams of up to
  // kReceiveBufferSize octets each (buffer_ holds them back to back).
  static constexpr unsigned kBatch = 32;
  std::vector<char> buffer_;
  std::array<mmsghdr, kBatch> rx_msgs_{};
  std::array<iovec, kBatch> rx_iov_{};
  std::array<sockaddr_storage, kBatch> rx_from_{};
  // Replies of the batch being handled, sent together by FlushReplies (sendmmsg(2)).
  struct PendingReply {
    std::shared_ptr<const std::string> datagram;
    sockaddr_storage to;
    socklen_t to_len;
    IpAddress source;  // for the log line if sending fails
    uint16_t source_port;
    std::string cookie;
  };
  std::vector<PendingReply> pending_replies_;
  void FlushReplies();

  std::chrono::milliseconds cache_ttl_ = kDefaultCacheTtl;
  size_t max_cache_entries_ = kMaxCacheEntries;
  size_t max_cache_bytes_ = kMaxCacheBytes;
  // Open addressing: a lookup is one probe of a slot array, not a walk through separately
  // allocated nodes (at 65,536 replies every probe misses the cache).
  absl::flat_hash_map<CacheKey, CacheEntry, CacheKeyHash> cache_;
  std::deque<CacheOrder> cache_order_;  // insertion order, oldest first
  size_t cache_bytes_ = 0;              // sum of the cached replies' sizes
  uint64_t next_sequence_ = 0;

  Clock::time_point last_source_warning_{};
  uint64_t sources_suppressed_ = 0;  // source drops not logged since the last warning

  prometheus::Registry registry_;
  prometheus::Family<prometheus::Counter>* requests_family_ = nullptr;
  prometheus::Family<prometheus::Histogram>* seconds_family_ = nullptr;
  // Created on first use so the scrape shows no impossible pairs (invalid/ok).
  std::array<std::array<prometheus::Counter*, kResults>, kCommands> requests_{};
  std::array<prometheus::Histogram*, kCommands> seconds_{};
  prometheus::Counter* retransmissions_ = nullptr;
  prometheus::Counter* dropped_source_ = nullptr;
  prometheus::Counter* dropped_malformed_ = nullptr;
};

}  // namespace karl
