// karl-ng-bench: call setup rate over the rtpengine ng protocol (UDP "<cookie> <bencode
// dict>") from one client: for each of N calls it sends offer, then (after the offer's
// reply) answer, then delete, with W calls in flight at once. Every target given with
// --target is measured in the same run, in alternating rounds (so that noise on this
// shared machine hits all alike); each figure is the median over the rounds. Not a test:
// it prints figures, and fails (exit 1) when a target errs or stops answering.
//
//   karl-ng-bench --target [NAME=]HOST:PORT [--target ...] [--calls N] [--window W]
//                 [--rounds R] [--warmup N] [--timeout-ms MS] [--max-retransmits N]
//                 [--round-timeout-s S] [--direction A,B] [--json]
//
// Requests are written as Kamailio's rtpengine module writes them for
// rtpengine_offer("replace-origin replace-session-connection"): call-id, from-tag
// (to-tag on answer and delete), sdp, replace: [origin, session-connection] and, with
// --direction, direction: [A, B]. SDPs: one audio stream (PCMU, PCMA, telephone-event,
// a=rtcp, a=sendrecv); the caller at 198.51.100.x, the callee at 203.0.113.x. Those
// addresses are only written in the SDP; no packet is sent to them.
//
// A request without a reply after --timeout-ms is sent again with the same cookie (ng
// servers answer a repeated cookie from their reply cache); the run fails once more
// than --max-retransmits were needed in one round. A reply is accepted when its result
// is "ok" and, for offer and answer, its SDP has an m= line with a non-zero port.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kCommands = 3;  // offer, answer, delete
constexpr const char* kCommandNames[kCommands] = {"offer", "answer", "delete"};

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------- bencode (BEP 3)

std::string BString(std::string_view s) {
  std::string out = std::to_string(s.size());
  out += ':';
  out += s;
  return out;
}

std::string BList(const std::vector<std::string>& items) {
  std::string out = "l";
  for (const std::string& i : items) out += BString(i);
  return out + "e";
}

// A dictionary built from already encoded values; Encode() writes the keys sorted as
// raw bytes, as bencode requires.
class BDict {
 public:
  void Add(std::string key, std::string encoded_value) {
    entries_.emplace_back(std::move(key), std::move(encoded_value));
  }
  void AddString(std::string key, std::string_view value) { Add(std::move(key), BString(value)); }
  std::string Encode() {
    std::sort(entries_.begin(), entries_.end());
    std::string out = "d";
    for (const auto& [k, v] : entries_) out += BString(k) + v;
    return out + "e";
  }

 private:
  std::vector<std::pair<std::string, std::string>> entries_;
};

// Reads the string at s[*i] ("<len>:<bytes>"); advances *i past it.
bool ReadString(std::string_view s, size_t* i, std::string_view* out) {
  size_t len = 0;
  size_t j = *i;
  if (j >= s.size() || s[j] < '0' || s[j] > '9') return false;
  while (j < s.size() && s[j] >= '0' && s[j] <= '9') {
    len = len * 10 + static_cast<size_t>(s[j] - '0');
    if (len > s.size()) return false;
    ++j;
  }
  if (j >= s.size() || s[j] != ':' || s.size() - j - 1 < len) return false;
  *out = s.substr(j + 1, len);
  *i = j + 1 + len;
  return true;
}

// Skips the value at s[*i] (any type, nested up to 32 levels); advances *i past it.
bool SkipValue(std::string_view s, size_t* i, int depth = 0) {
  if (depth > 32 || *i >= s.size()) return false;
  const char c = s[*i];
  if (c == 'i') {
    const size_t end = s.find('e', *i);
    if (end == std::string_view::npos) return false;
    *i = end + 1;
    return true;
  }
  if (c == 'l' || c == 'd') {
    ++*i;
    while (*i < s.size() && s[*i] != 'e') {
      std::string_view key;
      if (c == 'd' && !ReadString(s, i, &key)) return false;
      if (!SkipValue(s, i, depth + 1)) return false;
    }
    if (*i >= s.size()) return false;
    ++*i;
    return true;
  }
  std::string_view ignored;
  return ReadString(s, i, &ignored);
}

