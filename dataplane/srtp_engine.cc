// rte_cryptodev_sym_session_pool_create is experimental in DPDK 22.11 and the only way to
// make a session pool; this file alone uses it.
#define ALLOW_EXPERIMENTAL_API 1

#include "dataplane/srtp_engine.h"

#include <intel-ipsec-mb.h>
#include <rte_bus_vdev.h>
#include <rte_crypto.h>
#include <rte_cryptodev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mempool.h>
#include <rte_prefetch.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "openssl/crypto.h"

namespace karl::dp {

std::string_view SrtpEngineName(SrtpEngineKind kind) noexcept {
  switch (kind) {
    case SrtpEngineKind::kIpsecMb:
      return "ipsec_mb";
    case SrtpEngineKind::kOpenssl:
      return "openssl";
    case SrtpEngineKind::kLibsrtp:
      return "libsrtp";
  }
  return "?";
}

std::string_view IpsecMbPathName(IpsecMbPath path) noexcept {
  return path == IpsecMbPath::kDirect ? "direct" : "cryptodev";
}

bool ParseIpsecMbPath(std::string_view name, IpsecMbPath* path) noexcept {
  for (IpsecMbPath p : {IpsecMbPath::kDirect, IpsecMbPath::kCryptodev}) {
    if (name == IpsecMbPathName(p)) {
      *path = p;
      return true;
    }
  }
  return false;
}

bool ParseSrtpEngineKind(std::string_view name, SrtpEngineKind* kind) noexcept {
  for (SrtpEngineKind k :
       {SrtpEngineKind::kIpsecMb, SrtpEngineKind::kOpenssl, SrtpEngineKind::kLibsrtp}) {
    if (name == SrtpEngineName(k)) {
      *kind = k;
      return true;
    }
  }
  return false;
}

void SoftwareSrtpEngine::Run(SrtpJob* jobs, uint16_t n) noexcept {
  for (uint16_t i = 0; i < n; ++i) jobs[i].ctx->RunInline(jobs[i]);
  stats_.jobs += n;
}

// ---- The ipsec_mb engine ----------------------------------------------------------------------

namespace {

// AES-CM suites (AES-CTR chained with HMAC-SHA1) run on aesni_mb; the GCM suites on
// aesni_gcm, whose AEAD path measured about 30% faster per op than aesni_mb's on this
// class of CPU (both ipsec-mb 1.3), or on aesni_mb when the aesni_gcm driver is missing.
enum DeviceRole : uint8_t { kMbDevice = 0, kGcmDevice = 1 };
constexpr const char* kDeviceName[2] = {"crypto_aesni_mb_karl", "crypto_aesni_gcm_karl"};
constexpr const char* kDriverName[2] = {"crypto_aesni_mb", "crypto_aesni_gcm"};
// Jobs per enqueue (per library burst on the direct path): a multiple of the 16 lanes of
// the AVX-512 SHA-1 manager, and a whole burst of the default dataplane.burst_size (64
// measured 5% slower for AES_CM in the worker loop).
constexpr uint16_t kChunk = 128;
static_assert(kChunk <= IMB_MAX_BURST_SIZE);
constexpr uint32_t kQueueDescriptors = 256;  // >= kChunk
constexpr uint32_t kSessionsPerPool = 4096;
// Dequeue polls without progress before the engine declares the device stuck. The
// software PMDs complete every op within a few calls; this only bounds a broken device.
constexpr uint32_t kMaxIdlePolls = 1u << 20;

std::atomic<uint64_t> g_next_engine_id{1};

// An intel-ipsec-mb manager for the best code this CPU runs (AVX-512, AVX2, ... with AES-NI,
// VAES and SHA-NI where present), or nullptr with *error set. Control plane (it allocates).
IMB_MGR* NewImbManager(std::string* error) {
  IMB_MGR* m = alloc_mb_mgr(0);
  if (m == nullptr) {
    if (error != nullptr) *error = "intel-ipsec-mb: alloc_mb_mgr failed";
    return nullptr;
  }
  init_mb_mgr_auto(m, nullptr);
  if (const int err = imb_get_errno(m); err != 0) {
    if (error != nullptr) *error = absl::StrCat("intel-ipsec-mb: ", imb_get_strerror(err));
    free_mb_mgr(m);
    return nullptr;
  }
  return m;
}

// The direct path's stand-in for a cryptodev session: what intel-ipsec-mb needs for one
// half and direction of a context, made from the same xforms, laid out so a packet reads
// few lines. AES-CM: the kind, the HMAC-SHA1 inner and outer states and the AES round
// keys (lines 0-3 for AES-128, 0-4 for AES-256). GCM: the library's key data alone, round
// keys first (lines 0-3), then the GHASH key powers, whose layout depends on the
// implementation the library picked for the CPU (DirectGcmLines). A GCM op's direction and
// key size come from its job (RunChunk), not from the block: on a Zen 3 host, where the
// AVX2 code never touches the block's last line, reading them from there held the engine's
// GCM protect at 3.76 Mpps against 6.32 without (docs/performance.md, session 10).
enum class DirectKind : uint8_t { kCmProtect, kCmUnprotect };
struct alignas(64) DirectKeys {
  union Keys {
    struct Cm {
      DirectKind kind;
      uint8_t key_len;  // 16 or 32
      uint8_t ipad[20];
      uint8_t opad[20];
      alignas(16) uint8_t aes[16 * 15];  // AES-128 uses 11 of the 15 round keys
    } cm;
    gcm_key_data gcm;
  } keys;
};
static_assert(sizeof(gcm_key_data) == 1008 && sizeof(DirectKeys) == 1024 &&
              offsetof(DirectKeys::Keys::Cm, aes) + 11 * 16 <= 4 * 64 &&
              sizeof(DirectKeys::Keys::Cm) <= 5 * 64);
constexpr uint64_t kDirectCm128Lines = 0xf;
constexpr uint64_t kDirectCm256Lines = 0x1f;

// The lines of a GCM DirectKeys block that a packet of up to 256 octets reads, for the
// GCM implementation `m` runs (struct gcm_key_data's union): VAES AVX-512 keeps 48 key
// powers ending with H^1, and such a packet reads the last 16 (lines 11-15); the AVX2
// and plain AVX-512 code keeps 8 powers after the round keys (octets 240-367, lines
// 3-5); SSE and AVX keep 8 powers and their Karatsuba halves (octets 240-495, lines
// 3-7). Which lines a packet reads was found by corrupting one line at a time and
// checking the output (docs/performance.md, session 10; the AVX-512 code without VAES is
// taken from the union, not measured: no such CPU here). On AVX-512 with VAES, prefetching
// all 17 lines instead of these measured ~10% slower GCM protect and half the GCM unprotect
// rate (session 8).
uint64_t DirectGcmLines(const IMB_MGR* m) {
  constexpr uint64_t kVaes = IMB_FEATURE_VAES | IMB_FEATURE_VPCLMULQDQ;
  if (m->used_arch == IMB_ARCH_AVX512 && (m->features & kVaes) == kVaes) {
    return 0xf | uint64_t{0x1f} << 11;
  }
  if (m->used_arch == IMB_ARCH_AVX512 || m->used_arch == IMB_ARCH_AVX2) return 0x3f;
  return 0xff;
}

// The symmetric op after an rte_crypto_op (its C++ declaration is a zero-length array,
// which GCC 12's -Warray-bounds refuses to index).
inline rte_crypto_sym_op* SymOp(rte_crypto_op* op) noexcept {
  return reinterpret_cast<rte_crypto_sym_op*>(reinterpret_cast<uint8_t*>(op) +
                                              sizeof(rte_crypto_op));
}

}  // namespace

class IpsecMbSrtpEngine final : public SrtpEngine {
 public:
  // dev[kMbDevice] and dev[kGcmDevice] may be the same device; qp is this engine's queue
  // pair on each.
  IpsecMbSrtpEngine(const uint8_t dev[2], uint16_t qp, uint64_t generation)
      : dev_{dev[0], dev[1]}, qp_(qp), generation_(generation) {
    epoch_ = g_next_engine_id.fetch_add(1) << 40;  // burst numbers unique across engines
  }
  ~IpsecMbSrtpEngine() override;
  IpsecMbSrtpEngine(const IpsecMbSrtpEngine&) = delete;
  IpsecMbSrtpEngine& operator=(const IpsecMbSrtpEngine&) = delete;

