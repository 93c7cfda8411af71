#include "controlplane/ng_server.h"

#include <arpa/inet.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <exception>
#include <functional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace karl {
namespace {

// One datagram of any size UDP can carry (IPv6 payloads reach 65,527 bytes).
constexpr size_t kReceiveBufferSize = 65'536;
// A handler's exception text beyond this is cut so the error reply stays small.
constexpr size_t kMaxExceptionText = 1'024;
constexpr std::chrono::seconds kSourceWarningInterval{1};

// Indexed by NgServer's CommandLabel / ResultLabel.
constexpr std::array<const char*, 9> kCommandNames = {
    "ping", "offer", "answer", "delete", "query", "list", "statistics", "other", "invalid"};
constexpr std::array<const char*, 4> kResultNames = {"ok", "error", "pong", "other"};

// 50 µs .. 1 s, roughly 1-2.5-5 per decade: a ping takes tens of µs, an offer with SDP
// rewriting and flow installation a few ms, a stalled one shows at the top.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries buckets = {
      50e-6, 100e-6, 250e-6, 500e-6, 1e-3,   2.5e-3, 5e-3,
      10e-3, 25e-3,  50e-3,  100e-3, 250e-3, 500e-3, 1.0};
  return buckets;
}

std::string ErrnoText(int err) { return std::strerror(err); }

IpAddress V4FromBytes(const uint8_t* b) {
  return IpAddress::V4((uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) |
                       uint32_t{b[3]});
}

// ::ffff:a.b.c.d (RFC 4291 section 2.5.5.2), the form an IPv4 client has on a dual-stack
// socket.
bool IsV4Mapped(const std::array<uint8_t, 16>& b) {
  for (size_t i = 0; i < 10; ++i) {
    if (b[i] != 0) return false;
  }
  return b[10] == 0xff && b[11] == 0xff;
}

// The sender of a datagram; an IPv4-mapped IPv6 address becomes the IPv4 address.
void SourceOf(const sockaddr_storage& from, IpAddress* address, uint16_t* port) {
  if (from.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&from);
    *address = IpAddress::V4(ntohl(sin->sin_addr.s_addr));
    *port = ntohs(sin->sin_port);
  } else if (from.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&from);
    std::array<uint8_t, 16> bytes{};
    std::memcpy(bytes.data(), &sin6->sin6_addr, bytes.size());
    *address = IsV4Mapped(bytes) ? V4FromBytes(bytes.data() + 12) : IpAddress::V6(bytes);
    *port = ntohs(sin6->sin6_port);
  } else {
    *address = IpAddress();
    *port = 0;
  }
}

// A configured prefix inside ::ffff:0:0/96 matches IPv4 sources as the IPv4 prefix, since
// sources are compared unmapped.
IpPrefix Unmapped(const IpPrefix& prefix) {
  if (prefix.address.is_v6() && prefix.length >= 96 && IsV4Mapped(prefix.address.bytes())) {
    return IpPrefix{V4FromBytes(prefix.address.bytes().data() + 12),
                    static_cast<uint8_t>(prefix.length - 96)};
  }
  return prefix;
}

std::string PrefixList(const std::vector<IpPrefix>& prefixes) {
  return absl::StrJoin(prefixes, ", ",
                       [](std::string* out, const IpPrefix& p) { out->append(p.ToString()); });
}

}  // namespace