struct Reply {
  std::string_view result;
  std::string_view error_reason;
  std::string_view sdp;
};

// The top-level string values the benchmark checks; false when `body` is not one
// well-formed dictionary.
bool ParseReply(std::string_view body, Reply* r) {
  size_t i = 0;
  if (body.empty() || body[0] != 'd') return false;
  ++i;
  while (i < body.size() && body[i] != 'e') {
    std::string_view key;
    if (!ReadString(body, &i, &key)) return false;
    std::string_view* want = key == "result"         ? &r->result
                             : key == "error-reason" ? &r->error_reason
                             : key == "sdp"          ? &r->sdp
                                                     : nullptr;
    if (want != nullptr && i < body.size() && body[i] >= '0' && body[i] <= '9') {
      if (!ReadString(body, &i, want)) return false;
    } else if (!SkipValue(body, &i)) {
      return false;
    }
  }
  return i + 1 == body.size();
}

// The port of the SDP's first m= line, or -1 when there is none.
long FirstMediaPort(std::string_view sdp) {
  size_t at = sdp.rfind("m=", 0) == 0 ? 0 : sdp.find("\nm=");
  if (at == std::string_view::npos) return -1;
  at = sdp.find(' ', at);
  if (at == std::string_view::npos) return -1;
  long port = 0;
  size_t j = at + 1;
  if (j >= sdp.size() || sdp[j] < '0' || sdp[j] > '9') return -1;
  while (j < sdp.size() && sdp[j] >= '0' && sdp[j] <= '9' && port < 100000) {
    port = port * 10 + (sdp[j++] - '0');
  }
  return port;
}

// ---------------------------------------------------------------- requests

std::string CallerSdp(unsigned call) {
  const std::string addr = "198.51.100." + std::to_string(10 + call % 200);
  const unsigned port = 16000 + 2 * (call % 8000);
  return "v=0\r\no=caller " + std::to_string(100000 + call) + " 1 IN IP4 " + addr +
         "\r\ns=karl-ng-bench\r\nc=IN IP4 " + addr + "\r\nt=0 0\r\nm=audio " +
         std::to_string(port) +
         " RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
         "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
         "a=rtcp:" +
         std::to_string(port + 1) + "\r\na=sendrecv\r\n";
}

std::string CalleeSdp(unsigned call) {
  const std::string addr = "203.0.113." + std::to_string(10 + call % 200);
  const unsigned port = 20000 + 2 * (call % 8000);
  return "v=0\r\no=callee " + std::to_string(200000 + call) + " 1 IN IP4 " + addr +
         "\r\ns=karl-ng-bench\r\nc=IN IP4 " + addr + "\r\nt=0 0\r\nm=audio " +
         std::to_string(port) +
         " RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
         "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
         "a=rtcp:" +
         std::to_string(port + 1) + "\r\na=sendrecv\r\n";
}

struct Options {
  unsigned calls = 2000;
  unsigned window = 32;
  unsigned rounds = 5;
  int warmup = -1;  // -1: min(calls, 200)
  unsigned timeout_ms = 1000;
  unsigned max_retransmits = 100;
  unsigned round_timeout_s = 120;
  std::vector<std::string> direction;
  bool json = false;
};

// The three datagrams of one call: offer, answer, delete, each "<cookie> <dict>".
std::vector<std::string> CallRequests(const Options& o, const std::string& cookie_prefix,
                                      const std::string& call_id, unsigned call) {
  const std::string from_tag = "ft-" + std::to_string(call);
  const std::string to_tag = "tt-" + std::to_string(call);
  const std::string replace = BList({"origin", "session-connection"});
  std::vector<std::string> out;
  for (int c = 0; c < kCommands; ++c) {
    BDict d;
    d.AddString("command", kCommandNames[c]);
    d.AddString("call-id", call_id);
    d.AddString("from-tag", from_tag);
    if (c > 0) d.AddString("to-tag", to_tag);
    if (c < 2) {
      d.AddString("sdp", c == 0 ? CallerSdp(call) : CalleeSdp(call));
      d.Add("replace", replace);
      if (!o.direction.empty()) d.Add("direction", BList(o.direction));
    }
    out.push_back(cookie_prefix + std::to_string(call) + "_" + std::to_string(c) + " " +
                  d.Encode());
  }
  return out;
}