  // Takes kChunk ops from the pool and sets up the shell mbufs. Control plane.
  bool Init(rte_mempool* op_pool);
  void Run(SrtpJob* jobs, uint16_t n) noexcept override;

 private:
  void RunChunk(SrtpJob* jobs, uint16_t n) noexcept;
  // The direct path, on this engine's intel-ipsec-mb manager, each op's status set as the
  // device would. AES-CM: QueueCm makes an op the chunk's next library job, RunCm runs
  // the chunk's jobs as the library's synchronous bursts (RunCmClass: one class of jobs,
  // CmClass). GCM: RunGcm runs an op at once.
  void QueueCm(rte_crypto_op* op) noexcept;
  void RunCm() noexcept;
  void RunCmClass(IMB_JOB* jobs, uint16_t n, uint8_t cls) noexcept;
  static constexpr uint8_t kGcmEncrypt = 1, kGcmAes256 = 2;
  void RunGcm(rte_crypto_op* op, uint8_t mode) noexcept;
  // Enqueues queue_[d][0, nb[d]) on both devices and dequeues until every op is back.
  void Submit(const uint16_t nb[2]) noexcept;
  // The mbuf the device reads pkt through: the job's own, or a shell pointed at pkt.
  rte_mbuf* Source(const SrtpJob& job, uint16_t slot, uint32_t* base) noexcept;