size_t NgServer::CacheKeyHash::operator()(const CacheKey& key) const {
  const std::array<uint8_t, 16>& b = key.source.bytes();
  size_t h = std::hash<std::string_view>{}(key.cookie);
  const size_t a = std::hash<std::string_view>{}(
      std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
  h ^= a + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  h ^= (size_t{key.port} | (size_t{static_cast<uint8_t>(key.source.family())} << 16)) +
       0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h;
}

NgServer::NgServer(Handler handler) : handler_(std::move(handler)) {
  static_assert(kCommandNames.size() == kCommands && kResultNames.size() == kResults);
  requests_family_ = &prometheus::BuildCounter()
                          .Name("karl_ng_requests_total")
                          .Help(
                              "ng requests answered, by command and result (replies resent "
                              "from the retransmission cache not included)")
                          .Register(registry_);
  seconds_family_ = &prometheus::BuildHistogram()
                         .Name("karl_ng_request_seconds")
                         .Help("Time from receiving an ng request to sending its reply")
                         .Register(registry_);
  retransmissions_ = &prometheus::BuildCounter()
                          .Name("karl_ng_retransmissions_total")
                          .Help(
                              "ng requests answered from the retransmission cache (same "
                              "source address, port and cookie within the cache TTL)")
                          .Register(registry_)
                          .Add({});
  auto& dropped = prometheus::BuildCounter()
                      .Name("karl_ng_dropped_total")
                      .Help(
                          "ng datagrams dropped without a reply: source = sender not in "
                          "ng.allowed_sources, malformed = no '<cookie> ' prefix")
                      .Register(registry_);
  dropped_source_ = &dropped.Add({{"reason", "source"}});
  dropped_malformed_ = &dropped.Add({{"reason", "malformed"}});
}

NgServer::~NgServer() {
  if (fd_ >= 0) close(fd_);
}

absl::Status NgServer::Start(const NgConfig& config) {
  if (started_) return absl::FailedPreconditionError("ng: server already started");
  if (!config.enabled) {
    started_ = true;
    spdlog::info("ng: disabled (ng.enabled is false)");
    return absl::OkStatus();
  }
  const IpAddress& address = config.listen.address;
  const std::string where = config.listen.ToString();
  if (address.empty()) return absl::InvalidArgumentError("ng: no listen address");

  sockaddr_storage storage{};
  socklen_t len = 0;
  if (address.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&storage);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(config.listen.port);
    std::memcpy(&sin->sin_addr, address.bytes().data(), 4);
    len = sizeof(sockaddr_in);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&storage);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(config.listen.port);
    std::memcpy(&sin6->sin6_addr, address.bytes().data(), 16);
    len = sizeof(sockaddr_in6);
  }

  const int fd = socket(storage.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("ng: cannot listen on ", where, ": ", ErrnoText(errno)));
  }
  if (address.is_v6() && (address.IsUnspecified() || IsV4Mapped(address.bytes()))) {
    // "::" (and ::ffff:a.b.c.d) should take IPv4 clients, whatever net.ipv6.bindv6only
    // says.
    int no = 0;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &no, sizeof(no)) != 0) {
      spdlog::warn("ng: cannot clear IPV6_V6ONLY on {}: {}; IPv4 clients may not reach it", where,
                   ErrnoText(errno));
    }
  }
  // No SO_REUSEADDR: on UDP it would let a second process bind the same port and take
  // part of the requests.

  // A larger receive buffer rides out bursts (a proxy restarting re-sends many
  // requests at once) while the control-plane thread is busy elsewhere.
  int rcvbuf = kReceiveBufferBytes;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) != 0) {
    spdlog::debug("ng: SO_RCVBUF {} refused: {}", rcvbuf, ErrnoText(errno));
  }
  if (bind(fd, reinterpret_cast<const sockaddr*>(&storage), len) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("ng: cannot listen on ", where, ": ", ErrnoText(err)));
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("ng: cannot listen on ", where, ": getsockname: ", ErrnoText(err)));
  }
  IpAddress ignored;
  SourceOf(bound, &ignored, &port_);

  allowed_sources_.clear();
  if (config.allowed_sources.empty()) {
    allowed_sources_ = {*IpPrefix::Parse("127.0.0.0/8"), *IpPrefix::Parse("::1/128")};
  } else {
    for (const IpPrefix& prefix : config.allowed_sources) {
      allowed_sources_.push_back(Unmapped(prefix));
    }
  }
  buffer_.resize(kReceiveBufferSize * kBatch);
  for (unsigned i = 0; i < kBatch; ++i) {
    rx_iov_[i].iov_base = buffer_.data() + i * kReceiveBufferSize;
    rx_iov_[i].iov_len = kReceiveBufferSize;
  }
  pending_replies_.reserve(kBatch);
  fd_ = fd;
  started_ = true;

  int effective = 0;
  socklen_t effective_len = sizeof(effective);
  getsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &effective, &effective_len);
  spdlog::info("ng: listening on {} (UDP, receive buffer {} bytes), accepting requests from {}",
               HostPort{address, port_}.ToString(), effective, PrefixList(allowed_sources_));
  return absl::OkStatus();
}