// ---------------------------------------------------------------- targets and rounds

struct Target {
  std::string name;
  std::string text;  // host:port as given
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::vector<double> rates;                  // sessions/s per measured round
  std::vector<double> latency_us[kCommands];  // every measured request, all rounds
  uint64_t errors = 0;
  uint64_t retransmits = 0;
};

bool ResolveTarget(const std::string& spec, Target* t) {
  std::string rest = spec;
  const size_t eq = spec.find('=');
  if (eq != std::string::npos) {
    t->name = spec.substr(0, eq);
    rest = spec.substr(eq + 1);
  }
  std::string host;
  std::string port;
  if (!rest.empty() && rest[0] == '[') {  // [v6]:port
    const size_t close = rest.find("]:");
    if (close == std::string::npos) return false;
    host = rest.substr(1, close - 1);
    port = rest.substr(close + 2);
  } else {
    const size_t colon = rest.rfind(':');
    if (colon == std::string::npos) return false;
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) return false;
  std::memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
  t->addr_len = res->ai_addrlen;
  freeaddrinfo(res);
  t->text = rest;
  if (t->name.empty()) t->name = rest;
  return true;
}

// One UDP socket of the target's family, used for every request to it.
int OpenSocket(const Target& t) {
  const int fd = socket(t.addr.ss_family, SOCK_DGRAM, 0);
  if (fd < 0) return -1;
  const int buf = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
  return fd;
}

bool Send(int fd, const Target& t, const std::string& packet) {
  for (int tries = 0; tries < 1000; ++tries) {
    if (sendto(fd, packet.data(), packet.size(), 0, reinterpret_cast<const sockaddr*>(&t.addr),
               t.addr_len) == static_cast<ssize_t>(packet.size())) {
      return true;
    }
    if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR) return false;
    usleep(50);
  }
  return false;
}

// ping with up to 3 tries of 500 ms each.
bool Ping(int fd, const Target& t) {
  const std::string cookie = "karl-ng-bench-ping-" + std::to_string(getpid());
  const std::string packet = cookie + " d7:command4:pinge";
  char buf[2048];
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (!Send(fd, t, packet)) return false;
    const int64_t deadline = NowNs() + 500'000'000;
    for (int64_t now = NowNs(); now < deadline; now = NowNs()) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>((deadline - now) / 1'000'000) + 1) <= 0) continue;
      const ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n <= 0) continue;
      const std::string_view d(buf, static_cast<size_t>(n));
      if (d.substr(0, cookie.size() + 1) != cookie + " ") continue;
      Reply r;
      if (ParseReply(d.substr(cookie.size() + 1), &r) && r.result == "pong") return true;
    }
  }
  return false;
}

struct CallState {
  int stage = 0;  // 0 offer, 1 answer, 2 delete, 3 done
  int64_t first_sent_ns = 0;
  int64_t last_sent_ns = 0;
};

struct RoundResult {
  bool ok = true;
  double sessions_per_s = 0;
  uint64_t errors = 0;
  uint64_t retransmits = 0;
  std::vector<double> latency_us[kCommands];
};

unsigned g_error_lines = 0;  // error details printed so far (at most 10 per run)

void NoteError(const Target& t, unsigned call, int command, std::string_view what) {
  if (g_error_lines++ < 10) {
    std::fprintf(stderr, "karl-ng-bench: %s: call %u %s: %.*s\n", t.name.c_str(), call,
                 kCommandNames[command], static_cast<int>(what.size()), what.data());
  }
}