  const uint8_t dev_[2];
  const uint16_t qp_;
  const uint64_t generation_;
  uint64_t epoch_;
  bool iova_is_va_ = true;
  bool stuck_ = false;  // a device stopped returning ops: everything runs in software
  rte_mempool* op_pool_ = nullptr;
  rte_crypto_op* ops_[kChunk] = {};  // slot i of a chunk always uses ops_[i]
  rte_crypto_op* queue_[2][kChunk] = {};
  uint8_t gcm_mode_[kChunk] = {};  // direct path, GCM op k: kGcmEncrypt | kGcmAes256
  rte_crypto_op* done_[kChunk] = {};
  SrtpContext::Pending pending_[kChunk] = {};
  std::unique_ptr<rte_mbuf[]> shells_;
  IMB_MGR* mgr_ = nullptr;  // direct path: this engine's multi-buffer manager
  // Direct path: a chunk's AES-CM jobs in job order, their classes, and the room a chunk
  // of mixed classes is sorted into (kChunk each).
  std::unique_ptr<IMB_JOB[]> cm_jobs_;
  std::unique_ptr<IMB_JOB[]> cm_sorted_;
  uint8_t cm_class_[kChunk] = {};
  uint16_t nb_cm_ = 0;
};

namespace {

struct Device {
  int id = -1;
  bool made = false;  // rte_vdev_init was ours: rte_vdev_uninit on close
  bool started = false;
  uint32_t session_size = 0;  // the PMD's private session data
};

// What InitSrtpCrypto set up. Written on the control plane under `mu`; the workers only
// use their engine (which holds what it needs).
struct CryptoState {
  std::mutex mu;
  std::atomic<uint64_t> generation{0};  // of the live ipsec_mb setup, 0 when down
  uint64_t last_generation = 0;
  Device dev[2];
  bool gcm_on_mb = false;  // no aesni_gcm driver: GCM on aesni_mb (dev[1] is dev[0])
  unsigned nb_qps = 0;
  std::vector<bool> qp_taken;
  rte_mempool* op_pool = nullptr;
  std::vector<rte_mempool*> session_pools;  // sessions of both devices
  std::vector<rte_mempool*> key_pools;      // direct: DirectKeys
  uint32_t session_size = 0;                // the larger of the two
  std::unique_ptr<IpsecMbSrtpEngine> control;
  bool direct = true;           // ciphers on intel-ipsec-mb directly, not through the PMD
  IMB_MGR* keys_mgr = nullptr;  // direct: key expansion on the control plane
};

CryptoState& State() {
  static CryptoState* s = new CryptoState();  // never destroyed: used by late destructors
  return *s;
}

uint16_t ScratchOffset() {
  return static_cast<uint16_t>(sizeof(rte_crypto_op) + sizeof(rte_crypto_sym_op));
}

std::string ErrnoText(int err) { return std::strerror(err < 0 ? -err : err); }

bool HasCapability(uint8_t dev, rte_crypto_sym_xform_type type, int algo, uint16_t key, uint16_t iv,
                   uint16_t digest, uint16_t aad) {
  rte_cryptodev_sym_capability_idx idx;
  std::memset(&idx, 0, sizeof(idx));
  idx.type = type;
  switch (type) {
    case RTE_CRYPTO_SYM_XFORM_CIPHER:
      idx.algo.cipher = static_cast<rte_crypto_cipher_algorithm>(algo);
      break;
    case RTE_CRYPTO_SYM_XFORM_AUTH:
      idx.algo.auth = static_cast<rte_crypto_auth_algorithm>(algo);
      break;
    default:
      idx.algo.aead = static_cast<rte_crypto_aead_algorithm>(algo);
      break;
  }
  const rte_cryptodev_symmetric_capability* cap = rte_cryptodev_sym_capability_get(dev, &idx);
  if (cap == nullptr) return false;
  switch (type) {
    case RTE_CRYPTO_SYM_XFORM_CIPHER:
      return rte_cryptodev_sym_capability_check_cipher(cap, key, iv) == 0;
    case RTE_CRYPTO_SYM_XFORM_AUTH:
      return rte_cryptodev_sym_capability_check_auth(cap, key, digest, iv) == 0;
    default:
      return rte_cryptodev_sym_capability_check_aead(cap, key, digest, aad, iv) == 0;
  }
}

// RFC 3711 §4.1.1 / §4.2, RFC 6188 (AES-CTR-128/256 with a 16-octet IV, HMAC-SHA1) and
// RFC 7714 (AES-GCM-128/256, 12-octet IV and AAD, 16-octet tag): what srtp.cc's sessions
// ask of each device.
bool Capable(uint8_t id, bool cm, bool gcm) {
  return (!cm || (HasCapability(id, RTE_CRYPTO_SYM_XFORM_CIPHER, RTE_CRYPTO_CIPHER_AES_CTR, 16, 16,
                                0, 0) &&
                  HasCapability(id, RTE_CRYPTO_SYM_XFORM_CIPHER, RTE_CRYPTO_CIPHER_AES_CTR, 32, 16,
                                0, 0) &&
                  HasCapability(id, RTE_CRYPTO_SYM_XFORM_AUTH, RTE_CRYPTO_AUTH_SHA1_HMAC, 20, 0, 20,
                                0))) &&
         (!gcm ||
          (HasCapability(id, RTE_CRYPTO_SYM_XFORM_AEAD, RTE_CRYPTO_AEAD_AES_GCM, 16, 12, 16, 12) &&
           HasCapability(id, RTE_CRYPTO_SYM_XFORM_AEAD, RTE_CRYPTO_AEAD_AES_GCM, 32, 12, 16, 12)));
}

// Everything the ipsec_mb setup holds, in reverse order. Caller holds st.mu.
void TearDownIpsecMb(CryptoState& st) {
  st.generation.store(0);
  st.control.reset();
  for (int r : {kGcmDevice, kMbDevice}) {
    Device& d = st.dev[r];
    if (d.id >= 0 && !(r == kGcmDevice && st.gcm_on_mb)) {
      const uint8_t id = static_cast<uint8_t>(d.id);
      if (d.started) rte_cryptodev_stop(id);
      rte_cryptodev_close(id);
      if (d.made) rte_vdev_uninit(kDeviceName[r]);
    }
    d = Device{};
  }
  st.gcm_on_mb = false;
  if (st.keys_mgr != nullptr) free_mb_mgr(st.keys_mgr);
  st.keys_mgr = nullptr;
  // Sessions still held by contexts go with their pools (the contexts then skip freeing
  // them: their generation is no longer the live one).
  for (rte_mempool* p : st.session_pools) rte_mempool_free(p);
  st.session_pools.clear();
  for (rte_mempool* p : st.key_pools) rte_mempool_free(p);
  st.key_pools.clear();
  rte_mempool_free(st.op_pool);
  st.op_pool = nullptr;
  st.qp_taken.clear();
  st.nb_qps = 0;
}

// Finds or creates device `role` ("crypto_aesni_*_karl"), checks it, configures nb_qps
// queue pairs and starts it.
absl::Status SetUpDevice(CryptoState& st, DeviceRole role, unsigned nb_qps, int socket) {
  Device& d = st.dev[role];
  const char* name = kDeviceName[role];
  const char* driver = kDriverName[role];
  int id = rte_cryptodev_get_dev_id(name);
  if (id < 0) {
    const std::string args =
        absl::StrCat("max_nb_queue_pairs=", nb_qps, ",socket_id=", socket < 0 ? 0 : socket);
    const int r = rte_vdev_init(name, args.c_str());
    if (r != 0) {
      return absl::InternalError(absl::StrCat("srtp.engine ipsec_mb: rte_vdev_init(", name, ", \"",
                                              args, "\") failed: ", ErrnoText(r)));
    }
    d.made = true;
    id = rte_cryptodev_get_dev_id(name);
    if (id < 0) {
      return absl::InternalError(
          absl::StrCat("srtp.engine ipsec_mb: ", name, " created but not found"));
    }
  }
  d.id = id;
  const uint8_t dev = static_cast<uint8_t>(id);
  rte_cryptodev_info info;
  rte_cryptodev_info_get(dev, &info);
  if (info.driver_name == nullptr || std::string_view(info.driver_name) != driver) {
    return absl::FailedPreconditionError(
        absl::StrCat("srtp.engine ipsec_mb: device ", name, " is not a ", driver, " device"));
  }
  if (info.max_nb_queue_pairs < nb_qps) {
    return absl::FailedPreconditionError(
        absl::StrCat("srtp.engine ipsec_mb: ", name, " has ", info.max_nb_queue_pairs,
                     " queue pairs, Karl needs ", nb_qps,
                     " (one per worker and one for the control plane); give --vdev ", name,
                     ",max_nb_queue_pairs=", nb_qps, " or let Karl create it"));
  }
  if (!Capable(dev, role == kMbDevice, role == kGcmDevice || st.gcm_on_mb)) {
    return absl::FailedPreconditionError(
        absl::StrCat("srtp.engine ipsec_mb: ", name,
                     " lacks AES-CTR-128/256 with a 16-octet IV and HMAC-SHA1, or AES-GCM-128/256 "
                     "with a 12-octet IV and AAD"));
  }
  rte_cryptodev_config conf;
  std::memset(&conf, 0, sizeof(conf));
  conf.socket_id = socket;
  conf.nb_queue_pairs = static_cast<uint16_t>(nb_qps);
  conf.ff_disable = RTE_CRYPTODEV_FF_ASYMMETRIC_CRYPTO | RTE_CRYPTODEV_FF_SECURITY;
  int r = rte_cryptodev_configure(dev, &conf);
  if (r < 0) {
    return absl::InternalError(
        absl::StrCat("srtp.engine ipsec_mb: rte_cryptodev_configure(", name, "): ", ErrnoText(r)));
  }
  for (unsigned q = 0; q < nb_qps; ++q) {
    rte_cryptodev_qp_conf qp_conf;
    qp_conf.nb_descriptors = kQueueDescriptors;
    qp_conf.mp_session = nullptr;  // every op carries its session
    r = rte_cryptodev_queue_pair_setup(dev, static_cast<uint16_t>(q), &qp_conf, socket);
    if (r < 0) {
      return absl::InternalError(
          absl::StrCat("srtp.engine ipsec_mb: rte_cryptodev_queue_pair_setup(", name, ", ", q,
                       "): ", ErrnoText(r)));
    }
  }
  d.session_size = rte_cryptodev_sym_get_private_session_size(dev);
  r = rte_cryptodev_start(dev);
  if (r < 0) {
    return absl::InternalError(
        absl::StrCat("srtp.engine ipsec_mb: rte_cryptodev_start(", name, "): ", ErrnoText(r)));
  }
  d.started = true;
  return absl::OkStatus();
}

absl::Status InitIpsecMb(CryptoState& st, unsigned nb_workers, IpsecMbPath path) {
  if (st.generation.load() != 0) {
    return absl::FailedPreconditionError(
        "InitSrtpCrypto(ipsec_mb): already initialised (CloseSrtpCrypto first)");
  }
  if (rte_lcore_count() == 0) {
    return absl::FailedPreconditionError("InitSrtpCrypto(ipsec_mb): call it after rte_eal_init");
  }
  if (nb_workers + 1 > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("InitSrtpCrypto(ipsec_mb): ", nb_workers, " workers, at most 255"));
  }
  if (rte_cryptodev_get_dev_id(kDeviceName[kMbDevice]) < 0 &&
      rte_cryptodev_driver_id_get(kDriverName[kMbDevice]) < 0) {
    return absl::FailedPreconditionError(
        "srtp.engine ipsec_mb: DPDK crypto driver crypto_aesni_mb is not loaded (package "
        "librte-crypto-ipsec-mb23, or EAL -d librte_crypto_ipsec_mb.so); srtp.engine "
        "openssl needs no driver");
  }
  st.gcm_on_mb = srtp_internal::g_force_gcm_on_mb ||
                 (rte_cryptodev_get_dev_id(kDeviceName[kGcmDevice]) < 0 &&
                  rte_cryptodev_driver_id_get(kDriverName[kGcmDevice]) < 0);
  const unsigned nb_qps = nb_workers + 1;
  const int socket = static_cast<int>(rte_socket_id());
  absl::Status status = SetUpDevice(st, kMbDevice, nb_qps, socket);
  if (status.ok()) {
    if (st.gcm_on_mb) {
      st.dev[kGcmDevice] = st.dev[kMbDevice];
    } else {
      status = SetUpDevice(st, kGcmDevice, nb_qps, socket);
    }
  }
  if (!status.ok()) {
    TearDownIpsecMb(st);
    return status;
  }
  st.nb_qps = nb_qps;
  st.qp_taken.assign(nb_qps, false);
  st.session_size = std::max(st.dev[kMbDevice].session_size, st.dev[kGcmDevice].session_size);
  // The whole session: the PMDs read fields at both ends of it and key material in between
  // (prefetching only its first 512 octets measured slower than all or nothing).
  for (int r : {kMbDevice, kGcmDevice}) {
    const uint32_t lines = (64 + st.dev[r].session_size + 63) / 64;
    srtp_internal::g_session_prefetch_lines[r][0] = srtp_internal::g_session_prefetch_lines[r][1] =
        lines >= 64 ? ~uint64_t{0} : (uint64_t{1} << lines) - 1;
  }
  st.direct = path == IpsecMbPath::kDirect;
  if (st.direct) {
    std::string error;
    st.keys_mgr = NewImbManager(&error);
    if (st.keys_mgr == nullptr) {
      TearDownIpsecMb(st);
      return absl::ResourceExhaustedError(absl::StrCat("srtp.engine ipsec_mb: ", error));
    }
    srtp_internal::g_session_prefetch_lines[kMbDevice][0] = kDirectCm128Lines;
    srtp_internal::g_session_prefetch_lines[kMbDevice][1] = kDirectCm256Lines;
    srtp_internal::g_session_prefetch_lines[kGcmDevice][0] =
        srtp_internal::g_session_prefetch_lines[kGcmDevice][1] = DirectGcmLines(st.keys_mgr);
  }
  // Engines hold kChunk ops each: one per worker, the control plane's, and a few spare for
  // engines made by tests and benchmarks.
  const unsigned nb_ops = (nb_qps + 4) * kChunk;
  st.op_pool = rte_crypto_op_pool_create("karl_srtp_ops", RTE_CRYPTO_OP_TYPE_SYMMETRIC, nb_ops, 0,
                                         sizeof(SrtpOpScratch), socket);
  if (st.op_pool == nullptr) {
    const int err = rte_errno;
    TearDownIpsecMb(st);
    return absl::ResourceExhaustedError(
        absl::StrCat("srtp.engine ipsec_mb: crypto op pool of ", nb_ops, ": ", ErrnoText(err)));
  }
  st.generation.store(++st.last_generation);
  const uint8_t devs[2] = {static_cast<uint8_t>(st.dev[kMbDevice].id),
                           static_cast<uint8_t>(st.dev[kGcmDevice].id)};
  st.control = std::make_unique<IpsecMbSrtpEngine>(devs, 0, st.generation.load());
  st.qp_taken[0] = true;
  if (!st.control->Init(st.op_pool)) {
    TearDownIpsecMb(st);
    return absl::ResourceExhaustedError(
        "srtp.engine ipsec_mb: no crypto ops for the control plane");
  }
  return absl::OkStatus();
}

}  // namespace