size_t NgServer::Poll(std::chrono::microseconds wait, size_t max) {
  if (wait.count() < 0) wait = std::chrono::microseconds(0);
  const timespec timeout{static_cast<time_t>(wait.count() / 1'000'000),
                         static_cast<long>(wait.count() % 1'000'000) * 1000};
  if (fd_ < 0) {
    ppoll(nullptr, 0, &timeout, nullptr);
    return 0;
  }
  pollfd pfd{};
  pfd.fd = fd_;
  pfd.events = POLLIN;
  const int ready = ppoll(&pfd, 1, &timeout, nullptr);
  if (ready < 0 && errno != EINTR) spdlog::warn("ng: poll failed: {}", ErrnoText(errno));
  if (ready <= 0) return 0;

  // Everything waiting, kBatch datagrams per recvmmsg(2), their replies sent together
  // with one sendmmsg(2) per batch.
  size_t handled = 0;
  while (handled < max) {
    const unsigned want = static_cast<unsigned>(std::min<size_t>(kBatch, max - handled));
    for (unsigned i = 0; i < want; ++i) {
      msghdr& h = rx_msgs_[i].msg_hdr;
      h = msghdr{};
      h.msg_name = &rx_from_[i];
      h.msg_namelen = sizeof(sockaddr_storage);
      h.msg_iov = &rx_iov_[i];
      h.msg_iovlen = 1;
      rx_msgs_[i].msg_len = 0;
    }
    // MSG_TRUNC: msg_len is the datagram's real length, so an oversized one is
    // recognised instead of being handled cut short.
    const int n = recvmmsg(fd_, rx_msgs_.data(), want, MSG_DONTWAIT | MSG_TRUNC, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        spdlog::warn("ng: receive failed: {}", ErrnoText(errno));
      }
      break;
    }
    for (int i = 0; i < n; ++i) {
      const sockaddr_storage& from = rx_from_[i];
      const size_t len = rx_msgs_[i].msg_len;
      if (len > kReceiveBufferSize) {
        IpAddress source;
        uint16_t port = 0;
        SourceOf(from, &source, &port);
        dropped_malformed_->Increment();
        spdlog::debug("ng: dropped a {}-byte datagram from {}: larger than {} bytes", len,
                      HostPort{source, port}.ToString(), kReceiveBufferSize);
        continue;
      }
      HandleDatagram(std::string_view(static_cast<const char*>(rx_iov_[i].iov_base), len), from,
                     rx_msgs_[i].msg_hdr.msg_namelen);
    }
    FlushReplies();
    handled += static_cast<size_t>(n);
    if (static_cast<unsigned>(n) < want) break;  // nothing more waiting
  }
  return handled;
}

void NgServer::HandleDatagram(std::string_view datagram, const sockaddr_storage& from,
                              socklen_t from_len) {
  const Clock::time_point start = Clock::now();
  NgRequestContext ctx;
  SourceOf(from, &ctx.source, &ctx.source_port);
  if (!SourceAllowed(ctx.source)) {
    dropped_source_->Increment();
    WarnDroppedSource(ctx.source, ctx.source_port);
    return;
  }

  // The cookie first: without one no reply can be addressed, and it is all the
  // retransmission cache needs, so a retransmission is answered without decoding.
  absl::StatusOr<NgFrame> frame = SplitNgFrame(datagram);
  if (!frame.ok()) {
    dropped_malformed_->Increment();
    spdlog::debug("ng: dropped a datagram from {}: {}",
                  HostPort{ctx.source, ctx.source_port}.ToString(),
                  std::string(frame.status().message()));
    return;
  }
  ctx.cookie.assign(frame->cookie);

  CacheKey key{ctx.source, ctx.source_port, ctx.cookie};
  if (std::shared_ptr<const std::string> cached = CacheLookup(key, start)) {
    retransmissions_->Increment();
    spdlog::debug("ng: retransmission from {} (cookie {}), resending the cached reply",
                  HostPort{ctx.source, ctx.source_port}.ToString(), ctx.cookie);
    Send(std::move(cached), from, from_len, ctx);
    return;
  }

  absl::StatusOr<NgRequest> request = ParseNgRequest(datagram);
  if (!request.ok()) {
    // Not cached: nothing ran, and a fixed retransmission should be decoded afresh.
    spdlog::debug("ng: invalid request from {} (cookie {}): {}",
                  HostPort{ctx.source, ctx.source_port}.ToString(), ctx.cookie,
                  std::string(request.status().message()));
    Send(std::make_shared<const std::string>(
             BuildNgErrorReply(ctx.cookie, std::string(request.status().message()))),
         from, from_len, ctx);
    CountRequest(CommandLabel::kInvalid, ResultLabel::kError, Clock::now() - start);
    return;
  }

  const CommandLabel command = ClassifyCommand(request->message);
  Outcome outcome = RunHandler(request->message, ctx);
  auto reply = std::make_shared<const std::string>(std::move(outcome.datagram));
  Send(reply, from, from_len, ctx);
  const Clock::time_point done = Clock::now();
  CountRequest(command, outcome.result, done - start);
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("ng: {} from {} (cookie {}) -> {} in {} us",
                  kCommandNames[static_cast<size_t>(command)],
                  HostPort{ctx.source, ctx.source_port}.ToString(), ctx.cookie,
                  kResultNames[static_cast<size_t>(outcome.result)],
                  std::chrono::duration_cast<std::chrono::microseconds>(done - start).count());
  }
  // Cached even when it is an error: the handler may have acted (an offer that
  // allocated ports, then failed to encode), and must not run again for the same cookie.
  CacheInsert(std::move(key), std::move(reply), done);
}