// Runs `calls` calls against `t` with `window` in flight; ids unique per (round, target).
RoundResult RunRound(int fd, const Target& t, const Options& o, unsigned calls,
                     const std::string& run_tag) {
  RoundResult res;
  const std::string cookie_prefix = run_tag + "_";
  std::vector<std::vector<std::string>> requests(calls);
  for (unsigned i = 0; i < calls; ++i) {
    requests[i] =
        CallRequests(o, cookie_prefix, "karl-ng-bench-" + run_tag + "-" + std::to_string(i), i);
  }
  std::vector<CallState> state(calls);
  std::vector<unsigned> active;  // calls in flight
  active.reserve(o.window);
  unsigned next_call = 0;
  unsigned done = 0;
  const int64_t timeout_ns = int64_t{o.timeout_ms} * 1'000'000;
  auto send_stage = [&](unsigned call, int64_t now) {
    CallState& s = state[call];
    s.first_sent_ns = s.last_sent_ns = now;
    if (!Send(fd, t, requests[call][static_cast<size_t>(s.stage)])) {
      std::fprintf(stderr, "karl-ng-bench: %s: sendto: %s\n", t.name.c_str(), std::strerror(errno));
      res.ok = false;
    }
  };
  const int64_t start = NowNs();
  while (next_call < calls && active.size() < o.window) {
    active.push_back(next_call);
    send_stage(next_call++, NowNs());
  }
  constexpr unsigned kBatch = 64;
  static char bufs[kBatch][65536];
  mmsghdr msgs[kBatch];
  iovec iovs[kBatch];
  int64_t next_retransmit_scan = start + timeout_ns / 4;
  const int64_t round_deadline = start + int64_t{o.round_timeout_s} * 1'000'000'000;
  while (done < calls && res.ok) {
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, 5);
    std::memset(msgs, 0, sizeof(msgs));
    for (unsigned k = 0; k < kBatch; ++k) {
      iovs[k] = iovec{bufs[k], sizeof(bufs[k])};
      msgs[k].msg_hdr.msg_iov = &iovs[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
    }
    const int n = recvmmsg(fd, msgs, kBatch, MSG_DONTWAIT, nullptr);
    const int64_t now = NowNs();
    for (int k = 0; k < n; ++k) {
      const std::string_view d(bufs[k], msgs[k].msg_len);
      // "<run_tag>_<call>_<command> <dict>": anything else is a late reply of an
      // earlier round or of a retransmitted request already answered.
      if (d.substr(0, cookie_prefix.size()) != cookie_prefix) continue;
      const size_t space = d.find(' ');
      const size_t us = d.find('_', cookie_prefix.size());
      if (space == std::string_view::npos || us == std::string_view::npos || us > space) continue;
      const unsigned call = static_cast<unsigned>(std::strtoul(
          std::string(d.substr(cookie_prefix.size(), us - cookie_prefix.size())).c_str(), nullptr,
          10));
      const int command = d[us + 1] - '0';
      if (call >= calls || command != state[call].stage) continue;
      CallState& s = state[call];
      res.latency_us[command].push_back(static_cast<double>(now - s.first_sent_ns) / 1e3);
      Reply r;
      bool good = false;
      if (!ParseReply(d.substr(space + 1), &r)) {
        NoteError(t, call, command, "reply is not a bencoded dictionary");
      } else if (r.result != "ok") {
        std::string what = "result " + std::string(r.result);
        if (!r.error_reason.empty()) what += ": " + std::string(r.error_reason);
        NoteError(t, call, command, what);
      } else if (command < 2 && FirstMediaPort(r.sdp) <= 0) {
        NoteError(t, call, command, r.sdp.empty() ? "no sdp" : "sdp without a non-zero m= port");
      } else {
        good = true;
      }
      if (!good) ++res.errors;
      // An offer that failed skips the answer: delete cleans up whatever was made.
      s.stage = (command == 0 && !good) ? 2 : command + 1;
      if (s.stage < kCommands) {
        send_stage(call, now);
        continue;
      }
      ++done;
      std::erase(active, call);
      if (next_call < calls) {
        active.push_back(next_call);
        send_stage(next_call++, now);
      }
    }
    if (now >= next_retransmit_scan) {
      next_retransmit_scan = now + timeout_ns / 4;
      for (unsigned call : active) {
        CallState& s = state[call];
        if (now - s.last_sent_ns < timeout_ns) continue;
        s.last_sent_ns = now;
        ++res.retransmits;
        Send(fd, t, requests[call][static_cast<size_t>(s.stage)]);
      }
      if (res.retransmits > o.max_retransmits) {
        std::fprintf(stderr,
                     "karl-ng-bench: %s: %llu retransmissions in one round (limit %u): the "
                     "target drops or does not answer requests\n",
                     t.name.c_str(), static_cast<unsigned long long>(res.retransmits),
                     o.max_retransmits);
        res.ok = false;
      }
      if (now > round_deadline) {
        std::fprintf(stderr, "karl-ng-bench: %s: a round did not finish in %u s (%u of %u calls)\n",
                     t.name.c_str(), o.round_timeout_s, done, calls);
        res.ok = false;
      }
    }
  }
  const double seconds = static_cast<double>(NowNs() - start) / 1e9;
  res.sessions_per_s = static_cast<double>(calls) / seconds;
  return res;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t idx = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * v.size()));
  return v[idx];
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