IpsecMbSrtpEngine::~IpsecMbSrtpEngine() {
  if (mgr_ != nullptr) free_mb_mgr(mgr_);  // the engine's own, whatever became of the setup
  CryptoState& st = State();
  // TearDownIpsecMb zeroes the generation before it destroys the control engine, so only
  // workers' engines get past here (and take the lock).
  if (st.generation.load() != generation_) return;  // the pools are gone already
  std::lock_guard<std::mutex> lock(st.mu);
  if (st.generation.load() != generation_) return;
  if (op_pool_ != nullptr) rte_mempool_put_bulk(op_pool_, reinterpret_cast<void**>(ops_), kChunk);
  if (qp_ < st.qp_taken.size()) st.qp_taken[qp_] = false;
}

bool IpsecMbSrtpEngine::Init(rte_mempool* op_pool) {
  if (rte_crypto_op_bulk_alloc(op_pool, RTE_CRYPTO_OP_TYPE_SYMMETRIC, ops_, kChunk) != kChunk) {
    return false;
  }
  op_pool_ = op_pool;
  if (State().direct) {
    mgr_ = NewImbManager(nullptr);
    if (mgr_ == nullptr) return false;
    cm_jobs_.reset(new IMB_JOB[kChunk]());
    cm_sorted_.reset(new IMB_JOB[kChunk]());
  }
  for (rte_crypto_op* op : ops_) SymOp(op)->m_dst = nullptr;  // in place
  iova_is_va_ = rte_eal_iova_mode() == RTE_IOVA_VA;
  shells_.reset(new rte_mbuf[kChunk]());
  for (uint16_t i = 0; i < kChunk; ++i) {
    rte_mbuf* m = &shells_[i];
    rte_mbuf_refcnt_set(m, 1);
    m->nb_segs = 1;
    m->next = nullptr;
  }
  return true;
}

