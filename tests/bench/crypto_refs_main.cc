// karl-crypto-bench: SRTP crypto per core, Karl's engines beside libsrtp2 and the raw
// ipsec_mb cryptodev, measured in the same run (tests/bench/crypto_refs.h). Not a test.
//
//   karl-crypto-bench [--seconds S] [--streams N] [--burst B]
//
// EAL: one lcore, --no-huge -m 512 --no-pci; the crypto_aesni_mb device is made by
// InitSrtpCrypto (two worker queue pairs: one for the engines, one for the raw figure).
#include <rte_eal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/bench/crypto_refs.h"

namespace {

using karl::bench::CryptoBenchOptions;
using karl::bench::EngineWork;
using karl::dp::SrtpEngineKind;
using karl::dp::SrtpSuite;

void Row(const char* what, double mpps, double raw, double lib) {
  if (mpps < 0) {
    std::printf("  %-30s     n/a\n", what);
    return;
  }
  std::printf("  %-30s %7.2f Mpps %7.1f ns", what, mpps, 1e3 / mpps);
  if (raw > 0) std::printf("   %5.2fx raw", mpps / raw);
  if (lib > 0) std::printf("   %6.1fx libsrtp2", mpps / lib);
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  CryptoBenchOptions opt;
  std::string only;  // e.g. "ipsec_mb": engine rows whose name contains it
  bool refs = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seconds" && i + 1 < argc) {
      opt.seconds = std::atof(argv[++i]);
    } else if (a == "--streams" && i + 1 < argc) {
      opt.streams = static_cast<unsigned>(std::atoi(argv[++i]));
    } else if (a == "--no-refs") {
      refs = false;
    } else if (a == "--only" && i + 1 < argc) {
      only = argv[++i];
    } else if (a == "--burst" && i + 1 < argc) {
      opt.burst = static_cast<uint16_t>(std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr,
                   "usage: %s [--seconds S] [--streams N] [--burst B] [--only TEXT] [--no-refs]\n",
                   argv[0]);
      return 2;
    }
  }
  const std::string prefix = "karl-crypto-bench-" + std::to_string(getpid());
  std::vector<std::string> args = {"karl-crypto-bench",
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
  std::vector<char*> eal_argv;
  for (auto& s : args) eal_argv.push_back(s.data());
  if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
    std::fprintf(stderr, "karl-crypto-bench: rte_eal_init failed\n");
    return 1;
  }
  const absl::Status st = karl::dp::InitSrtpCrypto(SrtpEngineKind::kIpsecMb, 2);
  if (!st.ok()) {
    std::fprintf(stderr, "karl-crypto-bench: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  if (!karl::dp::InitSrtpCrypto(SrtpEngineKind::kLibsrtp, 2).ok()) return 1;

  std::printf(
      "SRTP per core: %u streams with their own keys, %u-octet RTP, bursts of %u, "
      "%.1f s per figure\n",
      opt.streams, 12 + opt.payload, opt.burst, opt.seconds);
  CryptoBenchOptions raw_opt = opt;
  raw_opt.worker_index = 1;
  for (SrtpSuite suite : {SrtpSuite::kAesCm128HmacSha1_80, SrtpSuite::kAeadAes128Gcm}) {
    std::printf("%s\n", std::string(karl::dp::GetSrtpSuiteInfo(suite).name).c_str());
    auto wanted = [&](const std::string& name) {
      return only.empty() || name.find(only) != std::string::npos;
    };
    // The references are measured whenever a ratio needs them.
    const double lib = refs ? karl::bench::LibsrtpProtectMpps(suite, opt) : -1;
    const double raw = refs ? karl::bench::RawCryptodevMpps(suite, raw_opt) : -1;
    Row("reference libsrtp2 protect", lib, 0, 0);
    if (refs && opt.streams > 100) {  // libsrtp2 on NSS slows down with its number of sessions
      CryptoBenchOptions few = opt;
      few.streams = 100;
      Row("  (libsrtp2 with 100 streams)", karl::bench::LibsrtpProtectMpps(suite, few), 0, 0);
    }
    Row("reference raw cryptodev", raw, 0, 0);
    const double direct = refs ? karl::bench::RawIpsecMbMpps(suite, opt) : -1;
    Row("reference raw ipsec-mb (direct)", direct, raw, 0);
    if (refs) Row("reference raw cpu-crypto", karl::bench::RawCpuCryptoMpps(suite, opt), raw, 0);
    for (SrtpEngineKind kind :
         {SrtpEngineKind::kIpsecMb, SrtpEngineKind::kOpenssl, SrtpEngineKind::kLibsrtp}) {
      for (EngineWork work : {EngineWork::kProtect, EngineWork::kUnprotect, EngineWork::kRekey}) {
        const char* wname = work == EngineWork::kProtect     ? "protect"
                            : work == EngineWork::kUnprotect ? "unprotect"
                                                             : "re-key";
        const std::string name =
            "karl " + std::string(karl::dp::SrtpEngineName(kind)) + " " + wname;
        if (!wanted(name)) continue;
        Row(name.c_str(), karl::bench::EngineMpps(kind, suite, work, opt), raw, lib);
      }
    }
  }
  karl::dp::CloseSrtpCrypto();
  const std::string dir = rte_eal_get_runtime_dir();
  rte_eal_cleanup();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}
