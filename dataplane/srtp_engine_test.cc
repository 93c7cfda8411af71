// Tests of the SRTP engines (ipsec_mb on a real crypto_aesni_mb cryptodev, openssl,
// libsrtp): every engine and suite against libsrtp2 in both directions, RTP and RTCP,
// bursts mixing contexts and operations, ROC wrap, reordering, gaps, replay and tampering
// inside a burst, MKI, lengths, the mbuf path, and equality of the batched engine with
// one-at-a-time processing.
#include "dataplane/srtp_engine.h"

#include <gtest/gtest.h>
#include <intel-ipsec-mb.h>
#include <rte_eal.h>
#include <rte_mbuf.h>
#include <srtp2/srtp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "tests/common/libsrtp_oracle.h"

// Heap allocations per packet: every malloc of the process (OpenSSL, NSS under libsrtp2,
// DPDK, Karl, operator new). Under ASan through its allocator hook; otherwise libc's
// allocator is interposed.
namespace {
std::atomic<uint64_t> g_allocations{0};
}  // namespace

#if defined(__SANITIZE_ADDRESS__)
// From the sanitizer runtime (GCC 12 installs no header declaring it).
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*,
                                                                             size_t),
                                                         void (*free_hook)(const volatile void*));
namespace {
void CountMalloc(const volatile void*, size_t) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
}
void IgnoreFree(const volatile void*) {}
const bool kCountingReady = __sanitizer_install_malloc_and_free_hooks(CountMalloc, IgnoreFree) != 0;
}  // namespace
#else
extern "C" {
void* __libc_malloc(size_t n);
void* __libc_calloc(size_t n, size_t size);
void* __libc_realloc(void* p, size_t n);
void* __libc_memalign(size_t align, size_t n);
void* malloc(size_t n) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t size) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(n, size);
}
void* realloc(void* p, size_t n) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, n);
}
int posix_memalign(void** out, size_t align, size_t n) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  *out = __libc_memalign(align, n);
  return *out != nullptr ? 0 : 12;  // ENOMEM
}
void* aligned_alloc(size_t align, size_t n) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(align, n);
}
}
namespace {
const bool kCountingReady = true;
}  // namespace
#endif

namespace karl::dp {

void PrintTo(SrtpStatus s, std::ostream* os) {
  constexpr const char* kNames[] = {"kOk",       "kAuthFailed", "kReplay",
                                    "kTooShort", "kNoRoom",     "kKeyExhausted"};
  *os << kNames[static_cast<size_t>(s)];
}
void PrintTo(SrtpSuite s, std::ostream* os) { *os << GetSrtpSuiteInfo(s).name; }
void PrintTo(SrtpEngineKind k, std::ostream* os) { *os << SrtpEngineName(k); }

namespace {

using Bytes = std::vector<uint8_t>;

rte_mempool* g_mbuf_pool = nullptr;

// One EAL for the binary, the ipsec_mb device with two worker queue pairs, libsrtp2.
class EalEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    const std::string prefix = "karl-srtpeng-" + std::to_string(getpid());
    std::vector<std::string> args = {"srtp_engine_test",
                                     "-l",
                                     "0",
                                     "--no-huge",
                                     "-m",
                                     "512",
                                     "--no-pci",
                                     "--no-shconf",
                                     "--file-prefix",
                                     prefix,
                                     "--log-level",
                                     "error"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    ASSERT_GE(rte_eal_init(static_cast<int>(argv.size()), argv.data()), 0) << "EAL init failed";
    const absl::Status st = InitSrtpCrypto(SrtpEngineKind::kIpsecMb, 2);
    ASSERT_TRUE(st.ok()) << st;
    ASSERT_TRUE(InitSrtpCrypto(SrtpEngineKind::kLibsrtp, 2).ok());
    ASSERT_TRUE(InitSrtpCrypto(SrtpEngineKind::kOpenssl, 2).ok());
    g_mbuf_pool = rte_pktmbuf_pool_create("srtp_eng_pool", 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                          static_cast<int>(rte_socket_id()));
    ASSERT_NE(g_mbuf_pool, nullptr);
  }
  void TearDown() override {
    CloseSrtpCrypto();
    CloseSrtpCrypto();  // idempotent
    const std::string runtime_dir = rte_eal_get_runtime_dir();
    rte_eal_cleanup();
    std::error_code ec;
    std::filesystem::remove_all(runtime_dir, ec);
  }
};

constexpr SrtpSuite kAllSuites[] = {
    SrtpSuite::kAesCm128HmacSha1_80, SrtpSuite::kAesCm128HmacSha1_32,
    SrtpSuite::kAes256CmHmacSha1_80, SrtpSuite::kAes256CmHmacSha1_32,
    SrtpSuite::kAeadAes128Gcm,       SrtpSuite::kAeadAes256Gcm,
};
constexpr SrtpEngineKind kAllEngines[] = {SrtpEngineKind::kIpsecMb, SrtpEngineKind::kOpenssl,
                                          SrtpEngineKind::kLibsrtp};

using test::LibSrtp;  // libsrtp2 as the oracle (tests/common/libsrtp_oracle.h)

struct Keys {
  Bytes key;
  Bytes salt;
  Bytes KeySalt() const {
    Bytes ks = key;
    ks.insert(ks.end(), salt.begin(), salt.end());
    return ks;
  }
};

Keys RandomKeys(SrtpSuite suite, std::mt19937& rng) {
  const SrtpSuiteInfo& info = GetSrtpSuiteInfo(suite);
  Keys k;
  for (int i = 0; i < info.master_key_len; ++i) k.key.push_back(static_cast<uint8_t>(rng()));
  for (int i = 0; i < info.master_salt_len; ++i) k.salt.push_back(static_cast<uint8_t>(rng()));
  return k;
}

std::unique_ptr<SrtpContext> MakeCtx(SrtpEngineKind engine, SrtpSuite suite, const Keys& k,
                                     const Bytes& mki = {},
                                     SrtpDirection direction = SrtpDirection::kBoth) {
  SrtpConfig c;
  c.engine = engine;
  c.suite = suite;
  c.master_key = k.key;
  c.master_salt = k.salt;
  c.mki = mki;
  c.direction = direction;
  return SrtpContext::Create(c);
}

// RFC 3550 §5.1 RTP packet: `cc` CSRCs, an extension of `ext_words` words (none if < 0),
// `payload` random octets.
Bytes MakeRtp(std::mt19937& rng, uint16_t seq, uint32_t ssrc, size_t payload, int cc = 0,
              int ext_words = -1) {
  Bytes p;
  p.push_back(static_cast<uint8_t>(0x80 | (ext_words >= 0 ? 0x10 : 0) | cc));
  p.push_back(static_cast<uint8_t>(rng() & 0x7f));
  p.push_back(static_cast<uint8_t>(seq >> 8));
  p.push_back(static_cast<uint8_t>(seq));
  for (int i = 0; i < 4; ++i) p.push_back(static_cast<uint8_t>(rng()));
  for (int i = 0; i < 4; ++i) p.push_back(static_cast<uint8_t>(ssrc >> (24 - 8 * i)));
  for (int i = 0; i < 4 * cc; ++i) p.push_back(static_cast<uint8_t>(rng()));
  if (ext_words >= 0) {
    p.push_back(0xbe);
    p.push_back(0xde);
    p.push_back(static_cast<uint8_t>(ext_words >> 8));
    p.push_back(static_cast<uint8_t>(ext_words));
    for (int i = 0; i < 4 * ext_words; ++i) p.push_back(static_cast<uint8_t>(rng()));
  }
  for (size_t i = 0; i < payload; ++i) p.push_back(static_cast<uint8_t>(rng()));
  return p;
}

// Mostly plain 12-octet headers (the device path for GCM), sometimes CSRCs or an
// extension, sometimes no payload at all.
Bytes MakeRandomRtp(std::mt19937& rng, uint16_t seq, uint32_t ssrc, size_t max_payload) {
  const int cc = rng() % 6 == 0 ? static_cast<int>(rng() % 16) : 0;
  const int ext = rng() % 6 == 0 ? static_cast<int>(rng() % 8) : -1;
  const size_t payload = rng() % 10 == 0 ? 0 : rng() % (max_payload + 1);
  return MakeRtp(rng, seq, ssrc, payload, cc, ext);
}

// Compound RTCP: SR without report blocks, then an SDES-like chunk.
Bytes MakeRtcp(std::mt19937& rng, uint32_t ssrc) {
  Bytes p = {0x80, 200, 0, 6};
  for (int i = 0; i < 4; ++i) p.push_back(static_cast<uint8_t>(ssrc >> (24 - 8 * i)));
  for (int i = 0; i < 20; ++i) p.push_back(static_cast<uint8_t>(rng()));
  const uint16_t words = static_cast<uint16_t>(1 + rng() % 40);
  p.push_back(0x81);
  p.push_back(202);
  p.push_back(static_cast<uint8_t>(words >> 8));
  p.push_back(static_cast<uint8_t>(words));
  for (int i = 0; i < 4 * words; ++i) p.push_back(static_cast<uint8_t>(rng()));
  return p;
}

constexpr size_t kCanary = 16;
constexpr uint8_t kCanaryByte = 0xa5;

// One job's packet: the bytes, room for the largest trailer, then a canary that no engine
// may touch.
struct Work {
  SrtpContext* ctx = nullptr;
  SrtpOp op = SrtpOp::kProtect;
  Bytes buf;
  uint32_t len = 0;
  SrtpStatus status = SrtpStatus::kOk;