rte_mbuf* IpsecMbSrtpEngine::Source(const SrtpJob& job, uint16_t slot, uint32_t* base) noexcept {
  if (rte_mbuf* m = job.mbuf; m != nullptr && m->nb_segs == 1) {
    const uint8_t* start = rte_pktmbuf_mtod(m, const uint8_t*);
    const uint8_t* end = static_cast<const uint8_t*>(m->buf_addr) + m->buf_len;
    if (job.pkt >= start && job.pkt <= end && job.capacity <= static_cast<size_t>(end - job.pkt)) {
      *base = static_cast<uint32_t>(job.pkt - start);
      return m;
    }
  }
  // A shell: an mbuf header whose buffer is the packet itself (never freed to a pool).
  rte_mbuf* m = &shells_[slot];
  const uint16_t room = static_cast<uint16_t>(std::min<uint32_t>(job.capacity, UINT16_MAX));
  m->buf_addr = job.pkt;
  m->buf_iova = iova_is_va_ ? reinterpret_cast<rte_iova_t>(job.pkt) : RTE_BAD_IOVA;
  m->buf_len = room;
  m->data_off = 0;
  m->data_len = room;
  m->pkt_len = job.capacity;
  *base = 0;
  return m;
}

void IpsecMbSrtpEngine::Run(SrtpJob* jobs, uint16_t n) noexcept {
  stats_.jobs += n;
  if (stuck_) {
    for (uint16_t i = 0; i < n; ++i) jobs[i].ctx->RunInline(jobs[i]);
    stats_.software_jobs += n;
    return;
  }
  for (uint16_t done = 0; done < n;) {
    const uint16_t m = static_cast<uint16_t>(std::min<unsigned>(n - done, kChunk));
    RunChunk(jobs + done, m);
    done = static_cast<uint16_t>(done + m);
  }
}

void IpsecMbSrtpEngine::Submit(const uint16_t nb[2]) noexcept {
  // With GCM on aesni_mb both queues go to the same queue pair: one after the other.
  uint16_t enqueued[2] = {0, 0}, dequeued[2] = {0, 0};
  uint32_t idle = 0;
  while (dequeued[0] < nb[0] || dequeued[1] < nb[1]) {
    bool progress = false;
    for (int d = 0; d < 2; ++d) {
      if (dequeued[d] == nb[d]) continue;
      if (enqueued[d] < nb[d]) {
        enqueued[d] = static_cast<uint16_t>(
            enqueued[d] + rte_cryptodev_enqueue_burst(dev_[d], qp_, queue_[d] + enqueued[d],
                                                      static_cast<uint16_t>(nb[d] - enqueued[d])));
      }
      const uint16_t got = rte_cryptodev_dequeue_burst(
          dev_[d], qp_, done_, static_cast<uint16_t>(enqueued[d] - dequeued[d]));
      dequeued[d] = static_cast<uint16_t>(dequeued[d] + got);
      progress = progress || got != 0;
      if (dev_[0] == dev_[1]) break;  // the other queue after this one is done
    }
    if (progress) {
      idle = 0;
    } else if (++idle == kMaxIdlePolls) {
      // Ops still out keep NOT_PROCESSED: Finish redoes their packets in software.
      stuck_ = true;
      return;
    }
  }
}

namespace {

// A direct-path AES-CM job's class: which of the library's synchronous bursts it goes
// through, and in which order. 0-2 unprotect (tag over what arrived, then decrypt), 3-5
// protect (encrypt, then the tag); within each, no cipher (SRTCP with E=0 or an empty
// payload), AES-128 or AES-256 counter mode.
constexpr uint8_t kCmClasses = 6;
constexpr uint8_t CmClass(bool protect, bool cipher, uint8_t key_len) noexcept {
  return static_cast<uint8_t>((protect ? 3 : 0) + (!cipher ? 0 : key_len == 16 ? 1 : 2));
}

}  // namespace

