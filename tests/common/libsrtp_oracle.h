// libsrtp2 as the conformance oracle in tests: one srtp_t session of one suite and
// master key, protecting or unprotecting whole packets (Bytes). Test code only.
#pragma once

#include <srtp2/srtp.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "dataplane/srtp.h"

namespace karl::test {

// libsrtp2 as the oracle. ssrc_any_* templates: one stream per SSRC on first use.
class LibSrtp {
 public:
  LibSrtp(dp::SrtpSuite suite, const std::vector<uint8_t>& key_salt, bool outbound,
          const std::vector<uint8_t>& mki = {}, bool rtcp_auth_only = false)
      : key_(key_salt), mki_(mki) {
    srtp_policy_t p;
    std::memset(&p, 0, sizeof(p));
    switch (suite) {
      case dp::SrtpSuite::kAesCm128HmacSha1_80:
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtcp);
        break;
      case dp::SrtpSuite::kAesCm128HmacSha1_32:
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&p.rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtcp);  // RFC 4568 §6.2.2
        break;
      case dp::SrtpSuite::kAes256CmHmacSha1_80:
        srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(&p.rtp);
        srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(&p.rtcp);
        break;
      case dp::SrtpSuite::kAes256CmHmacSha1_32:
        srtp_crypto_policy_set_aes_cm_256_hmac_sha1_32(&p.rtp);
        srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(&p.rtcp);
        break;
      case dp::SrtpSuite::kAeadAes128Gcm:
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&p.rtp);
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&p.rtcp);
        break;
      case dp::SrtpSuite::kAeadAes256Gcm:
        srtp_crypto_policy_set_aes_gcm_256_16_auth(&p.rtp);
        srtp_crypto_policy_set_aes_gcm_256_16_auth(&p.rtcp);
        break;
    }
    if (rtcp_auth_only) p.rtcp.sec_serv = sec_serv_auth;  // SRTCP with E = 0
    p.ssrc.type = outbound ? ssrc_any_outbound : ssrc_any_inbound;
    if (mki_.empty()) {
      p.key = key_.data();
    } else {
      master_.key = key_.data();
      master_.mki_id = mki_.data();
      master_.mki_size = static_cast<unsigned>(mki_.size());
      masters_[0] = &master_;
      p.keys = masters_;
      p.num_master_keys = 1;
    }
    p.window_size = 128;
    p.allow_repeat_tx = 0;
    p.next = nullptr;
    status_ = srtp_create(&session_, &p);
  }
  ~LibSrtp() {
    if (session_ != nullptr) srtp_dealloc(session_);
  }
  LibSrtp(const LibSrtp&) = delete;
  LibSrtp& operator=(const LibSrtp&) = delete;
  srtp_err_status_t status() const { return status_; }

  srtp_err_status_t Protect(std::vector<uint8_t>* pkt, bool rtcp = false) {
    int len = static_cast<int>(pkt->size());
    pkt->resize(pkt->size() + SRTP_MAX_TRAILER_LEN + 4);
    const unsigned use_mki = mki_.empty() ? 0 : 1;
    const srtp_err_status_t st =
        rtcp ? srtp_protect_rtcp_mki(session_, pkt->data(), &len, use_mki, 0)
             : srtp_protect_mki(session_, pkt->data(), &len, use_mki, 0);
    pkt->resize(static_cast<size_t>(len));
    return st;
  }
  srtp_err_status_t Unprotect(std::vector<uint8_t>* pkt, bool rtcp = false) {
    int len = static_cast<int>(pkt->size());
    const unsigned use_mki = mki_.empty() ? 0 : 1;
    const srtp_err_status_t st = rtcp
                                     ? srtp_unprotect_rtcp_mki(session_, pkt->data(), &len, use_mki)
                                     : srtp_unprotect_mki(session_, pkt->data(), &len, use_mki);
    if (st == srtp_err_status_ok) pkt->resize(static_cast<size_t>(len));
    return st;
  }

 private:
  std::vector<uint8_t> key_;
  std::vector<uint8_t> mki_;
  srtp_master_key_t master_{};
  srtp_master_key_t* masters_[1] = {};
  srtp_t session_ = nullptr;
  srtp_err_status_t status_ = srtp_err_status_fail;
};

}  // namespace karl::test