int Usage() {
  std::fprintf(stderr,
               "usage: karl-ng-bench --target [NAME=]HOST:PORT [--target ...] [--calls N] "
               "[--window W] [--rounds R] [--warmup N] [--timeout-ms MS] "
               "[--max-retransmits N] [--round-timeout-s S] [--direction A,B] [--json]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::vector<Target> targets;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") {
      o.json = true;
      continue;
    }
    if (i + 1 >= argc) return Usage();
    const std::string v = argv[++i];
    const unsigned n = static_cast<unsigned>(std::strtoul(v.c_str(), nullptr, 10));
    if (a == "--target") {
      Target t;
      if (!ResolveTarget(v, &t)) {
        std::fprintf(stderr, "karl-ng-bench: --target %s: want [NAME=]HOST:PORT\n", v.c_str());
        return 2;
      }
      targets.push_back(std::move(t));
    } else if (a == "--calls") {
      o.calls = std::clamp(n, 1u, 1000000u);
    } else if (a == "--window") {
      o.window = std::clamp(n, 1u, 4096u);
    } else if (a == "--rounds") {
      o.rounds = std::clamp(n, 1u, 1000u);
    } else if (a == "--warmup") {
      o.warmup = static_cast<int>(std::min(n, 1000000u));
    } else if (a == "--timeout-ms") {
      o.timeout_ms = std::clamp(n, 10u, 60000u);
    } else if (a == "--max-retransmits") {
      o.max_retransmits = n;
    } else if (a == "--round-timeout-s") {
      o.round_timeout_s = std::clamp(n, 1u, 3600u);
    } else if (a == "--direction") {
      const size_t comma = v.find(',');
      if (comma == std::string::npos) return Usage();
      o.direction = {v.substr(0, comma), v.substr(comma + 1)};
    } else {
      return Usage();
    }
  }
  if (targets.empty()) return Usage();
  const unsigned warmup = o.warmup < 0 ? std::min(o.calls, 200u) : static_cast<unsigned>(o.warmup);

  std::vector<int> fds;
  for (const Target& t : targets) {
    const int fd = OpenSocket(t);
    if (fd < 0) {
      std::fprintf(stderr, "karl-ng-bench: socket: %s\n", std::strerror(errno));
      return 1;
    }
    fds.push_back(fd);
    if (!Ping(fd, t)) {
      std::fprintf(stderr, "karl-ng-bench: %s (%s) does not answer ng ping\n", t.name.c_str(),
                   t.text.c_str());
      return 1;
    }
  }
  const std::string run_id = std::to_string(getpid()) + "x" + std::to_string(NowNs() % 1000000);
  bool ok = true;
  for (size_t ti = 0; ti < targets.size() && ok && warmup > 0; ++ti) {
    RoundResult r =
        RunRound(fds[ti], targets[ti], o, warmup, "kb" + run_id + "w" + std::to_string(ti));
    ok = r.ok && r.errors == 0;
    targets[ti].errors += r.errors;
  }
  // Per-round ratio of every target to the first (the reference), measured back to back.
  std::vector<std::vector<double>> ratios(targets.size());
  for (unsigned round = 0; round < o.rounds && ok; ++round) {
    std::vector<double> rate(targets.size(), 0);
    for (size_t k = 0; k < targets.size() && ok; ++k) {
      // Alternate the order so that neither target always runs first.
      const size_t ti = round % 2 == 0 ? k : targets.size() - 1 - k;
      Target& t = targets[ti];
      RoundResult r =
          RunRound(fds[ti], t, o, o.calls,
                   "kb" + run_id + "r" + std::to_string(round) + "t" + std::to_string(ti));
      ok = r.ok;
      t.rates.push_back(r.sessions_per_s);
      t.errors += r.errors;
      t.retransmits += r.retransmits;
      for (int c = 0; c < kCommands; ++c) {
        t.latency_us[c].insert(t.latency_us[c].end(), r.latency_us[c].begin(),
                               r.latency_us[c].end());
      }
      rate[ti] = r.sessions_per_s;
    }
    for (size_t ti = 0; ti < targets.size() && ok; ++ti) ratios[ti].push_back(rate[ti] / rate[0]);
  }
  for (int fd : fds) close(fd);
  uint64_t errors = 0;
  for (const Target& t : targets) errors += t.errors;

  if (o.json) {
    std::string j = "{\"calls\":" + std::to_string(o.calls) +
                    ",\"window\":" + std::to_string(o.window) +
                    ",\"rounds\":" + std::to_string(o.rounds) +
                    ",\"ok\":" + (ok && errors == 0 ? "true" : "false") + ",\"targets\":[";
    for (size_t ti = 0; ti < targets.size(); ++ti) {
      const Target& t = targets[ti];
      char num[64];
      j += ti ? "," : "";
      j += "{\"name\":" + JsonString(t.name) + ",\"address\":" + JsonString(t.text);
      std::snprintf(num, sizeof(num), "%.1f", Median(t.rates));
      j += ",\"sessions_per_s\":" + std::string(num) + ",\"rounds_sessions_per_s\":[";
      for (size_t r = 0; r < t.rates.size(); ++r) {
        std::snprintf(num, sizeof(num), "%s%.1f", r ? "," : "", t.rates[r]);
        j += num;
      }
      std::snprintf(num, sizeof(num), "%.3f", Median(ratios[ti]));
      j += "],\"ratio_to_first\":" + std::string(num) + ",\"latency_us\":{";
      for (int c = 0; c < kCommands; ++c) {
        std::snprintf(num, sizeof(num), "%.1f", Percentile(t.latency_us[c], 50));
        j += std::string(c ? "," : "") + "\"" + kCommandNames[c] + "\":{\"p50\":" + num;
        std::snprintf(num, sizeof(num), "%.1f", Percentile(t.latency_us[c], 99));
        j += std::string(",\"p99\":") + num + "}";
      }
      j += "},\"errors\":" + std::to_string(t.errors) +
           ",\"retransmits\":" + std::to_string(t.retransmits) + "}";
    }
    std::printf("%s]}\n", j.c_str());
  } else {
    std::printf(
        "karl-ng-bench: %u calls per round (offer, answer, delete), window %u, %u rounds "
        "alternating targets, %u warm-up calls; medians over rounds, latency over all "
        "requests\n",
        o.calls, o.window, o.rounds, warmup);
    std::printf("%-28s %12s  %17s  %17s  %17s  %6s  %6s\n", "target", "sessions/s",
                "offer p50/p99 us", "answer p50/p99", "delete p50/p99", "errors", "retx");
    for (size_t ti = 0; ti < targets.size(); ++ti) {
      const Target& t = targets[ti];
      char lat[kCommands][40];
      for (int c = 0; c < kCommands; ++c) {
        std::snprintf(lat[c], sizeof(lat[c]), "%.0f/%.0f", Percentile(t.latency_us[c], 50),
                      Percentile(t.latency_us[c], 99));
      }
      std::printf("%-28s %12.0f  %17s  %17s  %17s  %6llu  %6llu", t.name.c_str(), Median(t.rates),
                  lat[0], lat[1], lat[2], static_cast<unsigned long long>(t.errors),
                  static_cast<unsigned long long>(t.retransmits));
      if (ti > 0) {
        std::printf("   %.2fx %s (median of per-round ratios)", Median(ratios[ti]),
                    targets[0].name.c_str());
      }
      std::printf("\n");
    }
  }
  if (!ok || errors != 0) {
    std::fprintf(stderr, "karl-ng-bench: FAILED (%llu errors%s)\n",
                 static_cast<unsigned long long>(errors), ok ? "" : ", run aborted");
    return 1;
  }
  return 0;
}