void IpsecMbSrtpEngine::QueueCm(rte_crypto_op* op) noexcept {
  const uint16_t iv_at = static_cast<uint16_t>(ScratchOffset() + offsetof(SrtpOpScratch, iv));
  const rte_crypto_sym_op* sym = SymOp(op);
  const DirectKeys::Keys::Cm& k = static_cast<const DirectKeys*>(sym->session)->keys.cm;
  uint8_t* data = rte_pktmbuf_mtod(sym->m_src, uint8_t*);
  // RFC 3711 §3.3: encrypt, then the tag over the ciphertext; to unprotect the tag over
  // what arrived, then decrypt (Karl compares the tags). SRTCP with E=0: no cipher.
  const bool protect = k.kind == DirectKind::kCmProtect;
  const bool cipher = sym->cipher.data.length != 0;
  cm_class_[nb_cm_] = CmClass(protect, cipher, k.key_len);
  // The class stands for the job's order, direction and cipher mode, and the burst calls
  // take those and the hash (HMAC-SHA1) as arguments (RunCmClass).
  IMB_JOB* job = &cm_jobs_[nb_cm_++];
  job->enc_keys = k.aes;
  job->dec_keys = k.aes;
  job->key_len_in_bytes = k.key_len;
  job->src = data;
  job->dst = data + sym->cipher.data.offset;
  job->cipher_start_src_offset_in_bytes = sym->cipher.data.offset;
  job->msg_len_to_cipher_in_bytes = sym->cipher.data.length;
  job->iv = rte_crypto_op_ctod_offset(op, const uint8_t*, iv_at);
  job->iv_len_in_bytes = 16;  // the whole counter block (§4.1.1)
  job->u.HMAC._hashed_auth_key_xor_ipad = k.ipad;
  job->u.HMAC._hashed_auth_key_xor_opad = k.opad;
  job->hash_start_src_offset_in_bytes = sym->auth.data.offset;
  job->msg_len_to_hash_in_bytes = sym->auth.data.length;
  job->auth_tag_output = sym->auth.digest.data;
  job->auth_tag_output_len_in_bytes = 20;
  job->user_data = op;
}

void IpsecMbSrtpEngine::RunCmClass(IMB_JOB* jobs, uint16_t n, uint8_t cls) noexcept {
  // The library checks every job of a burst before it runs any, so a burst that fails
  // changed nothing. Counter mode is its own inverse: should the protect tags fail after
  // the encryption ran, running it again gives the packets back as they came, and the
  // ops' error sends them to software (Finish) like any device error.
  const bool protect = cls >= 3;
  const uint8_t cipher = cls % 3;
  const auto run_cipher = [&] {
    return cipher == 0 ||
           IMB_SUBMIT_CIPHER_BURST(mgr_, jobs, n, IMB_CIPHER_CNTR, IMB_DIR_ENCRYPT,
                                   cipher == 1 ? IMB_KEY_128_BYTES : IMB_KEY_256_BYTES) == n;
  };
  bool ok = protect || IMB_SUBMIT_HASH_BURST(mgr_, jobs, n, IMB_AUTH_HMAC_SHA_1) == n;
  ok = ok && run_cipher();
  if (ok && protect && IMB_SUBMIT_HASH_BURST(mgr_, jobs, n, IMB_AUTH_HMAC_SHA_1) != n) {
    ok = false;
    run_cipher();
  }
  const uint8_t status = ok ? RTE_CRYPTO_OP_STATUS_SUCCESS : RTE_CRYPTO_OP_STATUS_ERROR;
  for (uint16_t i = 0; i < n; ++i) static_cast<rte_crypto_op*>(jobs[i].user_data)->status = status;
}

void IpsecMbSrtpEngine::RunCm() noexcept {
  const uint16_t n = nb_cm_;
  nb_cm_ = 0;
  bool mixed = false;
  for (uint16_t i = 1; i < n; ++i) mixed |= cm_class_[i] != cm_class_[0];
  if (!mixed) {  // the usual chunk: one direction and suite
    RunCmClass(cm_jobs_.get(), n, cm_class_[0]);
    return;
  }
  // Sorted by class, in job order within each (a packet has one job: no order between
  // classes matters).
  uint16_t count[kCmClasses] = {}, at[kCmClasses] = {};
  for (uint16_t i = 0; i < n; ++i) ++count[cm_class_[i]];
  for (uint8_t c = 1; c < kCmClasses; ++c) at[c] = static_cast<uint16_t>(at[c - 1] + count[c - 1]);
  for (uint16_t i = 0; i < n; ++i) cm_sorted_[at[cm_class_[i]]++] = cm_jobs_[i];
  for (uint8_t c = 0; c < kCmClasses; ++c) {
    if (count[c] != 0) RunCmClass(&cm_sorted_[at[c] - count[c]], count[c], c);
  }
}

void IpsecMbSrtpEngine::RunGcm(rte_crypto_op* op, uint8_t mode) noexcept {
  const uint16_t iv_at = static_cast<uint16_t>(ScratchOffset() + offsetof(SrtpOpScratch, iv));
  const rte_crypto_sym_op* sym = SymOp(op);
  const auto* k = static_cast<const DirectKeys*>(sym->session);
  uint8_t* p = rte_pktmbuf_mtod(sym->m_src, uint8_t*) + sym->aead.data.offset;
  const uint64_t len = sym->aead.data.length;
  const uint8_t* iv = rte_crypto_op_ctod_offset(op, const uint8_t*, iv_at);
  const uint8_t* aad = sym->aead.aad.data;
  gcm_context_data ctx;
  if (mode & kGcmEncrypt) {  // RFC 7714 §8-9: the tag after the payload
    if (!(mode & kGcmAes256)) {
      IMB_AES128_GCM_ENC(mgr_, &k->keys.gcm, &ctx, p, p, len, iv, aad, 12, sym->aead.digest.data,
                         16);
    } else {
      IMB_AES256_GCM_ENC(mgr_, &k->keys.gcm, &ctx, p, p, len, iv, aad, 12, sym->aead.digest.data,
                         16);
    }
    op->status = RTE_CRYPTO_OP_STATUS_SUCCESS;
    return;
  }
  uint8_t tag[16];
  if (!(mode & kGcmAes256)) {
    IMB_AES128_GCM_DEC(mgr_, &k->keys.gcm, &ctx, p, p, len, iv, aad, 12, tag, 16);
  } else {
    IMB_AES256_GCM_DEC(mgr_, &k->keys.gcm, &ctx, p, p, len, iv, aad, 12, tag, 16);
  }
  op->status = CRYPTO_memcmp(tag, sym->aead.digest.data, 16) == 0
                   ? RTE_CRYPTO_OP_STATUS_SUCCESS
                   : RTE_CRYPTO_OP_STATUS_AUTH_FAILED;
}