  Work() = default;
  Work(SrtpContext* c, SrtpOp o, const Bytes& pkt, uint32_t extra = kSrtpMaxTrailerLen)
      : ctx(c), op(o), buf(pkt), len(static_cast<uint32_t>(pkt.size())) {
    buf.resize(pkt.size() + extra, 0);
    buf.resize(buf.size() + kCanary, kCanaryByte);
  }
  uint32_t capacity() const { return static_cast<uint32_t>(buf.size() - kCanary); }
  Bytes out() const { return Bytes(buf.begin(), buf.begin() + len); }
  bool canary_intact() const {
    return std::all_of(buf.end() - kCanary, buf.end(), [](uint8_t b) { return b == kCanaryByte; });
  }
};

// Runs the works through the engine in bursts of 1..max_burst jobs (random sizes).
void RunBursts(SrtpEngine& engine, std::vector<Work>& works, std::mt19937& rng,
               size_t max_burst = 48) {
  std::vector<SrtpJob> jobs;
  for (size_t i = 0; i < works.size();) {
    const size_t n = std::min(works.size() - i, 1 + rng() % max_burst);
    jobs.assign(n, SrtpJob{});
    for (size_t k = 0; k < n; ++k) {
      Work& w = works[i + k];
      jobs[k].ctx = w.ctx;
      jobs[k].pkt = w.buf.data();
      jobs[k].len = w.len;
      jobs[k].capacity = w.capacity();
      jobs[k].op = w.op;
      jobs[k].status = SrtpStatus::kTooShort;  // must be overwritten
    }
    engine.Run(jobs.data(), static_cast<uint16_t>(n));
    for (size_t k = 0; k < n; ++k) {
      works[i + k].status = jobs[k].status;
      if (jobs[k].status == SrtpStatus::kOk) works[i + k].len = jobs[k].len;
    }
    i += n;
  }
}

void RunOne(SrtpEngine& engine, Work& w) {
  std::mt19937 rng(0);
  std::vector<Work> one{std::move(w)};
  RunBursts(engine, one, rng, 1);
  w = std::move(one[0]);
}

// Unprotects `traffic` on two receivers with the same keys: rx_a through `batched` in
// random bursts (seeded by `seed`), rx_b one packet at a time through `sequential`. Every
// verdict and every accepted packet must be the same, and most packets accepted.
void UnprotectBothWays(SrtpEngine& batched, SrtpEngine& sequential, SrtpContext* rx_a,
                       SrtpContext* rx_b, const std::vector<Bytes>& traffic, unsigned seed,
                       std::string_view suite) {
  std::vector<Work> wa, wb;
  for (const Bytes& p : traffic) {
    wa.emplace_back(rx_a, SrtpOp::kUnprotect, p, 0);
    wb.emplace_back(rx_b, SrtpOp::kUnprotect, p, 0);
  }
  std::mt19937 bursts(seed);
  RunBursts(batched, wa, bursts, 64);
  for (Work& w : wb) RunOne(sequential, w);
  size_t ok = 0;
  for (size_t i = 0; i < wa.size(); ++i) {
    ASSERT_EQ(wa[i].status, wb[i].status) << suite << " job " << i;
    if (wa[i].status == SrtpStatus::kOk) {
      ASSERT_EQ(wa[i].out(), wb[i].out()) << i;
      ++ok;
    }
  }
  EXPECT_GT(ok, traffic.size() / 2);
}

bool IsGcm(SrtpSuite s) { return GetSrtpSuiteInfo(s).aead; }

// libsrtp2 2.5 finds the SRTCP MKI with the SRTP tag length, so with an MKI on the _32
// suites it cannot read SRTCP (not even its own: srtp_err_status_bad_mki).
bool LibsrtpReadsRtcpMki(SrtpSuite s, const Bytes& mki) {
  return mki.empty() || GetSrtpSuiteInfo(s).rtp_tag_len == GetSrtpSuiteInfo(s).rtcp_tag_len;
}

std::string ParamName(SrtpEngineKind engine, SrtpSuite suite) {
  std::string name =
      std::string(SrtpEngineName(engine)) + "_" + std::string(GetSrtpSuiteInfo(suite).name);
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

// ---- Every engine x every suite, against libsrtp2 ---------------------------------------------

class EngineSuite : public ::testing::TestWithParam<std::tuple<SrtpEngineKind, SrtpSuite>> {
 protected:
  void SetUp() override {
    kind_ = std::get<0>(GetParam());
    suite_ = std::get<1>(GetParam());
    engine_ = CreateSrtpEngine(kind_, 0);
    ASSERT_NE(engine_, nullptr);
  }
  // The device did the work it should have (and nothing failed on it).
  void ExpectDeviceUsed(uint64_t at_least) {
    const SrtpEngineStats s = engine_->stats();
    if (kind_ == SrtpEngineKind::kIpsecMb) {
      EXPECT_GE(s.device_ops, at_least);
    } else {
      EXPECT_EQ(s.device_ops, 0u);
    }
    EXPECT_EQ(s.device_errors, 0u);
  }

  SrtpEngineKind kind_{};
  SrtpSuite suite_{};
  std::unique_ptr<SrtpEngine> engine_;
};

// Karl's engine protects a stream (bursts of random size, several streams interleaved);
// the bytes equal libsrtp2's and libsrtp2 unprotects them.
void ProtectAgainstLibsrtp(SrtpEngine& engine, SrtpEngineKind kind, SrtpSuite suite,
                           const Bytes& mki, uint32_t seed) {
  std::mt19937 rng(seed);
  constexpr int kStreams = 5;
  std::vector<Keys> keys;
  std::vector<std::unique_ptr<SrtpContext>> tx;
  std::vector<std::unique_ptr<LibSrtp>> l_tx, l_rx;
  std::vector<uint16_t> seq;
  for (int s = 0; s < kStreams; ++s) {
    keys.push_back(RandomKeys(suite, rng));
    tx.push_back(MakeCtx(kind, suite, keys.back(), mki));
    ASSERT_NE(tx.back(), nullptr);
    l_tx.push_back(std::make_unique<LibSrtp>(suite, keys.back().KeySalt(), true, mki));
    l_rx.push_back(std::make_unique<LibSrtp>(suite, keys.back().KeySalt(), false, mki));
    ASSERT_EQ(l_tx.back()->status(), srtp_err_status_ok);
    seq.push_back(static_cast<uint16_t>(rng()));
  }
  std::vector<Work> works;
  std::vector<Bytes> plain, expect;
  std::vector<int> stream_of;
  for (int i = 0; i < 600; ++i) {
    const int s = static_cast<int>(rng() % kStreams);
    plain.push_back(MakeRandomRtp(rng, seq[s], 0x1000u + static_cast<uint32_t>(s), 1200));
    Bytes lib = plain.back();
    ASSERT_EQ(l_tx[s]->Protect(&lib), srtp_err_status_ok);
    expect.push_back(lib);
    works.emplace_back(tx[s].get(), SrtpOp::kProtect, plain.back());
    stream_of.push_back(s);
    seq[s] = static_cast<uint16_t>(seq[s] + 1 + (rng() % 8 == 0 ? rng() % 20 : 0));  // gaps
  }
  RunBursts(engine, works, rng);
  for (size_t i = 0; i < works.size(); ++i) {
    ASSERT_EQ(works[i].status, SrtpStatus::kOk) << i;
    ASSERT_TRUE(works[i].canary_intact()) << i;
    Bytes out = works[i].out();
    ASSERT_EQ(out, expect[i]) << "packet " << i;
    ASSERT_EQ(l_rx[stream_of[i]]->Unprotect(&out), srtp_err_status_ok) << i;
    ASSERT_EQ(out, plain[i]) << i;
  }
}

// libsrtp2 protects; Karl's engine unprotects in bursts.
void UnprotectFromLibsrtp(SrtpEngine& engine, SrtpEngineKind kind, SrtpSuite suite,
                          const Bytes& mki, uint32_t seed) {
  std::mt19937 rng(seed);
  constexpr int kStreams = 5;
  std::vector<std::unique_ptr<SrtpContext>> rx;
  std::vector<std::unique_ptr<LibSrtp>> l_tx;
  std::vector<uint16_t> seq;
  for (int s = 0; s < kStreams; ++s) {
    const Keys k = RandomKeys(suite, rng);
    rx.push_back(MakeCtx(kind, suite, k, mki));
    ASSERT_NE(rx.back(), nullptr);
    l_tx.push_back(std::make_unique<LibSrtp>(suite, k.KeySalt(), true, mki));
    seq.push_back(static_cast<uint16_t>(rng()));
  }
  std::vector<Work> works;
  std::vector<Bytes> plain;
  for (int i = 0; i < 600; ++i) {
    const int s = static_cast<int>(rng() % kStreams);
    plain.push_back(MakeRandomRtp(rng, seq[s], 0x2000u + static_cast<uint32_t>(s), 1200));
    Bytes lib = plain.back();
    ASSERT_EQ(l_tx[s]->Protect(&lib), srtp_err_status_ok);
    works.emplace_back(rx[s].get(), SrtpOp::kUnprotect, lib, 0);
    seq[s] = static_cast<uint16_t>(seq[s] + 1 + (rng() % 8 == 0 ? rng() % 20 : 0));
  }
  RunBursts(engine, works, rng);
  for (size_t i = 0; i < works.size(); ++i) {
    ASSERT_EQ(works[i].status, SrtpStatus::kOk) << i;
    ASSERT_EQ(works[i].out(), plain[i]) << i;
    ASSERT_TRUE(works[i].canary_intact()) << i;
  }
}

TEST_P(EngineSuite, ProtectEqualsLibsrtp) {
  ProtectAgainstLibsrtp(*engine_, kind_, suite_, {}, 1);
  ExpectDeviceUsed(400);
}

TEST_P(EngineSuite, UnprotectWhatLibsrtpProtects) {
  UnprotectFromLibsrtp(*engine_, kind_, suite_, {}, 2);
  ExpectDeviceUsed(400);
}

TEST_P(EngineSuite, MkiBothWays) {
  for (const Bytes& mki : {Bytes{0x42}, Bytes{0xde, 0xad, 0xbe, 0xef}, Bytes(16, 0x5c)}) {
    ProtectAgainstLibsrtp(*engine_, kind_, suite_, mki, 3);
    UnprotectFromLibsrtp(*engine_, kind_, suite_, mki, 4);
  }
  ExpectDeviceUsed(2000);
}

TEST_P(EngineSuite, RtcpBothWays) {
  for (const Bytes& mki : {Bytes{}, Bytes{1, 2, 3}}) {
    std::mt19937 rng(5);
    const Keys k = RandomKeys(suite_, rng);
    auto tx = MakeCtx(kind_, suite_, k, mki);
    auto rx = MakeCtx(kind_, suite_, k, mki);
    ASSERT_NE(tx, nullptr);
    ASSERT_NE(rx, nullptr);
    tx->SetNextSrtcpIndex(1);  // as libsrtp2 (a kLibsrtp context numbers them itself)
    LibSrtp l_tx(suite_, k.KeySalt(), true, mki);
    LibSrtp l_rx(suite_, k.KeySalt(), false, mki);
    std::vector<Work> prot, unprot;
    std::vector<Bytes> plain, from_lib;
    for (int i = 0; i < 200; ++i) {
      plain.push_back(MakeRtcp(rng, 0x0badf00d));
      prot.emplace_back(tx.get(), SrtpOp::kProtectRtcp, plain.back());
      Bytes lib = plain.back();
      ASSERT_EQ(l_tx.Protect(&lib, true), srtp_err_status_ok);
      from_lib.push_back(lib);
    }
    RunBursts(*engine_, prot, rng);
    for (size_t i = 0; i < prot.size(); ++i) {
      ASSERT_EQ(prot[i].status, SrtpStatus::kOk) << i;
      ASSERT_TRUE(prot[i].canary_intact());
      Bytes out = prot[i].out();
      ASSERT_EQ(out, from_lib[i]) << i;  // byte for byte, E||index and MKI included
      if (LibsrtpReadsRtcpMki(suite_, mki)) {
        ASSERT_EQ(l_rx.Unprotect(&out, true), srtp_err_status_ok) << i;
        ASSERT_EQ(out, plain[i]);
      }
    }
    // libsrtp2's packets, reordered inside blocks of 64, then a repeat.
    std::vector<size_t> order(plain.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (size_t i = 0; i < order.size(); i += 64) {
      std::shuffle(order.begin() + static_cast<long>(i),
                   order.begin() + static_cast<long>(std::min(i + 64, order.size())), rng);
    }
    for (size_t i : order) unprot.emplace_back(rx.get(), SrtpOp::kUnprotectRtcp, from_lib[i], 0);
    unprot.emplace_back(rx.get(), SrtpOp::kUnprotectRtcp, from_lib.back(), 0);
    RunBursts(*engine_, unprot, rng);
    const bool lib_mki_bug = kind_ == SrtpEngineKind::kLibsrtp && !LibsrtpReadsRtcpMki(suite_, mki);
    for (size_t j = 0; j < order.size(); ++j) {
      if (lib_mki_bug) {  // libsrtp2's own limitation, as above
        EXPECT_EQ(unprot[j].status, SrtpStatus::kAuthFailed);
        continue;
      }
      ASSERT_EQ(unprot[j].status, SrtpStatus::kOk) << j;
      ASSERT_EQ(unprot[j].out(), plain[order[j]]);
    }
    if (!lib_mki_bug) {
      EXPECT_EQ(unprot.back().status, SrtpStatus::kReplay);
    }
  }
  ExpectDeviceUsed(600);
}

// SRTCP with E=0 (authenticated only) from libsrtp2.
TEST_P(EngineSuite, UnencryptedSrtcpFromLibsrtp) {
  std::mt19937 rng(6);
  const Keys k = RandomKeys(suite_, rng);
  auto rx = MakeCtx(kind_, suite_, k);
  LibSrtp l_tx(suite_, k.KeySalt(), true, {}, true);
  std::vector<Work> works;
  std::vector<Bytes> plain;
  for (int i = 0; i < 40; ++i) {
    plain.push_back(MakeRtcp(rng, 0x5150));
    Bytes lib = plain.back();
    ASSERT_EQ(l_tx.Protect(&lib, true), srtp_err_status_ok);
    works.emplace_back(rx.get(), SrtpOp::kUnprotectRtcp, lib, 0);
  }
  RunBursts(*engine_, works, rng);
  for (size_t i = 0; i < works.size(); ++i) {
    if (kind_ == SrtpEngineKind::kLibsrtp && !IsGcm(suite_)) {
      // libsrtp2 2.5 (AES-CM path) wants the E bit to match its policy, which for a
      // kLibsrtp context is confidentiality: srtp_err_status_cant_check.
      EXPECT_EQ(works[i].status, SrtpStatus::kAuthFailed) << i;
      continue;
    }
    ASSERT_EQ(works[i].status, SrtpStatus::kOk) << i;
    ASSERT_EQ(works[i].out(), plain[i]);
  }
  // AES-CM: on the device path (a NULL cipher with the HMAC); GCM's AAD then is not 12
  // octets, so those run in software.
  ExpectDeviceUsed(IsGcm(suite_) ? 0 : works.size());
}

// Reordered (shuffled in blocks of 32, each block one burst) and gapped packets across a
// SEQ wrap are all accepted once; repeats and too-old packets are replays.
TEST_P(EngineSuite, ReorderingGapsAndReplay) {
  std::mt19937 rng(7);
  const Keys k = RandomKeys(suite_, rng);
  auto rx = MakeCtx(kind_, suite_, k);
  LibSrtp l_tx(suite_, k.KeySalt(), true);
  std::vector<Bytes> plain, srtp;
  uint16_t seq = 65000;
  for (int i = 0; i < 1024; ++i) {
    plain.push_back(MakeRandomRtp(rng, seq, 0xcafebabe, 300));
    Bytes b = plain.back();
    ASSERT_EQ(l_tx.Protect(&b), srtp_err_status_ok);
    srtp.push_back(b);
    seq = static_cast<uint16_t>(seq + 1 + (rng() % 10 == 0 ? 1 : 0));
  }
  std::vector<size_t> order;
  for (size_t i = 0; i < srtp.size(); ++i) {
    if (i % 13 != 5) order.push_back(i);  // lost packets
  }
  for (size_t i = 0; i < order.size(); i += 32) {
    std::shuffle(order.begin() + static_cast<long>(i),
                 order.begin() + static_cast<long>(std::min(i + 32, order.size())), rng);
  }
  std::vector<Work> works;
  for (size_t i : order) works.emplace_back(rx.get(), SrtpOp::kUnprotect, srtp[i], 0);
  // Repeats of the last ones (inside the window) and of the first (far too old).
  for (size_t i = srtp.size() - 20; i < srtp.size(); ++i) {
    if (i % 13 != 5) works.emplace_back(rx.get(), SrtpOp::kUnprotect, srtp[i], 0);
  }
  works.emplace_back(rx.get(), SrtpOp::kUnprotect, srtp[0], 0);
  std::mt19937 burst_rng(8);
  RunBursts(*engine_, works, burst_rng, 32);
  for (size_t j = 0; j < order.size(); ++j) {
    ASSERT_EQ(works[j].status, SrtpStatus::kOk) << j;
    ASSERT_EQ(works[j].out(), plain[order[j]]);
  }
  for (size_t j = order.size(); j < works.size(); ++j) {
    EXPECT_EQ(works[j].status, SrtpStatus::kReplay) << j;
  }
}

// Inside one burst: a packet and its copy, a tampered packet before the genuine one, a
// packet with a wrong MKI, a forged far jump: verdicts as if one at a time, and the
// stream carries on.
TEST_P(EngineSuite, ReplayAndTamperInsideOneBurst) {
  std::mt19937 rng(9);
  const Keys k = RandomKeys(suite_, rng);
  const Bytes mki = {7, 7};
  auto rx = MakeCtx(kind_, suite_, k, mki);
  LibSrtp l_tx(suite_, k.KeySalt(), true, mki);
  std::vector<Bytes> plain, srtp;
  for (uint16_t seq = 100; seq < 110; ++seq) {
    plain.push_back(MakeRtp(rng, seq, 0xabc, 80));
    Bytes b = plain.back();
    ASSERT_EQ(l_tx.Protect(&b), srtp_err_status_ok);
    srtp.push_back(b);
  }
  Bytes tampered_payload = srtp[1];
  tampered_payload[20] ^= 0x01;
  Bytes tampered_tag = srtp[2];
  tampered_tag.back() ^= 0x80;
  Bytes wrong_mki = srtp[3];  // AES-CM: MKI || tag; GCM: tag || MKI
  wrong_mki[wrong_mki.size() - 1 - (IsGcm(suite_) ? 0 : GetSrtpSuiteInfo(suite_).rtp_tag_len)] ^=
      0xff;
  Bytes forged_jump = srtp[4];
  forged_jump[2] = 0x40;  // SEQ 16000 ahead (still ROC 0); the tag no longer matches
  std::vector<Work> works;
  works.emplace_back(rx.get(), SrtpOp::kUnprotect, srtp[0], 0);
  works.emplace_back(rx.get(), SrtpOp::kUnprotect, srtp[0], 0);           // repeat
  works.emplace_back(rx.get(), SrtpOp::kUnprotect, tampered_payload, 0);  // auth fails
  works.emplace_back(rx.get(), SrtpOp::kUnprotect, srtp[1], 0);           // then genuine
  works.emplace_back(rx.get(), SrtpOp::kUnprotect, tampered_tag, 0);
  works.emplace_back(rx.get(), SrtpOp::kUnprotect, wrong_mki, 0);
  works.emplace_back(rx.get(), SrtpOp::kUnprotect, forged_jump, 0);
  works.emplace_back(rx.get(), SrtpOp::kUnprotect, srtp[2], 0);
  works.emplace_back(rx.get(), SrtpOp::kUnprotect, srtp[3], 0);
  works.emplace_back(rx.get(), SrtpOp::kUnprotect, srtp[4], 0);
  works.emplace_back(rx.get(), SrtpOp::kUnprotect, srtp[1], 0);  // repeat
  std::mt19937 one_burst(0);
  RunBursts(*engine_, works, one_burst, works.size());
  const SrtpStatus expect[] = {
      SrtpStatus::kOk,         SrtpStatus::kReplay,     SrtpStatus::kAuthFailed, SrtpStatus::kOk,
      SrtpStatus::kAuthFailed, SrtpStatus::kAuthFailed, SrtpStatus::kAuthFailed, SrtpStatus::kOk,
      SrtpStatus::kOk,         SrtpStatus::kOk,         SrtpStatus::kReplay};
  for (size_t i = 0; i < works.size(); ++i) EXPECT_EQ(works[i].status, expect[i]) << i;
  EXPECT_EQ(works[3].out(), plain[1]);
  EXPECT_EQ(works[9].out(), plain[4]);
  EXPECT_EQ(rx->highest_rx_index(), 104u);
  std::vector<Work> rest;
  for (size_t i = 5; i < srtp.size(); ++i)
    rest.emplace_back(rx.get(), SrtpOp::kUnprotect, srtp[i], 0);
  RunBursts(*engine_, rest, one_burst, rest.size());
  for (size_t i = 0; i < rest.size(); ++i) {
    EXPECT_EQ(rest[i].status, SrtpStatus::kOk) << i;
    EXPECT_EQ(rest[i].out(), plain[5 + i]);
  }
}

TEST_P(EngineSuite, NoRoomTooShortAndExactCapacity) {
  std::mt19937 rng(10);
  const Keys k = RandomKeys(suite_, rng);
  auto tx = MakeCtx(kind_, suite_, k);
  auto rx = MakeCtx(kind_, suite_, k);
  const Bytes rtp = MakeRtp(rng, 1, 0x77, 50);
  const Bytes rtcp = MakeRtcp(rng, 0x77);
  std::vector<Work> works;
  works.emplace_back(tx.get(), SrtpOp::kProtect, rtp, tx->RtpTrailerLen() - 1);
  works.emplace_back(tx.get(), SrtpOp::kProtectRtcp, rtcp, tx->RtcpTrailerLen() - 1);
  works.emplace_back(tx.get(), SrtpOp::kProtect, Bytes(rtp.begin(), rtp.begin() + 11));
  works.emplace_back(tx.get(), SrtpOp::kProtectRtcp, Bytes(rtcp.begin(), rtcp.begin() + 7));
  works.emplace_back(rx.get(), SrtpOp::kUnprotect, Bytes(rtp.begin(), rtp.begin() + 12), 0);
  works.emplace_back(rx.get(), SrtpOp::kUnprotectRtcp, Bytes(rtcp.begin(), rtcp.begin() + 12), 0);
  // Exactly the room the trailer needs: fine, and the canary right behind stays.
  works.emplace_back(tx.get(), SrtpOp::kProtect, rtp, tx->RtpTrailerLen());
  works.emplace_back(tx.get(), SrtpOp::kProtectRtcp, rtcp, tx->RtcpTrailerLen());
  std::mt19937 one_burst(0);
  RunBursts(*engine_, works, one_burst, works.size());
  const SrtpStatus expect[] = {SrtpStatus::kNoRoom,   SrtpStatus::kNoRoom,   SrtpStatus::kTooShort,
                               SrtpStatus::kTooShort, SrtpStatus::kTooShort, SrtpStatus::kTooShort,
                               SrtpStatus::kOk,       SrtpStatus::kOk};
  for (size_t i = 0; i < works.size(); ++i) {
    EXPECT_EQ(works[i].status, expect[i]) << i;
    EXPECT_TRUE(works[i].canary_intact()) << i;
  }
  std::vector<Work> back;
  back.emplace_back(rx.get(), SrtpOp::kUnprotect, works[6].out(), 0);
  back.emplace_back(rx.get(), SrtpOp::kUnprotectRtcp, works[7].out(), 0);
  RunBursts(*engine_, back, one_burst, back.size());
  EXPECT_EQ(back[0].status, SrtpStatus::kOk);
  EXPECT_EQ(back[0].out(), rtp);
  EXPECT_EQ(back[1].status, SrtpStatus::kOk);
  EXPECT_EQ(back[1].out(), rtcp);
}

// The single-packet calls of each kind agree with libsrtp2.
TEST_P(EngineSuite, SinglePacketCalls) {
  std::mt19937 rng(11);
  const Keys k = RandomKeys(suite_, rng);
  auto tx = MakeCtx(kind_, suite_, k);
  auto rx = MakeCtx(kind_, suite_, k);
  LibSrtp l_tx(suite_, k.KeySalt(), true);
  LibSrtp l_rx(suite_, k.KeySalt(), false);
  for (uint16_t seq = 500; seq < 520; ++seq) {
    const Bytes plain = MakeRtp(rng, seq, 0x99, 100);
    Bytes karl = plain;
    karl.resize(plain.size() + kSrtpMaxTrailerLen);
    uint32_t len = static_cast<uint32_t>(plain.size());
    ASSERT_EQ(tx->Protect(karl.data(), &len, static_cast<uint32_t>(karl.size())), SrtpStatus::kOk);
    karl.resize(len);
    Bytes lib = plain;
    ASSERT_EQ(l_tx.Protect(&lib), srtp_err_status_ok);
    ASSERT_EQ(karl, lib);
    len = static_cast<uint32_t>(lib.size());
    ASSERT_EQ(rx->Unprotect(lib.data(), &len), SrtpStatus::kOk);
    lib.resize(len);
    ASSERT_EQ(lib, plain);
    ASSERT_EQ(l_rx.Unprotect(&karl), srtp_err_status_ok);
    ASSERT_EQ(karl, plain);
  }
  EXPECT_EQ(tx->highest_tx_index(), 519u);
  EXPECT_EQ(rx->highest_rx_index(), 519u);
}

INSTANTIATE_TEST_SUITE_P(AllEnginesAllSuites, EngineSuite,
                         ::testing::Combine(::testing::ValuesIn(kAllEngines),
                                            ::testing::ValuesIn(kAllSuites)),
                         [](const ::testing::TestParamInfo<EngineSuite::ParamType>& info) {
                           return ParamName(std::get<0>(info.param), std::get<1>(info.param));
                         });

// ---- ROC wrap: > 65,536 packets, two suites per engine ----------------------------------------

class RocWrap : public EngineSuite {};

TEST_P(RocWrap, BothWaysAcrossTheWrap) {
  std::mt19937 rng(12);
  const Keys k = RandomKeys(suite_, rng);
  auto tx = MakeCtx(kind_, suite_, k);
  auto rx = MakeCtx(kind_, suite_, k);
  LibSrtp l_tx(suite_, k.KeySalt(), true);
  LibSrtp l_rx(suite_, k.KeySalt(), false);
  constexpr int kPackets = 70000;
  constexpr int kBurst = 32;
  uint16_t seq = 65500;
  std::vector<Work> prot, unprot;
  std::vector<Bytes> plain;
  for (int done = 0; done < kPackets; done += kBurst) {
    prot.clear();
    unprot.clear();
    plain.clear();
    for (int i = 0; i < kBurst; ++i, ++seq) {
      plain.push_back(MakeRtp(rng, seq, 0x12345678, 20 + rng() % 60));
      prot.emplace_back(tx.get(), SrtpOp::kProtect, plain.back());
      Bytes lib = plain.back();
      ASSERT_EQ(l_tx.Protect(&lib), srtp_err_status_ok);
      unprot.emplace_back(rx.get(), SrtpOp::kUnprotect, lib, 0);
    }
    std::mt19937 one_burst(0);
    RunBursts(*engine_, prot, one_burst, kBurst);
    RunBursts(*engine_, unprot, one_burst, kBurst);
    for (int i = 0; i < kBurst; ++i) {
      ASSERT_EQ(prot[i].status, SrtpStatus::kOk) << done + i;
      Bytes out = prot[i].out();
      ASSERT_EQ(l_rx.Unprotect(&out), srtp_err_status_ok) << done + i;
      ASSERT_EQ(out, plain[i]);
      ASSERT_EQ(unprot[i].status, SrtpStatus::kOk) << done + i;
      ASSERT_EQ(unprot[i].out(), plain[i]);
    }
  }
  // 65500 + 70016 - 1 = 135515: ROC 2.
  EXPECT_EQ(tx->highest_tx_index(), 135515u);
  EXPECT_EQ(rx->highest_rx_index(), 135515u);
  ExpectDeviceUsed(2 * kPackets);
}

INSTANTIATE_TEST_SUITE_P(AllEngines, RocWrap,
                         ::testing::Combine(::testing::ValuesIn(kAllEngines),
                                            ::testing::Values(SrtpSuite::kAesCm128HmacSha1_80,
                                                              SrtpSuite::kAeadAes128Gcm)),
                         [](const ::testing::TestParamInfo<EngineSuite::ParamType>& info) {
                           return ParamName(std::get<0>(info.param), std::get<1>(info.param));
                         });

// ---- Per-SSRC state (RFC 3711 §3.2.3), every engine x every suite -----------------------------

class SsrcSlots : public EngineSuite {
 protected:
  // One SSRC of a sender: its own SEQ.
  struct Source {
    uint32_t ssrc;
    uint16_t seq;
  };

  // Karl protects `plain` (bursts of random size) and must equal `expect` (libsrtp2's
  // packets), which libsrtp2's receiver `l_rx` takes; Karl's receiver `rx` takes `expect`
  // in the same order (other bursts). Every packet passes both ways.
  void BothWays(SrtpContext* tx, SrtpContext* rx, LibSrtp& l_rx, const std::vector<Bytes>& plain,
                const std::vector<Bytes>& expect, std::mt19937& rng, bool rtcp = false) {
    std::vector<Work> prot, unprot;
    for (size_t i = 0; i < plain.size(); ++i) {
      prot.emplace_back(tx, rtcp ? SrtpOp::kProtectRtcp : SrtpOp::kProtect, plain[i]);
      unprot.emplace_back(rx, rtcp ? SrtpOp::kUnprotectRtcp : SrtpOp::kUnprotect, expect[i], 0);
    }
    RunBursts(*engine_, prot, rng);
    RunBursts(*engine_, unprot, rng);
    for (size_t i = 0; i < plain.size(); ++i) {
      ASSERT_EQ(prot[i].status, SrtpStatus::kOk) << i;
      ASSERT_TRUE(prot[i].canary_intact()) << i;
      Bytes out = prot[i].out();
      ASSERT_EQ(out, expect[i]) << "packet " << i;
      ASSERT_EQ(l_rx.Unprotect(&out, rtcp), srtp_err_status_ok) << i;
      ASSERT_EQ(out, plain[i]) << i;
      ASSERT_EQ(unprot[i].status, SrtpStatus::kOk) << i;
      ASSERT_EQ(unprot[i].out(), plain[i]) << i;
    }
  }
};

// Two SSRCs under one key, interleaved at random: A crosses a ROC wrap while B starts near
// SEQ 0 (estimated against A's index, B would get ROC + 1). Byte for byte with libsrtp2.
TEST_P(SsrcSlots, TwoSsrcsInterleavedAcrossARocWrap) {
  std::mt19937 rng(31);
  const Keys k = RandomKeys(suite_, rng);
  auto tx = MakeCtx(kind_, suite_, k);
  auto rx = MakeCtx(kind_, suite_, k);
  LibSrtp l_tx(suite_, k.KeySalt(), true);
  LibSrtp l_rx(suite_, k.KeySalt(), false);
  Source src[2] = {{0xa0a0a0a0, 65450}, {0xb0b0b0b0, 2}};
  std::vector<Bytes> plain, expect;
  for (int i = 0; i < 400; ++i) {
    Source& s = src[rng() % 2];
    plain.push_back(MakeRandomRtp(rng, s.seq++, s.ssrc, 300));
    expect.push_back(plain.back());
    ASSERT_EQ(l_tx.Protect(&expect.back()), srtp_err_status_ok);
  }
  ASSERT_NO_FATAL_FAILURE(BothWays(tx.get(), rx.get(), l_rx, plain, expect, rng));
  ASSERT_LT(src[0].seq, 1000u);  // A wrapped: ROC 1
  const uint64_t a_last = (uint64_t{1} << 16) | static_cast<uint16_t>(src[0].seq - 1);
  const uint64_t b_last = static_cast<uint16_t>(src[1].seq - 1);
  EXPECT_EQ(tx->highest_tx_index(src[0].ssrc), a_last);
  EXPECT_EQ(rx->highest_rx_index(src[0].ssrc), a_last);
  EXPECT_EQ(tx->highest_tx_index(src[1].ssrc), b_last);
  EXPECT_EQ(rx->highest_rx_index(src[1].ssrc), b_last);
  ExpectDeviceUsed(450);  // GCM with CSRCs or an extension runs in software
}

// The sender changes SSRC (transfer, music on hold): the old one stops at SEQ 40000, the
// new one starts at a random SEQ (the first below 7232, where an index estimated against
// the old SSRC's would get ROC + 1), then another. Nothing is dropped either way.
TEST_P(SsrcSlots, SsrcChangeMidStream) {
  std::mt19937 rng(32);
  const Keys k = RandomKeys(suite_, rng);
  auto tx = MakeCtx(kind_, suite_, k);
  auto rx = MakeCtx(kind_, suite_, k);
  LibSrtp l_tx(suite_, k.KeySalt(), true);
  LibSrtp l_rx(suite_, k.KeySalt(), false);
  const Source sources[] = {{0x1111, 39801},
                            {0x2222, static_cast<uint16_t>(rng() % 7000)},
                            {0x3333, static_cast<uint16_t>(rng())}};
  std::vector<Bytes> plain, expect;
  for (const Source& s : sources) {
    for (uint16_t i = 0; i < 200; ++i) {
      plain.push_back(MakeRandomRtp(rng, static_cast<uint16_t>(s.seq + i), s.ssrc, 200));
      expect.push_back(plain.back());
      ASSERT_EQ(l_tx.Protect(&expect.back()), srtp_err_status_ok);
    }
  }
  ASSERT_EQ(plain[199][2] << 8 | plain[199][3], 40000);
  ASSERT_NO_FATAL_FAILURE(BothWays(tx.get(), rx.get(), l_rx, plain, expect, rng));
  EXPECT_EQ(rx->highest_rx_index(0x1111), 40000u);
  EXPECT_EQ(rx->highest_rx_index(), uint64_t{sources[2].seq} + 199) << "the SSRC used last";
}

// More SSRCs than slots (kSsrcSlots = 4). The least recently used SSRC's state goes; when
// it comes back it starts afresh: Karl's engines accept its old packets again (the replay
// list went with the slot) and send it from ROC 0 again. libsrtp2 keeps every SSRC.
TEST_P(SsrcSlots, MoreSsrcsThanSlotsReusesTheLeastRecentlyUsed) {
  ASSERT_EQ(SrtpContext::kSsrcSlots, 4u);
  std::mt19937 rng(33);
  const Keys k = RandomKeys(suite_, rng);
  auto tx = MakeCtx(kind_, suite_, k);
  auto rx = MakeCtx(kind_, suite_, k);
  LibSrtp l_tx(suite_, k.KeySalt(), true);
  LibSrtp l_rx(suite_, k.KeySalt(), false);
  const bool karl_framing = kind_ != SrtpEngineKind::kLibsrtp;
  auto srtp = [&](uint16_t seq, uint32_t ssrc) {
    Bytes p = MakeRtp(rng, seq, ssrc, 60);
    EXPECT_EQ(l_tx.Protect(&p), srtp_err_status_ok);
    return p;
  };
  auto unprotect = [&](const Bytes& p) {
    Work w(rx.get(), SrtpOp::kUnprotect, p, 0);
    RunOne(*engine_, w);
    return w.status;
  };
  // Receiving: SSRCs 1-4 fill the slots, 1 is used again, 5 takes the least recently used
  // slot (SSRC 2's).
  std::vector<Bytes> first(6);
  for (uint32_t ssrc = 1; ssrc <= 4; ++ssrc) {
    first[ssrc] = srtp(static_cast<uint16_t>(100 * ssrc), ssrc);
    ASSERT_EQ(unprotect(first[ssrc]), SrtpStatus::kOk);
  }
  ASSERT_EQ(unprotect(srtp(101, 1)), SrtpStatus::kOk);
  ASSERT_EQ(unprotect(srtp(500, 5)), SrtpStatus::kOk);
  EXPECT_EQ(rx->highest_rx_index(2), std::nullopt);
  for (uint32_t ssrc : {1u, 3u, 4u, 5u}) EXPECT_NE(rx->highest_rx_index(ssrc), std::nullopt);
  // SSRC 2 comes back: a fresh state, so its first packet is accepted again by Karl's
  // framing; libsrtp2 still knows it was seen. Its next packet passes either way, and SSRC
  // 3 (now the least recently used) makes room.
  EXPECT_EQ(unprotect(first[2]), karl_framing ? SrtpStatus::kOk : SrtpStatus::kReplay);
  EXPECT_EQ(unprotect(srtp(201, 2)), SrtpStatus::kOk);
  EXPECT_EQ(rx->highest_rx_index(2), 201u);
  EXPECT_EQ(rx->highest_rx_index(3), std::nullopt);
  EXPECT_EQ(unprotect(first[1]), SrtpStatus::kReplay) << "SSRC 1 kept its replay list";

  // Sending: SSRC 1 wraps to ROC 1, 2-4 fill the slots, 5 evicts 1. When 1 comes back
  // Karl's framing starts it at ROC 0 again, which a receiver that kept SSRC 1's ROC
  // (libsrtp2 here) rejects; a kLibsrtp context's libsrtp2 kept ROC 1.
  std::vector<Work> sent;
  auto protect = [&](uint16_t seq, uint32_t ssrc) {
    Work w(tx.get(), SrtpOp::kProtect, MakeRtp(rng, seq, ssrc, 60));
    RunOne(*engine_, w);
    EXPECT_EQ(w.status, SrtpStatus::kOk);
    Bytes out = w.out();
    return l_rx.Unprotect(&out);
  };
  ASSERT_EQ(protect(65535, 1), srtp_err_status_ok);
  ASSERT_EQ(protect(0, 1), srtp_err_status_ok);
  for (uint32_t ssrc = 2; ssrc <= 5; ++ssrc) ASSERT_EQ(protect(7, ssrc), srtp_err_status_ok);
  EXPECT_EQ(tx->highest_tx_index(1), std::nullopt);
  EXPECT_EQ(protect(1, 1), karl_framing ? srtp_err_status_auth_fail : srtp_err_status_ok);
  if (karl_framing) {
    EXPECT_EQ(tx->highest_tx_index(1), 1u);
  }
}

// Forged packets (bad tags) of new SSRCs, in bursts with genuine ones, while every slot
// holds a live SSRC: none is evicted or disturbed, and the forged SSRCs get no slot.
TEST_P(SsrcSlots, ForgedNewSsrcsEvictNothing) {
  std::mt19937 rng(34);
  const Keys k = RandomKeys(suite_, rng);
  auto rx = MakeCtx(kind_, suite_, k);
  LibSrtp l_tx(suite_, k.KeySalt(), true);
  struct Live {
    uint32_t ssrc;
    uint64_t next;  // index of its next packet (ROC 0 at the start)
  };
  std::vector<Live> live = {{0x10, 1000}, {0x20, 65530}, {0x30, 7}, {0x40, 30000}};
  // The forger: a sender of its own (Karl's software one repeats SEQs without complaint).
  auto forger = MakeCtx(SrtpEngineKind::kOpenssl, suite_, k);
  std::vector<Bytes> history;
  std::vector<Work> works;
  std::vector<SrtpStatus> want;
  auto genuine = [&](Live& s) {
    Bytes p = MakeRtp(rng, static_cast<uint16_t>(s.next++), s.ssrc, 40);
    EXPECT_EQ(l_tx.Protect(&p), srtp_err_status_ok);
    history.push_back(p);
    works.emplace_back(rx.get(), SrtpOp::kUnprotect, p, 0);
    want.push_back(SrtpStatus::kOk);
  };
  for (int round = 0; round < 3; ++round) {
    for (Live& s : live) genuine(s);
  }
  for (uint32_t i = 0; i < 60; ++i) {
    if (rng() % 2 == 0) {
      genuine(live[rng() % live.size()]);
      continue;
    }
    // A forged packet (bad tag) of a new SSRC or, sometimes, of a live one far ahead.
    const Live& target = live[rng() % live.size()];
    const bool of_live = rng() % 4 == 0;
    const uint32_t ssrc = of_live ? target.ssrc : 0x1000u + i;
    const uint16_t seq =
        of_live ? static_cast<uint16_t>(target.next + 20000) : static_cast<uint16_t>(rng());
    Work w(forger.get(), SrtpOp::kProtect, MakeRtp(rng, seq, ssrc, 40));
    RunOne(*engine_, w);
    ASSERT_EQ(w.status, SrtpStatus::kOk);
    Bytes p = w.out();
    p.back() ^= 0x20;  // in the tag (AES-CM: MKI || tag; GCM: tag; no MKI here)
    works.emplace_back(rx.get(), SrtpOp::kUnprotect, p, 0);
    want.push_back(SrtpStatus::kAuthFailed);
  }
  for (int i = 0; i < 5; ++i) {  // earlier genuine packets again
    works.emplace_back(rx.get(), SrtpOp::kUnprotect, history[rng() % history.size()], 0);
    want.push_back(SrtpStatus::kReplay);
  }
  RunBursts(*engine_, works, rng, 40);
  for (size_t i = 0; i < works.size(); ++i) EXPECT_EQ(works[i].status, want[i]) << i;
  for (const Live& s : live) EXPECT_EQ(rx->highest_rx_index(s.ssrc), s.next - 1) << s.ssrc;
  for (uint32_t i = 0; i < 60; ++i) EXPECT_EQ(rx->highest_rx_index(0x1000u + i), std::nullopt);
}

// Replay protection is per SSRC: SSRC A's packets are still refused after SSRC B has sent
// thousands (through a ROC wrap), and B's after A carries on.
TEST_P(SsrcSlots, ReplayIsPerSsrc) {
  std::mt19937 rng(35);
  const Keys k = RandomKeys(suite_, rng);
  auto rx = MakeCtx(kind_, suite_, k);
  LibSrtp l_tx(suite_, k.KeySalt(), true);
  std::vector<Work> works;
  std::vector<Bytes> a, b;
  for (uint16_t seq = 1000; seq < 1020; ++seq) {
    a.push_back(MakeRtp(rng, seq, 0xaaaa, 20));
    ASSERT_EQ(l_tx.Protect(&a.back()), srtp_err_status_ok);
    works.emplace_back(rx.get(), SrtpOp::kUnprotect, a.back(), 0);
  }
  for (int i = 0; i < 3000; ++i) {
    b.push_back(MakeRtp(rng, static_cast<uint16_t>(64000 + i), 0xbbbb, 20));
    ASSERT_EQ(l_tx.Protect(&b.back()), srtp_err_status_ok);
    works.emplace_back(rx.get(), SrtpOp::kUnprotect, b.back(), 0);
  }
  const size_t genuine = works.size();
  for (const Bytes& p : a) works.emplace_back(rx.get(), SrtpOp::kUnprotect, p, 0);
  Bytes next_a = MakeRtp(rng, 1020, 0xaaaa, 20);
  ASSERT_EQ(l_tx.Protect(&next_a), srtp_err_status_ok);
  works.emplace_back(rx.get(), SrtpOp::kUnprotect, next_a, 0);
  for (size_t i = b.size() - 10; i < b.size(); ++i) {
    works.emplace_back(rx.get(), SrtpOp::kUnprotect, b[i], 0);
  }
  RunBursts(*engine_, works, rng, 64);
  for (size_t i = 0; i < works.size(); ++i) {
    const bool replay = i >= genuine && i != genuine + a.size();
    ASSERT_EQ(works[i].status, replay ? SrtpStatus::kReplay : SrtpStatus::kOk) << i;
  }
  EXPECT_EQ(rx->highest_rx_index(0xaaaa), 1020u);
  EXPECT_EQ(rx->highest_rx_index(0xbbbb), (uint64_t{1} << 16) | uint16_t(64000 + 2999));
}

// SRTCP from two sender SSRCs (RFC 3711 §3.4: an index and a replay list per SSRC): Karl
// protects byte for byte as libsrtp2 (each SSRC counts from 1 there), and takes libsrtp2's
// packets reordered within each SSRC, refusing repeats of either.
TEST_P(SsrcSlots, SrtcpFromTwoSenderSsrcs) {
  std::mt19937 rng(36);
  const Keys k = RandomKeys(suite_, rng);
  auto tx = MakeCtx(kind_, suite_, k);
  auto rx = MakeCtx(kind_, suite_, k);
  tx->SetNextSrtcpIndex(1);
  LibSrtp l_tx(suite_, k.KeySalt(), true);
  LibSrtp l_rx(suite_, k.KeySalt(), false);
  const uint32_t ssrc[2] = {0x5a5a0001, 0x5a5a0002};
  std::vector<Bytes> plain, expect;
  std::vector<int> who;
  for (int i = 0; i < 200; ++i) {
    const int s = rng() % 4 == 0 ? 1 : 0;  // A sends three times as much
    plain.push_back(MakeRtcp(rng, ssrc[s]));
    expect.push_back(plain.back());
    ASSERT_EQ(l_tx.Protect(&expect.back(), true), srtp_err_status_ok);
    who.push_back(s);
  }
  // In order both ways first.
  ASSERT_NO_FATAL_FAILURE(BothWays(tx.get(), rx.get(), l_rx, plain, expect, rng, true));
  // Then a second receiver gets them reordered within each SSRC (blocks of 16 per SSRC,
  // the SSRCs still interleaved), then a repeat of each SSRC's first and last.
  auto rx2 = MakeCtx(kind_, suite_, k);
  std::vector<size_t> of[2];
  for (size_t i = 0; i < who.size(); ++i) of[who[i]].push_back(i);
  for (auto& v : of) {
    for (size_t i = 0; i < v.size(); i += 16) {
      std::shuffle(v.begin() + static_cast<long>(i),
                   v.begin() + static_cast<long>(std::min(i + 16, v.size())), rng);
    }
  }
  std::vector<size_t> order;
  size_t next[2] = {0, 0};
  for (int w : who) order.push_back(of[w][next[w]++]);
  std::vector<Work> works;
  for (size_t i : order) works.emplace_back(rx2.get(), SrtpOp::kUnprotectRtcp, expect[i], 0);
  for (int s : {0, 1}) {
    works.emplace_back(rx2.get(), SrtpOp::kUnprotectRtcp, expect[of[s].front()], 0);
    works.emplace_back(rx2.get(), SrtpOp::kUnprotectRtcp, expect[of[s].back()], 0);
  }
  RunBursts(*engine_, works, rng, 48);
  for (size_t j = 0; j < order.size(); ++j) {
    ASSERT_EQ(works[j].status, SrtpStatus::kOk) << j;
    ASSERT_EQ(works[j].out(), plain[order[j]]) << j;
  }
  for (size_t j = order.size(); j < works.size(); ++j) {
    EXPECT_EQ(works[j].status, SrtpStatus::kReplay) << j;
  }
  ExpectDeviceUsed(400);
}

INSTANTIATE_TEST_SUITE_P(AllEnginesAllSuites, SsrcSlots,
                         ::testing::Combine(::testing::ValuesIn(kAllEngines),
                                            ::testing::ValuesIn(kAllSuites)),
                         [](const ::testing::TestParamInfo<EngineSuite::ParamType>& info) {
                           return ParamName(std::get<0>(info.param), std::get<1>(info.param));
                         });

// ---- Bursts mixing contexts, suites and operations --------------------------------------------

class EngineMix : public ::testing::TestWithParam<SrtpEngineKind> {};

// Each burst holds, for every suite, three consecutive protects and three consecutive
// unprotects of one stream, an SRTCP protect and unprotect, in an order shuffled across
// contexts (each context's jobs keep their relative order).
TEST_P(EngineMix, MixedSuitesOpsAndContexts) {
  const SrtpEngineKind kind = GetParam();
  auto engine = CreateSrtpEngine(kind, 1);
  ASSERT_NE(engine, nullptr);
  std::mt19937 rng(13);
  struct Stream {
    SrtpSuite suite;
    std::unique_ptr<SrtpContext> tx, rx;
    std::unique_ptr<LibSrtp> l_tx, l_rx, l_tx_rtcp;
    uint16_t seq_out, seq_in;
  };
  std::vector<Stream> streams;
  for (SrtpSuite suite : kAllSuites) {
    for (int copy = 0; copy < 3; ++copy) {
      Stream s;
      s.suite = suite;
      const Keys out_keys = RandomKeys(suite, rng);
      const Keys in_keys = RandomKeys(suite, rng);
      s.tx = MakeCtx(kind, suite, out_keys);
      s.rx = MakeCtx(kind, suite, in_keys);
      ASSERT_NE(s.tx, nullptr);
      ASSERT_NE(s.rx, nullptr);
      s.tx->SetNextSrtcpIndex(1);
      s.l_rx = std::make_unique<LibSrtp>(suite, out_keys.KeySalt(), false);
      s.l_tx = std::make_unique<LibSrtp>(suite, in_keys.KeySalt(), true);
      s.seq_out = static_cast<uint16_t>(rng());
      s.seq_in = static_cast<uint16_t>(rng());
      streams.push_back(std::move(s));
    }
  }
  for (int round = 0; round < 20; ++round) {
    // Per stream its jobs in order; then merged at random.
    std::vector<std::vector<std::pair<Work, Bytes>>> per(streams.size());
    for (size_t si = 0; si < streams.size(); ++si) {
      Stream& s = streams[si];
      const uint32_t ssrc = 0x100u + static_cast<uint32_t>(si);
      for (int i = 0; i < 3; ++i) {
        Bytes p = MakeRtp(rng, s.seq_out++, ssrc, 160);
        per[si].emplace_back(Work(s.tx.get(), SrtpOp::kProtect, p), p);
        Bytes q = MakeRtp(rng, s.seq_in++, ssrc + 0x1000, 160);
        Bytes lib = q;
        ASSERT_EQ(s.l_tx->Protect(&lib), srtp_err_status_ok);
        per[si].emplace_back(Work(s.rx.get(), SrtpOp::kUnprotect, lib, 0), q);
      }
      Bytes c = MakeRtcp(rng, ssrc);
      per[si].emplace_back(Work(s.tx.get(), SrtpOp::kProtectRtcp, c), c);
      Bytes d = MakeRtcp(rng, ssrc + 0x1000);
      Bytes lib = d;
      ASSERT_EQ(s.l_tx->Protect(&lib, true), srtp_err_status_ok);
      per[si].emplace_back(Work(s.rx.get(), SrtpOp::kUnprotectRtcp, lib, 0), d);
    }
    std::vector<Work> works;
    std::vector<Bytes> plain;
    std::vector<size_t> stream_of;
    std::vector<size_t> next(streams.size(), 0);
    size_t left = 0;
    for (auto& v : per) left += v.size();
    while (left > 0) {
      const size_t si = rng() % streams.size();
      if (next[si] == per[si].size()) continue;
      works.push_back(per[si][next[si]].first);
      plain.push_back(per[si][next[si]].second);
      stream_of.push_back(si);
      ++next[si];
      --left;
    }
    std::mt19937 one_burst(0);
    RunBursts(*engine, works, one_burst, works.size());  // 144 jobs: three device chunks
    for (size_t i = 0; i < works.size(); ++i) {
      Stream& s = streams[stream_of[i]];
      ASSERT_EQ(works[i].status, SrtpStatus::kOk) << i;
      Bytes out = works[i].out();
      switch (works[i].op) {
        case SrtpOp::kProtect:
          ASSERT_EQ(s.l_rx->Unprotect(&out), srtp_err_status_ok) << i;
          break;
        case SrtpOp::kProtectRtcp:
          ASSERT_EQ(s.l_rx->Unprotect(&out, true), srtp_err_status_ok) << i;
          break;
        default:
          break;
      }
      ASSERT_EQ(out, plain[i]) << i;
    }
  }
  if (kind == SrtpEngineKind::kIpsecMb) {
    EXPECT_EQ(engine->stats().device_ops, engine->stats().jobs);
    EXPECT_EQ(engine->stats().software_jobs, 0u);
  }
}

// Real mbufs: pkt behind 42 octets of headers, the device reads through the mbuf; its
// lengths are as they were. Jobs with and without an mbuf share the burst.
TEST_P(EngineMix, MbufPathLeavesLengthsAlone) {
  const SrtpEngineKind kind = GetParam();
  auto engine = CreateSrtpEngine(kind, 0);
  ASSERT_NE(engine, nullptr);
  std::mt19937 rng(14);
  for (SrtpSuite suite : kAllSuites) {
    const Keys k = RandomKeys(suite, rng);
    auto tx = MakeCtx(kind, suite, k);
    auto rx = MakeCtx(kind, suite, k);
    LibSrtp l_rx(suite, k.KeySalt(), false);
    std::vector<rte_mbuf*> mbufs;
    std::vector<Bytes> plain;
    std::vector<SrtpJob> jobs;
    std::vector<Work> no_mbuf;
    for (uint16_t i = 0; i < 40; ++i) {
      plain.push_back(MakeRtp(rng, static_cast<uint16_t>(1000 + i), 0x4242, 160));
      if (i % 4 == 3) {
        no_mbuf.emplace_back(tx.get(), SrtpOp::kProtect, plain.back());
        continue;
      }
      rte_mbuf* m = rte_pktmbuf_alloc(g_mbuf_pool);
      ASSERT_NE(m, nullptr);
      char* p = rte_pktmbuf_append(m, static_cast<uint16_t>(42 + plain.back().size()));
      ASSERT_NE(p, nullptr);
      std::memcpy(p + 42, plain.back().data(), plain.back().size());
      mbufs.push_back(m);
    }
    // Build the burst in packet order.
    size_t mi = 0, wi = 0;
    for (uint16_t i = 0; i < 40; ++i) {
      SrtpJob j;
      j.ctx = tx.get();
      j.op = SrtpOp::kProtect;
      if (i % 4 == 3) {
        Work& w = no_mbuf[wi++];
        j.pkt = w.buf.data();
        j.len = w.len;
        j.capacity = w.capacity();
      } else {
        rte_mbuf* m = mbufs[mi++];
        j.mbuf = m;
        j.pkt = rte_pktmbuf_mtod_offset(m, uint8_t*, 42);
        j.len = static_cast<uint32_t>(plain[i].size());
        j.capacity = static_cast<uint32_t>(rte_pktmbuf_tailroom(m) + j.len);
      }
      jobs.push_back(j);
    }
    engine->Run(jobs.data(), static_cast<uint16_t>(jobs.size()));
    mi = 0;
    for (uint16_t i = 0; i < 40; ++i) {
      ASSERT_EQ(jobs[i].status, SrtpStatus::kOk) << i;
      if (jobs[i].mbuf != nullptr) {
        EXPECT_EQ(jobs[i].mbuf->data_len, 42 + plain[i].size());
        EXPECT_EQ(jobs[i].mbuf->pkt_len, 42 + plain[i].size());
      }
      Bytes out(jobs[i].pkt, jobs[i].pkt + jobs[i].len);
      ASSERT_EQ(l_rx.Unprotect(&out), srtp_err_status_ok) << i;
      ASSERT_EQ(out, plain[i]);
    }
    // And back through the mbufs (unprotect in place, lengths untouched).
    for (SrtpJob& j : jobs) {
      j.ctx = rx.get();
      j.op = SrtpOp::kUnprotect;
    }
    engine->Run(jobs.data(), static_cast<uint16_t>(jobs.size()));
    for (uint16_t i = 0; i < 40; ++i) {
      ASSERT_EQ(jobs[i].status, SrtpStatus::kOk) << i;
      ASSERT_EQ(Bytes(jobs[i].pkt, jobs[i].pkt + jobs[i].len), plain[i]);
      if (jobs[i].mbuf != nullptr) {
        EXPECT_EQ(jobs[i].mbuf->data_len, 42 + plain[i].size());
      }
    }
    for (rte_mbuf* m : mbufs) rte_pktmbuf_free(m);
  }
}

// Once warm (libsrtp2 streams exist, OpenSSL contexts keyed), the engines allocate nothing
// per packet.
TEST_P(EngineMix, NoHeapAllocationPerPacket) {
  const SrtpEngineKind kind = GetParam();
  ASSERT_TRUE(kCountingReady);
  auto engine = CreateSrtpEngine(kind, 0);
  std::mt19937 rng(15);
  std::vector<std::unique_ptr<SrtpContext>> tx, rx;
  for (SrtpSuite suite : kAllSuites) {
    const Keys k = RandomKeys(suite, rng);
    tx.push_back(MakeCtx(kind, suite, k));
    rx.push_back(MakeCtx(kind, suite, k));
  }
  constexpr size_t kPkts = 32;
  std::vector<Bytes> bufs(kPkts * tx.size(), Bytes(256 + kSrtpMaxTrailerLen));
  std::vector<SrtpJob> jobs(bufs.size());
  auto round = [&](uint16_t seq0) {
    for (size_t c = 0; c < tx.size(); ++c) {
      for (size_t i = 0; i < kPkts; ++i) {
        Bytes p = MakeRtp(rng, static_cast<uint16_t>(seq0 + i), 0x31, 160);
        Bytes& b = bufs[c * kPkts + i];
        std::copy(p.begin(), p.end(), b.begin());
        SrtpJob& j = jobs[c * kPkts + i];
        j = SrtpJob{};
        j.ctx = tx[c].get();
        j.pkt = b.data();
        j.len = static_cast<uint32_t>(p.size());
        j.capacity = static_cast<uint32_t>(b.size());
      }
    }
    const uint64_t before = g_allocations.load();
    engine->Run(jobs.data(), static_cast<uint16_t>(jobs.size()));
    for (size_t c = 0; c < tx.size(); ++c) {
      for (size_t i = 0; i < kPkts; ++i) {
        SrtpJob& j = jobs[c * kPkts + i];
        j.ctx = rx[c].get();
        j.op = SrtpOp::kUnprotect;
      }
    }
    engine->Run(jobs.data(), static_cast<uint16_t>(jobs.size()));
    const uint64_t after = g_allocations.load();
    for (const SrtpJob& j : jobs) EXPECT_EQ(j.status, SrtpStatus::kOk);
    return after - before;
  };
  round(10);  // warm-up (libsrtp2 creates its streams here)
  const uint64_t a = round(100);
  const uint64_t b = round(200);
  if (kind == SrtpEngineKind::kLibsrtp) {
    // Not Karl's to fix: Debian's libsrtp2 runs its ciphers on NSS, whose PK11 calls
    // allocate on every packet. Recorded, not asserted (another libsrtp2 build may not).
    RecordProperty("libsrtp_allocations_per_packet",
                   std::to_string(static_cast<double>(a + b) / (4.0 * jobs.size())));
    return;
  }
  EXPECT_EQ(a, 0u);
  EXPECT_EQ(b, 0u);
}

INSTANTIATE_TEST_SUITE_P(AllEngines, EngineMix, ::testing::ValuesIn(kAllEngines),
                         [](const ::testing::TestParamInfo<SrtpEngineKind>& info) {
                           return std::string(SrtpEngineName(info.param));
                         });

// ---- The batched engine equals one-at-a-time processing ---------------------------------------

// Random traffic with repeats, tampering, forged jumps and reordering, for twin receivers
// (same keys): the ipsec_mb engine in bursts and the software engine one job at a time
// give the same verdicts, the same plaintexts and the same final state.
TEST(IpsecMbEquivalence, RandomTrafficMatchesSequential) {
  auto batched = CreateSrtpEngine(SrtpEngineKind::kIpsecMb, 0);
  SoftwareSrtpEngine sequential;
  ASSERT_NE(batched, nullptr);
  std::mt19937 rng(16);
  for (SrtpSuite suite : kAllSuites) {
    const Keys k = RandomKeys(suite, rng);
    auto sender = MakeCtx(SrtpEngineKind::kOpenssl, suite, k);
    auto rx_a = MakeCtx(SrtpEngineKind::kIpsecMb, suite, k);
    auto rx_b = MakeCtx(SrtpEngineKind::kOpenssl, suite, k);
    std::vector<Bytes> sent;
    uint16_t seq = static_cast<uint16_t>(rng());
    for (int i = 0; i < 3000; ++i) {
      Bytes p = MakeRtp(rng, seq, 0x600d, rng() % 100, rng() % 20 == 0 ? 1 : 0);
      p.resize(p.size() + kSrtpMaxTrailerLen);
      uint32_t len = static_cast<uint32_t>(p.size() - kSrtpMaxTrailerLen);
      ASSERT_EQ(sender->Protect(p.data(), &len, static_cast<uint32_t>(p.size())), SrtpStatus::kOk);
      p.resize(len);
      sent.push_back(p);
      // Mostly +1, sometimes a gap, rarely a jump of nearly half the SEQ space.
      const uint32_t r = rng() % 100;
      seq = static_cast<uint16_t>(seq + (r < 90   ? 1
                                         : r < 99 ? 2 + rng() % 50
                                                  : 20000 + rng() % 12000));
    }
    std::vector<Bytes> traffic;
    for (size_t i = 0; i < sent.size(); ++i) {
      const uint32_t r = rng() % 100;
      Bytes p = sent[i];
      if (r < 4) {  // tamper (payload, tag or SEQ)
        p[rng() % p.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
      } else if (r < 7 && i > 0) {  // repeat of a recent one
        p = sent[i - 1 - rng() % std::min<size_t>(i, 40)];
      } else if (r < 9 && i + 1 < sent.size()) {  // swap with the next
        traffic.push_back(sent[i + 1]);
      }
      traffic.push_back(p);
    }
    ASSERT_NO_FATAL_FAILURE(UnprotectBothWays(*batched, sequential, rx_a.get(), rx_b.get(), traffic,
                                              17, GetSrtpSuiteInfo(suite).name));
    EXPECT_EQ(rx_a->highest_rx_index(), rx_b->highest_rx_index());
  }
  EXPECT_EQ(batched->stats().device_errors, 0u);
}

// The burst's index guess for an unprotect rests on the earlier unprotects of the burst
// authenticating. Here the earlier one is forged: the device runs the later packet with a
// ROC that one-at-a-time processing would not use; Finish notices, undoes it and gives
// the one-at-a-time verdict.
TEST(IpsecMbEquivalence, WrongGuessIsRedone) {
  for (SrtpSuite suite : kAllSuites) {
    std::mt19937 rng(18);
    const Keys k = RandomKeys(suite, rng);
    auto sender = MakeCtx(SrtpEngineKind::kOpenssl, suite, k);
    auto rx = MakeCtx(SrtpEngineKind::kIpsecMb, suite, k);
    auto protect = [&](uint16_t seq) {
      Bytes p = MakeRtp(rng, seq, 0xf00, 32);
      p.resize(p.size() + kSrtpMaxTrailerLen);
      uint32_t len = static_cast<uint32_t>(p.size() - kSrtpMaxTrailerLen);
      EXPECT_EQ(sender->Protect(p.data(), &len, static_cast<uint32_t>(p.size())), SrtpStatus::kOk);
      p.resize(len);
      return p;
    };
    const Bytes first = protect(100);
    const Bytes second = protect(30000);
    const Bytes mid = protect(40000);   // (0, 40000)
    const Bytes late = protect(65000);  // (0, 65000): from 30000 it would be ROC -1
    Bytes forged = mid;
    forged.back() ^= 1;
    auto engine = CreateSrtpEngine(SrtpEngineKind::kIpsecMb, 0);
    std::vector<Work> w;
    w.emplace_back(rx.get(), SrtpOp::kUnprotect, first, 0);
    w.emplace_back(rx.get(), SrtpOp::kUnprotect, second, 0);
    std::mt19937 one(0);
    RunBursts(*engine, w, one, 1);
    ASSERT_EQ(w[0].status, SrtpStatus::kOk);
    ASSERT_EQ(w[1].status, SrtpStatus::kOk);
    // Burst: forged mid, genuine late. One at a time: mid fails, so late is estimated from
    // 30000, i.e. before the stream's first packet: a replay. Then genuine mid and late.
    w.clear();
    w.emplace_back(rx.get(), SrtpOp::kUnprotect, forged, 0);
    w.emplace_back(rx.get(), SrtpOp::kUnprotect, late, 0);
    w.emplace_back(rx.get(), SrtpOp::kUnprotect, mid, 0);
    w.emplace_back(rx.get(), SrtpOp::kUnprotect, late, 0);
    RunBursts(*engine, w, one, w.size());
    EXPECT_EQ(w[0].status, SrtpStatus::kAuthFailed) << GetSrtpSuiteInfo(suite).name;
    EXPECT_EQ(w[1].status, SrtpStatus::kReplay);
    EXPECT_EQ(w[2].status, SrtpStatus::kOk);
    EXPECT_EQ(w[3].status, SrtpStatus::kOk);
    EXPECT_EQ(rx->highest_rx_index(), 65000u);
  }
}

// One burst holds an established SSRC crossing its ROC wrap and a new SSRC starting near
// SEQ 0, interleaved and each reordered: the burst's guesses are per SSRC, so every packet
// is right the first time on the device (nothing is redone in software).
TEST(IpsecMbEquivalence, TwoSsrcsInOneBurstStayOnTheDevice) {
  auto engine = CreateSrtpEngine(SrtpEngineKind::kIpsecMb, 0);
  ASSERT_NE(engine, nullptr);
  std::mt19937 rng(42);
  for (SrtpSuite suite : kAllSuites) {
    const Keys k = RandomKeys(suite, rng);
    auto rx = MakeCtx(SrtpEngineKind::kIpsecMb, suite, k);
    LibSrtp l_tx(suite, k.KeySalt(), true);
    auto srtp = [&](uint16_t seq, uint32_t ssrc, std::vector<Bytes>* plain) {
      plain->push_back(MakeRtp(rng, seq, ssrc, 80));
      Bytes p = plain->back();
      EXPECT_EQ(l_tx.Protect(&p), srtp_err_status_ok);
      return p;
    };
    std::vector<Bytes> plain;
    std::vector<Work> first;
    for (uint16_t seq = 65500; seq < 65520; ++seq) {
      first.emplace_back(rx.get(), SrtpOp::kUnprotect, srtp(seq, 0xa, &plain), 0);
    }
    RunBursts(*engine, first, rng, first.size());
    for (const Work& w : first) ASSERT_EQ(w.status, SrtpStatus::kOk);
    // A: 65520 .. 65535, 0 .. 7 (ROC 0 -> 1); B (new): 3 .. 26. Adjacent pairs of each
    // swapped, the two merged alternately.
    std::vector<Bytes> a, b, a_plain, b_plain;
    for (int i = 0; i < 24; ++i) {
      a.push_back(srtp(static_cast<uint16_t>(65520 + i), 0xa, &a_plain));
      b.push_back(srtp(static_cast<uint16_t>(3 + i), 0xb, &b_plain));
    }
    for (int i = 0; i + 1 < 24; i += 2) {
      std::swap(a[i], a[i + 1]);
      std::swap(a_plain[i], a_plain[i + 1]);
      std::swap(b[i], b[i + 1]);
      std::swap(b_plain[i], b_plain[i + 1]);
    }
    std::vector<Work> burst;
    std::vector<Bytes> want;
    for (int i = 0; i < 24; ++i) {
      burst.emplace_back(rx.get(), SrtpOp::kUnprotect, a[i], 0);
      want.push_back(a_plain[i]);
      burst.emplace_back(rx.get(), SrtpOp::kUnprotect, b[i], 0);
      want.push_back(b_plain[i]);
    }
    const SrtpEngineStats before = engine->stats();
    RunBursts(*engine, burst, rng, burst.size());
    for (size_t i = 0; i < burst.size(); ++i) {
      ASSERT_EQ(burst[i].status, SrtpStatus::kOk) << GetSrtpSuiteInfo(suite).name << " " << i;
      ASSERT_EQ(burst[i].out(), want[i]) << i;
    }
    EXPECT_EQ(engine->stats().software_jobs, before.software_jobs) << GetSrtpSuiteInfo(suite).name;
    EXPECT_EQ(engine->stats().device_ops - before.device_ops, burst.size());
    EXPECT_EQ(rx->highest_rx_index(0xa), (uint64_t{1} << 16) | 7);
    EXPECT_EQ(rx->highest_rx_index(0xb), 26u);
  }
}

// Bursts that mix the SSRCs of one context (RFC 3711 §3.2.3): two main SSRCs, one crossing
// a ROC wrap, with gaps, jumps, repeats, tampering and reordering, plus now and then a
// packet of one of three other SSRCs (new SSRCs mid-burst, evictions: five SSRCs for four
// slots) or a forged packet of a new SSRC. The ipsec_mb engine in bursts gives the verdicts,
// plaintexts and per-SSRC state of one-at-a-time processing.
TEST(IpsecMbEquivalence, MixedSsrcBurstsMatchSequential) {
  auto batched = CreateSrtpEngine(SrtpEngineKind::kIpsecMb, 0);
  SoftwareSrtpEngine sequential;
  ASSERT_NE(batched, nullptr);
  std::mt19937 rng(40);
  for (SrtpSuite suite : kAllSuites) {
    const Keys k = RandomKeys(suite, rng);
    struct Sender {
      uint32_t ssrc;
      uint16_t seq;
      std::unique_ptr<SrtpContext> ctx;  // one per SSRC: its own sender state throughout
    };
    std::vector<Sender> senders;
    for (uint32_t i = 0; i < 5; ++i) {
      const uint16_t seq = i == 0 ? 64000 : static_cast<uint16_t>(rng());
      senders.push_back({0x100u * (i + 1), seq, MakeCtx(SrtpEngineKind::kOpenssl, suite, k)});
    }
    auto rx_a = MakeCtx(SrtpEngineKind::kIpsecMb, suite, k);
    auto rx_b = MakeCtx(SrtpEngineKind::kOpenssl, suite, k);
    std::vector<Bytes> sent;
    for (int i = 0; i < 3000; ++i) {
      const uint32_t r = rng() % 100;
      Sender& s = senders[r < 47 ? 0 : r < 94 ? 1 : 2 + rng() % 3];
      Bytes p = MakeRtp(rng, s.seq, s.ssrc, rng() % 100, rng() % 20 == 0 ? 1 : 0);
      p.resize(p.size() + kSrtpMaxTrailerLen);
      uint32_t len = static_cast<uint32_t>(p.size() - kSrtpMaxTrailerLen);
      ASSERT_EQ(s.ctx->Protect(p.data(), &len, static_cast<uint32_t>(p.size())), SrtpStatus::kOk);
      p.resize(len);
      sent.push_back(p);
      const uint32_t g = rng() % 100;
      s.seq = static_cast<uint16_t>(s.seq + (g < 90   ? 1
                                             : g < 99 ? 2 + rng() % 50
                                                      : 20000 + rng() % 12000));
    }
    std::vector<Bytes> traffic;
    for (size_t i = 0; i < sent.size(); ++i) {
      const uint32_t r = rng() % 100;
      Bytes p = sent[i];
      if (r < 4) {  // tamper (payload, tag, SEQ or SSRC)
        p[rng() % p.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
      } else if (r < 6) {  // a forged packet of a new SSRC first
        Bytes f = p;
        f[8] ^= 0x80;
        traffic.push_back(f);
      } else if (r < 9 && i > 0) {  // repeat of a recent one
        p = sent[i - 1 - rng() % std::min<size_t>(i, 40)];
      }
      traffic.push_back(p);
    }
    for (size_t i = 0; i + 6 <= traffic.size(); i += 6) {  // reordering
      std::shuffle(traffic.begin() + static_cast<long>(i),
                   traffic.begin() + static_cast<long>(i + 6), rng);
    }
    ASSERT_NO_FATAL_FAILURE(UnprotectBothWays(*batched, sequential, rx_a.get(), rx_b.get(), traffic,
                                              41, GetSrtpSuiteInfo(suite).name));
    for (const Sender& s : senders) {
      EXPECT_EQ(rx_a->highest_rx_index(s.ssrc), rx_b->highest_rx_index(s.ssrc)) << s.ssrc;
    }
    EXPECT_EQ(rx_a->highest_rx_index(), rx_b->highest_rx_index());
    EXPECT_EQ(rx_a->srtp_packets(), rx_b->srtp_packets());
  }
  EXPECT_EQ(batched->stats().device_errors, 0u);
  EXPECT_GT(batched->stats().device_ops, batched->stats().jobs / 2);
}

// ---- The ipsec_mb device path specifically ------------------------------------------------------

// The direct path prefetches a GCM key block's lines by the implementation intel-ipsec-mb
// picked for this CPU (its key layout differs between VAES AVX-512, AVX2 and SSE/AVX):
// every line the library reads for an SRTP packet of up to 256 octets must be among them.
// Corrupting any other line must not change what GCM computes.
TEST(IpsecMbPaths, GcmPrefetchCoversEveryKeyLineTheLibraryReads) {
  ASSERT_TRUE(srtp_internal::IpsecMbDirect());
  IMB_MGR* mgr = alloc_mb_mgr(0);
  ASSERT_NE(mgr, nullptr);
  init_mb_mgr_auto(mgr, nullptr);
  ASSERT_EQ(imb_get_errno(mgr), 0);
  std::mt19937 rng(28);
  for (const bool aes256 : {false, true}) {
    const uint64_t lines = srtp_internal::g_session_prefetch_lines[1][aes256 ? 1 : 0];
    ASSERT_NE(lines & 0xf, 0u) << "the round keys are not prefetched";
    uint8_t key[32];
    for (uint8_t& b : key) b = static_cast<uint8_t>(rng());
    alignas(64) static gcm_key_data good, bad;
    auto encrypt = [&](const gcm_key_data& kd, const Bytes& in, Bytes* out, uint8_t* tag) {
      const uint8_t iv[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
      const uint8_t aad[12] = {0x80, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3};
      gcm_context_data ctx;
      out->resize(in.size());
      if (aes256) {
        IMB_AES256_GCM_ENC(mgr, &kd, &ctx, out->data(), in.data(), in.size(), iv, aad, 12, tag, 16);
      } else {
        IMB_AES128_GCM_ENC(mgr, &kd, &ctx, out->data(), in.data(), in.size(), iv, aad, 12, tag, 16);
      }
    };
    if (aes256) {
      IMB_AES256_GCM_PRE(mgr, key, &good);
    } else {
      IMB_AES128_GCM_PRE(mgr, key, &good);
    }
    for (const size_t len : {size_t{1}, size_t{160}, size_t{244}}) {  // + 12-octet header
      Bytes plain(len);
      for (uint8_t& b : plain) b = static_cast<uint8_t>(rng());
      Bytes want, got;
      uint8_t want_tag[16], got_tag[16];
      encrypt(good, plain, &want, want_tag);
      for (size_t line = 0; line * 64 < sizeof(gcm_key_data); ++line) {
        if (lines & (uint64_t{1} << line)) continue;
        bad = good;
        auto* raw = reinterpret_cast<uint8_t*>(&bad);
        for (size_t b = line * 64; b < std::min(line * 64 + 64, sizeof(gcm_key_data)); ++b) {
          raw[b] ^= 0x5a;
        }
        encrypt(bad, plain, &got, got_tag);
        EXPECT_TRUE(got == want && std::memcmp(got_tag, want_tag, 16) == 0)
            << "AES-" << (aes256 ? 256 : 128) << "-GCM of " << len << " octets reads key line "
            << line << ", which is not prefetched (lines 0x" << std::hex << lines << std::dec
            << ", library arch " << mgr->used_arch << ")";
      }
    }
  }
  free_mb_mgr(mgr);
}

// GCM packets whose header is not 12 octets run in software (the sessions' AAD is 12);
// AES-CM ones stay on the device. Both are right.
TEST(IpsecMbPaths, GcmWithCsrcsOrExtensionRunsInSoftware) {
  auto engine = CreateSrtpEngine(SrtpEngineKind::kIpsecMb, 0);
  std::mt19937 rng(19);
  for (SrtpSuite suite : {SrtpSuite::kAeadAes128Gcm, SrtpSuite::kAesCm128HmacSha1_80}) {
    const Keys k = RandomKeys(suite, rng);
    auto tx = MakeCtx(SrtpEngineKind::kIpsecMb, suite, k);
    LibSrtp l_rx(suite, k.KeySalt(), false);
    const SrtpEngineStats before = engine->stats();
    std::vector<Work> works;
    std::vector<Bytes> plain;
    for (uint16_t i = 0; i < 10; ++i) {
      plain.push_back(MakeRtp(rng, i, 0x1, 100, i % 2, i % 2 ? -1 : 3));
      works.emplace_back(tx.get(), SrtpOp::kProtect, plain.back());
    }
    RunBursts(*engine, works, rng, 10);
    for (size_t i = 0; i < works.size(); ++i) {
      ASSERT_EQ(works[i].status, SrtpStatus::kOk);
      Bytes out = works[i].out();
      ASSERT_EQ(l_rx.Unprotect(&out), srtp_err_status_ok);
      ASSERT_EQ(out, plain[i]);
    }
    const uint64_t device = engine->stats().device_ops - before.device_ops;
    EXPECT_EQ(device, IsGcm(suite) ? 0u : 10u) << GetSrtpSuiteInfo(suite).name;
  }
}

// A context made for one direction has sessions for that direction only; the other still
// works, in software.
TEST(IpsecMbPaths, DirectionHint) {
  auto engine = CreateSrtpEngine(SrtpEngineKind::kIpsecMb, 0);
  std::mt19937 rng(20);
  const Keys k = RandomKeys(SrtpSuite::kAesCm128HmacSha1_80, rng);
  auto tx = MakeCtx(SrtpEngineKind::kIpsecMb, SrtpSuite::kAesCm128HmacSha1_80, k, {},
                    SrtpDirection::kProtect);
  auto rx = MakeCtx(SrtpEngineKind::kIpsecMb, SrtpSuite::kAesCm128HmacSha1_80, k, {},
                    SrtpDirection::kProtect);  // used the other way on purpose
  ASSERT_NE(tx, nullptr);
  std::vector<Work> works;
  const Bytes plain = MakeRtp(rng, 9, 0x2, 60);
  works.emplace_back(tx.get(), SrtpOp::kProtect, plain);
  RunBursts(*engine, works, rng, 1);
  ASSERT_EQ(works[0].status, SrtpStatus::kOk);
  EXPECT_EQ(engine->stats().device_ops, 1u);
  std::vector<Work> back;
  back.emplace_back(rx.get(), SrtpOp::kUnprotect, works[0].out(), 0);
  RunBursts(*engine, back, rng, 1);
  ASSERT_EQ(back[0].status, SrtpStatus::kOk);
  EXPECT_EQ(back[0].out(), plain);
  EXPECT_EQ(engine->stats().software_jobs, 1u);
}

// A kLibsrtp context made for protect only holds no receiving srtp_t; unprotect still
// works (Karl's software transform).
TEST(LibsrtpPaths, DirectionHint) {
  auto engine = CreateSrtpEngine(SrtpEngineKind::kLibsrtp, 0);
  std::mt19937 rng(25);
  const Keys k = RandomKeys(SrtpSuite::kAeadAes256Gcm, rng);
  auto tx =
      MakeCtx(SrtpEngineKind::kLibsrtp, SrtpSuite::kAeadAes256Gcm, k, {}, SrtpDirection::kProtect);
  auto rx = MakeCtx(SrtpEngineKind::kLibsrtp, SrtpSuite::kAeadAes256Gcm, k, {},
                    SrtpDirection::kProtect);  // used the other way on purpose
  ASSERT_NE(tx, nullptr);
  LibSrtp l_tx(SrtpSuite::kAeadAes256Gcm, k.KeySalt(), true);
  std::vector<Work> works, back;
  for (uint16_t seq = 1; seq < 6; ++seq) {
    const Bytes plain = MakeRtp(rng, seq, 0x5, 60);
    Bytes lib = plain;
    ASSERT_EQ(l_tx.Protect(&lib), srtp_err_status_ok);
    works.emplace_back(tx.get(), SrtpOp::kProtect, plain);
    back.emplace_back(rx.get(), SrtpOp::kUnprotect, lib, 0);
    RunBursts(*engine, works, rng, 1);
    RunBursts(*engine, back, rng, 1);
    ASSERT_EQ(works.back().status, SrtpStatus::kOk);
    ASSERT_EQ(works.back().out(), lib);
    ASSERT_EQ(back.back().status, SrtpStatus::kOk);
    ASSERT_EQ(back.back().out(), plain);
    works.clear();
    back.clear();
  }
}

// Another engine's contexts in an ipsec_mb burst run on their own transforms, in order.
TEST(IpsecMbPaths, ForeignContextsInTheBurst) {
  auto engine = CreateSrtpEngine(SrtpEngineKind::kIpsecMb, 0);
  std::mt19937 rng(21);
  const Keys k = RandomKeys(SrtpSuite::kAes256CmHmacSha1_32, rng);
  std::vector<std::unique_ptr<SrtpContext>> tx;
  for (SrtpEngineKind kind : kAllEngines) {
    tx.push_back(MakeCtx(kind, SrtpSuite::kAes256CmHmacSha1_32, k));
  }
  LibSrtp l_tx(SrtpSuite::kAes256CmHmacSha1_32, k.KeySalt(), true);
  std::vector<Work> works;
  std::vector<Bytes> expect;
  for (uint16_t i = 0; i < 30; ++i) {
    const Bytes p = MakeRtp(rng, i, 0x3, 50);
    Bytes lib = p;
    ASSERT_EQ(l_tx.Protect(&lib), srtp_err_status_ok);
    for (auto& c : tx) {
      works.emplace_back(c.get(), SrtpOp::kProtect, p);
      expect.push_back(lib);
    }
  }
  RunBursts(*engine, works, rng, 64);
  for (size_t i = 0; i < works.size(); ++i) {
    ASSERT_EQ(works[i].status, SrtpStatus::kOk);
    ASSERT_EQ(works[i].out(), expect[i]) << i;
  }
}

// ---- Set-up API ---------------------------------------------------------------------------------

TEST(SrtpEngineApi, ParseNames) {
  for (SrtpEngineKind k : kAllEngines) {
    SrtpEngineKind parsed = SrtpEngineKind::kOpenssl;
    ASSERT_TRUE(ParseSrtpEngineKind(SrtpEngineName(k), &parsed));
    EXPECT_EQ(parsed, k);
  }
  SrtpEngineKind parsed = SrtpEngineKind::kLibsrtp;
  EXPECT_FALSE(ParseSrtpEngineKind("ipsec-mb", &parsed));
  EXPECT_FALSE(ParseSrtpEngineKind("", &parsed));
  EXPECT_EQ(parsed, SrtpEngineKind::kLibsrtp);
}

TEST(SrtpEngineApi, QueuePairsOnePerWorker) {
  auto a = CreateSrtpEngine(SrtpEngineKind::kIpsecMb, 0);
  auto b = CreateSrtpEngine(SrtpEngineKind::kIpsecMb, 1);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(CreateSrtpEngine(SrtpEngineKind::kIpsecMb, 0), nullptr);  // taken
  EXPECT_EQ(CreateSrtpEngine(SrtpEngineKind::kIpsecMb, 2), nullptr);  // 2 workers
  a.reset();
  EXPECT_NE(CreateSrtpEngine(SrtpEngineKind::kIpsecMb, 0), nullptr);  // free again
  EXPECT_NE(CreateSrtpEngine(SrtpEngineKind::kOpenssl, 7), nullptr);
  const absl::Status again = InitSrtpCrypto(SrtpEngineKind::kIpsecMb, 2);
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition) << again;
}

TEST(SrtpEngineApi, BadConfigs) {
  std::mt19937 rng(22);
  const Keys k = RandomKeys(SrtpSuite::kAesCm128HmacSha1_80, rng);
  SrtpConfig c;
  c.engine = SrtpEngineKind::kLibsrtp;
  c.master_key = k.key;
  c.master_salt = k.salt;
  c.replay_window = 0x8000;  // libsrtp2 takes < 32768
  EXPECT_EQ(SrtpContext::Create(c), nullptr);
  c.replay_window = 1024;
  EXPECT_NE(SrtpContext::Create(c), nullptr);
  SrtpSessionKeys keys{};
  EXPECT_EQ(SrtpContext::CreateFromSessionKeys(SrtpSuite::kAeadAes128Gcm, keys, keys, 128,
                                               SrtpEngineKind::kLibsrtp),
            nullptr);
  EXPECT_NE(SrtpContext::CreateFromSessionKeys(SrtpSuite::kAeadAes128Gcm, keys, keys, 128,
                                               SrtpEngineKind::kIpsecMb),
            nullptr);
}

// Many contexts: the session pools grow past their first 4096 sessions; contexts freed
// give their sessions back.
TEST(SrtpEngineApi, SessionPoolsGrow) {
  std::mt19937 rng(23);
  std::vector<std::unique_ptr<SrtpContext>> ctxs;
  for (int i = 0; i < 1500; ++i) {  // 4 sessions each: 6000
    ctxs.push_back(MakeCtx(SrtpEngineKind::kIpsecMb, SrtpSuite::kAeadAes256Gcm,
                           RandomKeys(SrtpSuite::kAeadAes256Gcm, rng)));
    ASSERT_NE(ctxs.back(), nullptr) << i;
  }
  auto engine = CreateSrtpEngine(SrtpEngineKind::kIpsecMb, 0);
  std::vector<Work> works;
  for (auto& c : ctxs) works.emplace_back(c.get(), SrtpOp::kProtect, MakeRtp(rng, 1, 2, 20));
  RunBursts(*engine, works, rng, 64);
  for (const Work& w : works) ASSERT_EQ(w.status, SrtpStatus::kOk);
  EXPECT_EQ(engine->stats().device_ops, ctxs.size());
}

// Both paths to intel-ipsec-mb (D27): direct (the default, which the rest of this file
// runs) and through the cryptodev PMDs, where the GCM suites run on their own aesni_gcm
// device or, without that driver, share the aesni_mb device (and queue pair) with the
// AES-CM suites. Every set-up gives libsrtp2's packets, in bursts that mix the two kinds of
// suite, all on the device path (no software fallback, no device error).
TEST(SrtpEngineZApi, DirectAndCryptodevPathsGcmDeviceAndGcmOnAesniMb) {
  EXPECT_TRUE(srtp_internal::IpsecMbDirect());
  EXPECT_NE(srtp_internal::CryptodevId(true), srtp_internal::CryptodevId(false));
  struct Setup {
    IpsecMbPath path;
    bool gcm_on_mb;
  };
  for (const Setup setup :
       {Setup{IpsecMbPath::kDirect, false}, Setup{IpsecMbPath::kCryptodev, false},
        Setup{IpsecMbPath::kCryptodev, true}}) {
    SCOPED_TRACE(std::string(IpsecMbPathName(setup.path)) + (setup.gcm_on_mb ? " gcm on mb" : ""));
    const bool gcm_on_mb = setup.gcm_on_mb;
    if (setup.path != IpsecMbPath::kDirect) {
      CloseSrtpCrypto();
      srtp_internal::g_force_gcm_on_mb = gcm_on_mb;
      ASSERT_TRUE(InitSrtpCrypto(SrtpEngineKind::kIpsecMb, 2, setup.path).ok());
      ASSERT_TRUE(InitSrtpCrypto(SrtpEngineKind::kLibsrtp, 2).ok());
      srtp_internal::g_force_gcm_on_mb = false;
      EXPECT_FALSE(srtp_internal::IpsecMbDirect());
      EXPECT_EQ(srtp_internal::CryptodevId(true) == srtp_internal::CryptodevId(false), gcm_on_mb);
    }
    auto engine = CreateSrtpEngine(SrtpEngineKind::kIpsecMb, 0);
    ASSERT_NE(engine, nullptr);
    std::mt19937 rng(26);
    std::vector<std::unique_ptr<SrtpContext>> tx, rx;
    std::vector<std::unique_ptr<LibSrtp>> l_rx, l_tx;
    for (SrtpSuite suite : kAllSuites) {
      const Keys k = RandomKeys(suite, rng);
      tx.push_back(MakeCtx(SrtpEngineKind::kIpsecMb, suite, k));
      rx.push_back(MakeCtx(SrtpEngineKind::kIpsecMb, suite, k));
      l_rx.push_back(std::make_unique<LibSrtp>(suite, k.KeySalt(), false));
      l_tx.push_back(std::make_unique<LibSrtp>(suite, k.KeySalt(), true));
    }
    std::vector<Work> works;
    std::vector<Bytes> plain;
    for (uint16_t seq = 1; seq < 40; ++seq) {
      for (size_t c = 0; c < tx.size(); ++c) {
        plain.push_back(MakeRtp(rng, seq, 0x77, 120));
        works.emplace_back(tx[c].get(), SrtpOp::kProtect, plain.back());
        Bytes lib = plain.back();
        ASSERT_EQ(l_tx[c]->Protect(&lib), srtp_err_status_ok);
        works.emplace_back(rx[c].get(), SrtpOp::kUnprotect, lib, 0);
        plain.push_back(plain.back());
      }
    }
    RunBursts(*engine, works, rng, 300);  // Runs of more than one chunk too
    for (size_t i = 0; i < works.size(); ++i) {
      ASSERT_EQ(works[i].status, SrtpStatus::kOk) << i;
      Bytes out = works[i].out();
      if (works[i].op == SrtpOp::kProtect) {
        ASSERT_EQ(l_rx[(i / 2) % tx.size()]->Unprotect(&out), srtp_err_status_ok) << i;
      }
      ASSERT_EQ(out, plain[i]) << i;
    }
    EXPECT_EQ(engine->stats().device_ops, works.size());
    EXPECT_EQ(engine->stats().device_errors, 0u);
    EXPECT_EQ(engine->stats().software_jobs, 0u);
  }
  // Back to the environment's set-up.
  CloseSrtpCrypto();
  ASSERT_TRUE(InitSrtpCrypto(SrtpEngineKind::kIpsecMb, 2).ok());
  ASSERT_TRUE(InitSrtpCrypto(SrtpEngineKind::kLibsrtp, 2).ok());
}

// Contexts live in 2 MiB slabs (2048 of them each): more than a slab's worth are distinct, aligned,
// work, and their slots are reused once freed.
TEST(SrtpEngineApi, ContextsBeyondOneSlab) {
  std::mt19937 rng(27);
  const Keys k = RandomKeys(SrtpSuite::kAesCm128HmacSha1_32, rng);
  std::vector<std::unique_ptr<SrtpContext>> ctxs;
  for (int i = 0; i < 4200; ++i) {
    ctxs.push_back(MakeCtx(SrtpEngineKind::kOpenssl, SrtpSuite::kAesCm128HmacSha1_32, k));
    ASSERT_NE(ctxs.back(), nullptr);
    ASSERT_EQ(reinterpret_cast<uintptr_t>(ctxs.back().get()) % 64, 0u);
  }
  std::vector<const void*> addrs;
  for (auto& c : ctxs) addrs.push_back(c.get());
  std::sort(addrs.begin(), addrs.end());
  EXPECT_EQ(std::adjacent_find(addrs.begin(), addrs.end()), addrs.end());
  LibSrtp l_rx(SrtpSuite::kAesCm128HmacSha1_32, k.KeySalt(), false);
  SoftwareSrtpEngine engine;
  std::vector<Work> works;
  const Bytes plain = MakeRtp(rng, 3, 4, 30);
  works.emplace_back(ctxs.back().get(), SrtpOp::kProtect, plain);
  RunBursts(engine, works, rng, 1);
  ASSERT_EQ(works[0].status, SrtpStatus::kOk);
  Bytes out = works[0].out();
  ASSERT_EQ(l_rx.Unprotect(&out), srtp_err_status_ok);
  EXPECT_EQ(out, plain);
  const void* freed = ctxs[100].get();
  ctxs[100].reset();
  auto again = MakeCtx(SrtpEngineKind::kOpenssl, SrtpSuite::kAesCm128HmacSha1_32, k);
#if !defined(__SANITIZE_ADDRESS__)
  EXPECT_EQ(again.get(), freed);  // the slot just freed (ASan: the plain allocator)
#else
  (void)freed;
#endif
}

// Close frees everything; contexts and engines that outlive it are destroyed harmlessly;
// a new set-up works. (Runs last: it leaves the environment as it found it.)
TEST(SrtpEngineZApi, CloseAndInitAgain) {
  std::mt19937 rng(24);
  const Keys k = RandomKeys(SrtpSuite::kAesCm128HmacSha1_80, rng);
  auto ctx = MakeCtx(SrtpEngineKind::kIpsecMb, SrtpSuite::kAesCm128HmacSha1_80, k);
  auto engine = CreateSrtpEngine(SrtpEngineKind::kIpsecMb, 1);
  ASSERT_NE(ctx, nullptr);
  CloseSrtpCrypto();
  EXPECT_EQ(srtp_internal::CryptodevId(), -1);
  EXPECT_EQ(MakeCtx(SrtpEngineKind::kIpsecMb, SrtpSuite::kAesCm128HmacSha1_80, k), nullptr);
  EXPECT_EQ(CreateSrtpEngine(SrtpEngineKind::kIpsecMb, 0), nullptr);
  ctx.reset();
  engine.reset();
  ASSERT_TRUE(InitSrtpCrypto(SrtpEngineKind::kIpsecMb, 2).ok());
  ASSERT_TRUE(InitSrtpCrypto(SrtpEngineKind::kLibsrtp, 2).ok());
  ctx = MakeCtx(SrtpEngineKind::kIpsecMb, SrtpSuite::kAesCm128HmacSha1_80, k);
  ASSERT_NE(ctx, nullptr);
  LibSrtp l_rx(SrtpSuite::kAesCm128HmacSha1_80, k.KeySalt(), false);
  Bytes p = MakeRtp(rng, 5, 6, 40);
  const Bytes plain = p;
  p.resize(p.size() + kSrtpMaxTrailerLen);
  uint32_t len = static_cast<uint32_t>(plain.size());
  ASSERT_EQ(ctx->Protect(p.data(), &len, static_cast<uint32_t>(p.size())), SrtpStatus::kOk);
  p.resize(len);
  ASSERT_EQ(l_rx.Unprotect(&p), srtp_err_status_ok);
  EXPECT_EQ(p, plain);
}

}  // namespace
}  // namespace karl::dp

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new karl::dp::EalEnvironment);
  return RUN_ALL_TESTS();
}