NgServer::Outcome NgServer::RunHandler(const BencodeValue& request, const NgRequestContext& ctx) {
  const auto error = [&](std::string_view reason) {
    return Outcome{BuildNgErrorReply(ctx.cookie, reason), ResultLabel::kError};
  };
  const auto describe = [&] {
    absl::StatusOr<std::string_view> command = request.GetString("command");
    return absl::StrCat(command.ok() ? std::string(*command) : "request", " from ",
                        HostPort{ctx.source, ctx.source_port}.ToString(), " (cookie ", ctx.cookie,
                        ")");
  };
  std::string what;
  try {
    const BencodeValue reply = handler_(request, ctx);
    const BencodeValue* result = reply.Find("result");
    if (result == nullptr || !result->is_string()) {
      spdlog::error("ng: {}: the handler's reply has no \"result\" string", describe());
      return error("internal error: reply without a result");
    }
    std::string datagram = BuildNgReply(ctx.cookie, reply);
    if (datagram.size() > kMaxReplyBytes) {
      const std::string reason = absl::StrCat("reply too large (", datagram.size(), " bytes)");
      spdlog::error("ng: {}: {}; UDP carries at most {} bytes, sent an error instead", describe(),
                    reason, kMaxReplyBytes);
      return error(reason);
    }
    return Outcome{std::move(datagram), ClassifyResult(reply)};
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
    what = "unknown exception";
  }
  if (what.size() > kMaxExceptionText) what.resize(kMaxExceptionText);
  spdlog::error("ng: {} failed: {}", describe(), what);
  return error(absl::StrCat("internal error: ", what));
}

bool NgServer::SourceAllowed(const IpAddress& source) const {
  for (const IpPrefix& prefix : allowed_sources_) {
    if (prefix.Contains(source)) return true;
  }
  return false;
}

void NgServer::WarnDroppedSource(const IpAddress& source, uint16_t port) {
  const Clock::time_point now = Clock::now();
  if (last_source_warning_ != Clock::time_point{} &&
      now - last_source_warning_ < kSourceWarningInterval) {
    ++sources_suppressed_;
    return;
  }
  if (sources_suppressed_ > 0) {
    spdlog::warn(
        "ng: dropped a request from {}: not in ng.allowed_sources ({} more dropped since the "
        "last warning)",
        HostPort{source, port}.ToString(), sources_suppressed_);
  } else {
    spdlog::warn("ng: dropped a request from {}: not in ng.allowed_sources",
                 HostPort{source, port}.ToString());
  }
  last_source_warning_ = now;
  sources_suppressed_ = 0;
}

void NgServer::Send(std::shared_ptr<const std::string> reply, const sockaddr_storage& to,
                    socklen_t to_len, const NgRequestContext& ctx) {
  pending_replies_.push_back(
      PendingReply{std::move(reply), to, to_len, ctx.source, ctx.source_port, ctx.cookie});
}