void IpsecMbSrtpEngine::RunChunk(SrtpJob* jobs, uint16_t n) noexcept {
  const uint64_t epoch = ++epoch_;
  // Streams are many and their state is cold. A software pipeline: while job i is framed,
  // job i + kAhead's context lines (config and the SSRC slot line) and packet header are
  // fetched, and job i + kAhead / 2's session, other slot or large replay bitmap (whose
  // addresses are in those context lines).
  constexpr uint16_t kAhead = 8;
  auto fetch_context = [jobs](uint16_t i) {
    jobs[i].ctx->PrefetchLines(jobs[i].op);
    rte_prefetch0(jobs[i].pkt);
  };
  for (uint16_t i = 0; i < std::min<uint16_t>(n, kAhead); ++i) fetch_context(i);
  for (uint16_t i = 0; i < std::min<uint16_t>(n, kAhead / 2); ++i) {
    jobs[i].ctx->PrefetchFor(jobs[i]);
  }
  // Framing in job order: index, IV, AAD, ROC; early verdicts; software protects.
  uint16_t nb[2] = {0, 0};
  for (uint16_t i = 0; i < n; ++i) {
    if (i + kAhead < n) fetch_context(static_cast<uint16_t>(i + kAhead));
    if (i + kAhead / 2 < n) jobs[i + kAhead / 2].ctx->PrefetchFor(jobs[i + kAhead / 2]);
    SrtpJob& job = jobs[i];
    rte_crypto_op* op = ops_[i];
    uint32_t base = 0;
    SymOp(op)->m_src = Source(job, i, &base);
    if (job.ctx->Prepare(job, op, base, epoch, &pending_[i]) == SrtpContext::Step::kDevice) {
      const int d = job.ctx->aead_ ? kGcmDevice : kMbDevice;
      if (mgr_ != nullptr && d == kMbDevice) {
        // The direct path's AES-CM job is made while the op is in L1 and runs after the
        // loop, in the library's bursts (the verdicts are still taken in job order below).
        QueueCm(op);
        ++nb[d];
      } else {
        if (d == kGcmDevice && mgr_ != nullptr) {
          // The session protects for a protect op and unprotects for an unprotect op
          // (SrtpContext::DeviceSession); the suite gives the key size.
          const bool encrypt = job.op == SrtpOp::kProtect || job.op == SrtpOp::kProtectRtcp;
          gcm_mode_[nb[d]] = static_cast<uint8_t>((encrypt ? kGcmEncrypt : 0) |
                                                  (job.ctx->aes256() ? kGcmAes256 : 0));
        }
        queue_[d][nb[d]++] = op;
      }
    }
  }
  if (mgr_ != nullptr) {
    if (nb[kMbDevice] != 0) RunCm();
    // GCM after the loop too: run between the framings, they measured 6% slower.
    for (uint16_t k = 0; k < nb[kGcmDevice]; ++k) RunGcm(queue_[kGcmDevice][k], gcm_mode_[k]);
  } else if (nb[0] + nb[1] != 0) {
    Submit(nb);
  }
  stats_.device_ops += nb[0] + nb[1];
  // Tags, MKIs, replay checks and state updates, in job order.
  for (uint16_t i = 0; i < n; ++i) {
    SrtpJob& job = jobs[i];
    switch (pending_[i].step) {
      case SrtpContext::Step::kDevice:
        if (ops_[i]->status != RTE_CRYPTO_OP_STATUS_SUCCESS &&
            ops_[i]->status != RTE_CRYPTO_OP_STATUS_AUTH_FAILED) {
          ++stats_.device_errors;
        }
        if (job.ctx->Finish(job, ops_[i], pending_[i])) ++stats_.software_jobs;
        break;
      case SrtpContext::Step::kInline:
        job.ctx->RunInline(job);
        ++stats_.software_jobs;
        break;
      case SrtpContext::Step::kDone:
        break;
    }
  }
}

// ---- Set-up -----------------------------------------------------------------------------------

absl::Status InitSrtpCrypto(SrtpEngineKind kind, unsigned nb_workers, IpsecMbPath path) {
  CryptoState& st = State();
  std::lock_guard<std::mutex> lock(st.mu);
  switch (kind) {
    case SrtpEngineKind::kOpenssl:
      return absl::OkStatus();
    case SrtpEngineKind::kLibsrtp:
      if (!srtp_internal::EnsureLibsrtp()) {
        return absl::InternalError("srtp.engine libsrtp: srtp_init failed");
      }
      return absl::OkStatus();
    case SrtpEngineKind::kIpsecMb:
      return InitIpsecMb(st, nb_workers, path);
  }
  return absl::InvalidArgumentError("InitSrtpCrypto: unknown engine");
}

void CloseSrtpCrypto() {
  CryptoState& st = State();
  std::lock_guard<std::mutex> lock(st.mu);
  TearDownIpsecMb(st);
  srtp_internal::ShutdownLibsrtp();
}

std::unique_ptr<SrtpEngine> CreateSrtpEngine(SrtpEngineKind kind, unsigned worker_index) {
  if (kind != SrtpEngineKind::kIpsecMb) return std::make_unique<SoftwareSrtpEngine>();
  CryptoState& st = State();
  std::lock_guard<std::mutex> lock(st.mu);
  const uint64_t generation = st.generation.load();
  if (generation == 0 || worker_index + 1 >= st.nb_qps || st.qp_taken[worker_index + 1]) {
    return nullptr;
  }
  const uint16_t qp = static_cast<uint16_t>(worker_index + 1);
  const uint8_t devs[2] = {static_cast<uint8_t>(st.dev[kMbDevice].id),
                           static_cast<uint8_t>(st.dev[kGcmDevice].id)};
  auto engine = std::make_unique<IpsecMbSrtpEngine>(devs, qp, generation);
  if (!engine->Init(st.op_pool)) return nullptr;
  st.qp_taken[qp] = true;
  return engine;
}

// ---- Internals --------------------------------------------------------------------------------