void NgServer::FlushReplies() {
  std::array<mmsghdr, kBatch> msgs{};
  std::array<iovec, kBatch> iov{};
  size_t next = 0;
  while (next < pending_replies_.size()) {
    const size_t count = std::min<size_t>(kBatch, pending_replies_.size() - next);
    for (size_t i = 0; i < count; ++i) {
      PendingReply& r = pending_replies_[next + i];
      iov[i].iov_base = const_cast<char*>(r.datagram->data());
      iov[i].iov_len = r.datagram->size();
      msgs[i] = mmsghdr{};
      msgs[i].msg_hdr.msg_name = &r.to;
      msgs[i].msg_hdr.msg_namelen = r.to_len;
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    const int sent = sendmmsg(fd_, msgs.data(), static_cast<unsigned>(count), 0);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) {
      // The first one failed: log it, skip it, carry on with the rest. A lost reply is
      // recovered by the client's retransmission, answered from the cache.
      const PendingReply& r = pending_replies_[next];
      spdlog::warn("ng: cannot send the {}-byte reply to {} (cookie {}): {}", r.datagram->size(),
                   HostPort{r.source, r.source_port}.ToString(), r.cookie, ErrnoText(errno));
      ++next;
      continue;
    }
    next += static_cast<size_t>(sent);
  }
  pending_replies_.clear();
}

std::shared_ptr<const std::string> NgServer::CacheLookup(const CacheKey& key,
                                                         Clock::time_point now) const {
  const auto it = cache_.find(key);
  if (it == cache_.end() || now - it->second.inserted >= cache_ttl_) return nullptr;
  return it->second.reply;
}

void NgServer::CacheInsert(CacheKey key, std::shared_ptr<const std::string> reply,
                           Clock::time_point now) {
  // Insertion times grow along the deque, so the expired entries are a prefix of it.
  while (!cache_order_.empty() && now - cache_order_.front().inserted >= cache_ttl_) {
    CachePopFront();
  }
  while (!cache_order_.empty() && (cache_order_.size() >= max_cache_entries_ ||
                                   cache_bytes_ + reply->size() > max_cache_bytes_)) {
    CachePopFront();
  }
  const uint64_t sequence = next_sequence_++;
  CacheEntry& entry = cache_[key];  // replaces an expired entry the prune did not reach
  if (entry.reply) cache_bytes_ -= entry.reply->size();
  cache_bytes_ += reply->size();
  entry.reply = std::move(reply);
  entry.inserted = now;
  entry.sequence = sequence;
  cache_order_.push_back(CacheOrder{std::move(key), sequence, now});
}

void NgServer::CachePopFront() {
  const CacheOrder& front = cache_order_.front();
  const auto it = cache_.find(front.key);
  // A stale element (its key was cached again later) leaves the newer entry alone.
  if (it != cache_.end() && it->second.sequence == front.sequence) {
    cache_bytes_ -= it->second.reply->size();
    cache_.erase(it);
  }
  cache_order_.pop_front();
}

void NgServer::CountRequest(CommandLabel command, ResultLabel result, Clock::duration elapsed) {
  const auto c = static_cast<size_t>(command);
  const auto r = static_cast<size_t>(result);
  prometheus::Counter*& counter = requests_[c][r];
  if (counter == nullptr) {
    counter = &requests_family_->Add({{"command", kCommandNames[c]}, {"result", kResultNames[r]}});
  }
  counter->Increment();
  prometheus::Histogram*& histogram = seconds_[c];
  if (histogram == nullptr) {
    histogram = &seconds_family_->Add({{"command", kCommandNames[c]}}, LatencyBuckets());
  }
  histogram->Observe(std::chrono::duration<double>(elapsed).count());
}

NgServer::CommandLabel NgServer::ClassifyCommand(const BencodeValue& request) {
  const BencodeValue* value = request.Find("command");
  const std::string* command = value != nullptr ? value->AsString() : nullptr;
  if (command == nullptr) return CommandLabel::kInvalid;
  for (size_t i = 0; i < static_cast<size_t>(CommandLabel::kOther); ++i) {
    if (*command == kCommandNames[i]) return static_cast<CommandLabel>(i);
  }
  return CommandLabel::kOther;
}

NgServer::ResultLabel NgServer::ClassifyResult(const BencodeValue& reply) {
  const BencodeValue* value = reply.Find("result");
  const std::string* result = value != nullptr ? value->AsString() : nullptr;
  if (result == nullptr) return ResultLabel::kOther;
  for (size_t i = 0; i < static_cast<size_t>(ResultLabel::kOther); ++i) {
    if (*result == kResultNames[i]) return static_cast<ResultLabel>(i);
  }
  return ResultLabel::kOther;
}

}  // namespace karl