namespace {

// The direct path's keys from the xforms srtp.cc gives for a cryptodev session: AES-CTR
// then HMAC-SHA1 (protect), HMAC-SHA1 then AES-CTR (unprotect), or AES-GCM. Caller holds
// st.mu; `pool` has a free object.
void* MakeDirectKeysIn(CryptoState& st, rte_mempool* pool, const rte_crypto_sym_xform* x) {
  void* obj = nullptr;
  if (rte_mempool_get(pool, &obj) != 0) return nullptr;
  auto* k = static_cast<DirectKeys*>(obj);
  std::memset(k, 0, sizeof(*k));
  IMB_MGR* m = st.keys_mgr;
  if (x->type == RTE_CRYPTO_SYM_XFORM_AEAD) {
    if (x->aead.key.length == 16) {
      IMB_AES128_GCM_PRE(m, x->aead.key.data, &k->keys.gcm);
    } else {
      IMB_AES256_GCM_PRE(m, x->aead.key.data, &k->keys.gcm);
    }
    return k;
  }
  const rte_crypto_sym_xform* cipher = x->type == RTE_CRYPTO_SYM_XFORM_CIPHER ? x : x->next;
  const rte_crypto_sym_xform* auth = x->type == RTE_CRYPTO_SYM_XFORM_AUTH ? x : x->next;
  DirectKeys::Keys::Cm& cm = k->keys.cm;
  cm.kind =
      x->type == RTE_CRYPTO_SYM_XFORM_CIPHER ? DirectKind::kCmProtect : DirectKind::kCmUnprotect;
  cm.key_len = static_cast<uint8_t>(cipher->cipher.key.length);
  alignas(16) uint8_t dec[16 * 15];
  if (cm.key_len == 16) {
    IMB_AES_KEYEXP_128(m, cipher->cipher.key.data, cm.aes, dec);
  } else {
    IMB_AES_KEYEXP_256(m, cipher->cipher.key.data, cm.aes, dec);
  }
  // RFC 2104: the SHA-1 states after (key ^ ipad) and (key ^ opad), one block each.
  alignas(16) uint8_t block[64];
  for (int pass = 0; pass < 2; ++pass) {
    std::memset(block, pass == 0 ? 0x36 : 0x5c, sizeof(block));
    for (uint16_t i = 0; i < auth->auth.key.length && i < 64; ++i)
      block[i] ^= auth->auth.key.data[i];
    IMB_SHA1_ONE_BLOCK(m, block, pass == 0 ? cm.ipad : cm.opad);
  }
  OPENSSL_cleanse(block, sizeof(block));
  OPENSSL_cleanse(dec, sizeof(dec));
  return k;
}

}  // namespace

namespace srtp_internal {

uint64_t g_session_prefetch_lines[2][2] = {};
bool g_force_gcm_on_mb = false;

int CryptodevId(bool aead) noexcept {
  CryptoState& st = State();
  return st.generation.load() != 0 ? st.dev[aead ? kGcmDevice : kMbDevice].id : -1;
}

uint64_t CryptodevGeneration() noexcept { return State().generation.load(); }

bool IpsecMbDirect() noexcept { return State().generation.load() != 0 && State().direct; }

namespace {

// A free object of the pools `pools` (sessions or direct keys), growing them by a pool
// made by `make(name)`; nullptr if that fails. Caller holds st.mu.
template <typename Make>
rte_mempool* PoolWithRoom(std::vector<rte_mempool*>& pools, const char* prefix, Make make) {
  for (rte_mempool* p : pools) {
    if (rte_mempool_avail_count(p) != 0) return p;
  }
  // Grow: another pool (control plane, allocation allowed).
  const std::string name = absl::StrCat(prefix, pools.size());
  rte_mempool* pool = make(name.c_str());
  if (pool != nullptr) pools.push_back(pool);
  return pool;
}

}  // namespace

void* CreateCryptodevSession(rte_crypto_sym_xform* xforms) noexcept {
  CryptoState& st = State();
  std::lock_guard<std::mutex> lock(st.mu);
  if (st.generation.load() == 0) return nullptr;
  rte_mempool* pool = PoolWithRoom(st.session_pools, "karl_srtp_sess", [&](const char* name) {
    return rte_cryptodev_sym_session_pool_create(name, kSessionsPerPool, st.session_size, 0, 0,
                                                 static_cast<int>(rte_socket_id()));
  });
  if (pool == nullptr) return nullptr;
  const bool aead = xforms->type == RTE_CRYPTO_SYM_XFORM_AEAD;
  return rte_cryptodev_sym_session_create(
      static_cast<uint8_t>(st.dev[aead ? kGcmDevice : kMbDevice].id), xforms, pool);
}

void FreeCryptodevSession(void* session, bool aead, uint64_t generation) noexcept {
  if (session == nullptr) return;
  CryptoState& st = State();
  std::lock_guard<std::mutex> lock(st.mu);
  if (generation == 0 || st.generation.load() != generation) return;
  rte_cryptodev_sym_session_free(static_cast<uint8_t>(st.dev[aead ? kGcmDevice : kMbDevice].id),
                                 session);
}

void* CreateEngineSession(rte_crypto_sym_xform* xforms) noexcept {
  CryptoState& st = State();
  if (!st.direct) return CreateCryptodevSession(xforms);
  std::lock_guard<std::mutex> lock(st.mu);
  if (st.generation.load() == 0) return nullptr;
  rte_mempool* pool = PoolWithRoom(st.key_pools, "karl_srtp_keys", [](const char* name) {
    return rte_mempool_create(name, kSessionsPerPool, sizeof(DirectKeys), 0, 0, nullptr, nullptr,
                              nullptr, nullptr, static_cast<int>(rte_socket_id()), 0);
  });
  return pool == nullptr ? nullptr : MakeDirectKeysIn(st, pool, xforms);
}

void FreeEngineSession(void* session, bool aead, uint64_t generation) noexcept {
  CryptoState& st = State();
  if (!st.direct) return FreeCryptodevSession(session, aead, generation);
  if (session == nullptr) return;
  std::lock_guard<std::mutex> lock(st.mu);
  if (generation == 0 || st.generation.load() != generation) return;
  OPENSSL_cleanse(session, sizeof(DirectKeys));
  rte_mempool_put(rte_mempool_from_obj(session), session);
}

uint16_t OpScratchOffset() noexcept { return ScratchOffset(); }

rte_mempool* CryptoOpPool() noexcept {
  return State().generation.load() != 0 ? State().op_pool : nullptr;
}

SrtpEngine* ControlPlaneEngine() noexcept { return State().control.get(); }

int ReserveQueuePair(unsigned worker_index) noexcept {
  CryptoState& st = State();
  std::lock_guard<std::mutex> lock(st.mu);
  if (st.generation.load() == 0 || worker_index + 1 >= st.nb_qps || st.qp_taken[worker_index + 1]) {
    return -1;
  }
  st.qp_taken[worker_index + 1] = true;
  return static_cast<int>(worker_index + 1);
}

void ReleaseQueuePair(int qp) noexcept {
  CryptoState& st = State();
  std::lock_guard<std::mutex> lock(st.mu);
  if (qp > 0 && static_cast<size_t>(qp) < st.qp_taken.size()) st.qp_taken[qp] = false;
}

}  // namespace srtp_internal
}  // namespace karl::dp
