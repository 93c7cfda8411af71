"""End to end, without Karl: the SRTP oracles the Karl SRTP tests rely on.

karl-srtp-peer (libsrtp2) must interoperate with itself for every suite Karl offers,
and with rtpengine (an independent SRTP implementation, driven over its ng protocol)
bridging plain RTP to SDES-keyed SRTP. If these fail, a failure of test_srtp.py says
nothing about Karl.

Topology: one bridge, three namespaces:
  A: 198.51.100.2/24, 2001:db8:a::2/64   (peer)
  B: 198.51.100.3/24, 2001:db8:a::3/64   (peer)
  R: 198.51.100.4/24, 2001:db8:a::4/64   (rtpengine, ng on 127.0.0.1:2223 inside R)
"""
import os
import unittest

from harness import (SRTP_PEER, SRTP_SUITES, Bridge, Netns, Rtpengine, endpoint, gen_key,
                     make_sdp, parse_sdp, srtp_peer_bg, srtp_peer_result, wait_ipv6_ready)

N = 1000  # RTP packets per direction per exchange
RTCP = 5  # SRTCP compounds per direction

A4, B4, R4 = "198.51.100.2", "198.51.100.3", "198.51.100.4"
A6, B6, R6 = "2001:db8:a::2", "2001:db8:a::3", "2001:db8:a::4"


def peer_args(bind, port, remote, rport, suite=None, send_key=None, recv_key=None,
              count=N, expect=N, rtcp_port=None, extra=()):
    args = ["--bind", endpoint(bind, port), "--remote", endpoint(remote, rport),
            "--count", count, "--expect", expect, "--interval-us", 500,
            "--rtcp", "--rtcp-count", RTCP, "--expect-rtcp", RTCP if expect else 0,
            "--send-delay-ms", 300, "--timeout", 15]
    if suite:
        args += ["--suite", suite]
    if send_key:
        args += ["--send-key", send_key]
    if recv_key:
        args += ["--recv-key", recv_key]
    if rtcp_port is not None:
        args += ["--remote-rtcp-port", rtcp_port]
    return args + list(extra)


class SrtpPeersTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tag = "%d" % (os.getpid() % 100000)
        cls.made = []
        try:
            if not os.access(SRTP_PEER, os.X_OK):
                raise RuntimeError("%s is not built (ninja -C $KARL_BUILD_DIR)" % SRTP_PEER)
            cls.br = Bridge("kspx" + tag)
            cls.made.append(cls.br)
            cls.ns = {}
            for name, v4, v6 in (("a", A4, A6), ("b", B4, B6), ("r", R4, R6)):
                ns = Netns("karl-sp%s-%s" % (name, tag), "ksp%s%s" % (name, tag),
                           "kspn%s%s" % (name, tag), [v4 + "/24", v6 + "/64"])
                cls.made.append(ns)
                ns.run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", check=False)
                cls.br.add(ns.veth_root)
                cls.ns[name] = ns
            cls.a, cls.b, cls.r = cls.ns["a"], cls.ns["b"], cls.ns["r"]
            for ns in cls.ns.values():
                wait_ipv6_ready(ns)
            cls.rtpe = Rtpengine(cls.r, [R4, R6])
            cls.made.append(cls.rtpe)
            cls.rtpe.wait_ready()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for thing in reversed(cls.made):
            thing.close()

    def assert_clean(self, res, what, n=N, rtcp=RTCP):
        """Every packet arrived once, intact, in order, unprotected without error."""
        self.assertEqual(res["received"], n, "%s: %s" % (what, res))
        for key in ("corrupt", "out_of_order", "duplicates", "not_rtp", "seq_offset_changes",
                    "rtcp_corrupt"):
            self.assertEqual(res[key], 0, "%s: %s" % (what, res))
        self.assertEqual(res["unprotect_errors"], {}, "%s: %s" % (what, res))
        self.assertEqual(res["rtcp_unprotect_errors"], {}, "%s: %s" % (what, res))
        self.assertEqual(res["protect_errors"], {}, "%s: %s" % (what, res))
        self.assertEqual((res["first_counter"], res["last_counter"]), (0, n - 1), what)
        self.assertEqual(res["received_rtcp"], rtcp, "%s: %s" % (what, res))

    def exchange(self, a_args, b_args):
        pa = srtp_peer_bg(self.a, *a_args)
        pb = srtp_peer_bg(self.b, *b_args)
        return srtp_peer_result(pa), srtp_peer_result(pb)

    # ------------------------------------------------------------ peer <-> peer

    def test_peer_to_peer_every_suite(self):
        for i, suite in enumerate(SRTP_SUITES):
            with self.subTest(suite=suite):
                ka, kb = gen_key(suite), gen_key(suite)
                pa, pb = 40000 + 10 * i, 41000 + 10 * i
                ra, rb = self.exchange(
                    peer_args(A4, pa, B4, pb, suite, ka, kb),
                    peer_args(B4, pb, A4, pa, suite, kb, ka, extra=["--ssrc", 0x1234]))
                self.assert_clean(ra, suite + " B->A")
                self.assert_clean(rb, suite + " A->B")
                self.assertEqual(ra["sources"], ["%s:%d" % (B4, pb)])
                self.assertEqual(ra["ssrcs"], [0x1234])

    def test_peer_to_peer_ipv6_mki_and_roc_wrap(self):
        # Sequence numbers wrap (ROC 0 -> 1, RFC 3711 §3.3.1) and keys carry an MKI.
        suite = "AEAD_AES_256_GCM"
        ka, kb = gen_key(suite) + "|2^31|3:2", gen_key(suite) + "|2^31|9:2"
        ra, rb = self.exchange(
            peer_args(A6, 40100, B6, 41100, suite, ka, kb, extra=["--seq-start", 65000]),
            peer_args(B6, 41100, A6, 40100, suite, kb, ka, extra=["--seq-start", 65500]))
        self.assert_clean(ra, "v6 B->A")
        self.assert_clean(rb, "v6 A->B")
        self.assertEqual(ra["sources"], ["2001:db8:a::3:41100"])

    def test_peer_counts_wrong_key_and_replay(self):
        # The counters test_srtp.py reads off the peer: auth failures and replays.
        suite = "AES_CM_128_HMAC_SHA1_80"
        good, wrong = gen_key(suite), gen_key(suite)
        ra, _ = self.exchange(
            peer_args(A4, 40200, B4, 41200, suite, recv_key=good, count=0, expect=50),
            peer_args(B4, 41200, A4, 40200, suite, send_key=wrong, count=50, expect=0))
        self.assertEqual(ra["received"], 0, ra)
        self.assertEqual(ra["unprotect_errors"], {"auth_fail": 50}, ra)
        self.assertEqual(ra["rtcp_unprotect_errors"], {"auth_fail": RTCP}, ra)
        ra, rb = self.exchange(
            peer_args(A4, 40210, B4, 41210, suite, recv_key=good, count=0, expect=100),
            peer_args(B4, 41210, A4, 40210, suite, send_key=good, count=100, expect=0,
                      extra=["--replay", 7]))
        self.assertEqual(rb["replayed"], 7, rb)
        self.assertEqual(ra["received"], 100, ra)
        self.assertEqual((ra["duplicates"], ra["corrupt"], ra["out_of_order"]), (0, 0, 0), ra)
        # libsrtp2's replay check (RFC 3711 §3.3.2) drops every copy.
        self.assertEqual(ra["unprotect_errors"], {"replay_fail": 7}, ra)

    # ------------------------------------------------------------ via rtpengine

    def offer(self, call_id, sdp, **extra):
        msg = {"command": "offer", "call-id": call_id, "from-tag": "caller", "sdp": sdp,
               "DTLS": "off"}
        msg.update(extra)
        return parse_sdp(self.rtpe.request(msg)["sdp"])

    def answer(self, call_id, sdp, **extra):
        msg = {"command": "answer", "call-id": call_id, "from-tag": "caller",
               "to-tag": "callee", "sdp": sdp, "DTLS": "off"}
        msg.update(extra)
        return parse_sdp(self.rtpe.request(msg)["sdp"])

    def delete(self, call_id):
        self.rtpe.request({"command": "delete", "call-id": call_id, "from-tag": "caller"})

    @staticmethod
    def crypto_for(sdp, suite):
        found = [c for c in sdp["cryptos"] if c[1] == suite]
        if not found:
            raise AssertionError("rtpengine offered no %s: %s" % (suite, sdp["cryptos"]))
        return found[0]

    def via_rtpengine_plain_offers(self, suite, a, b, r, base):
        """A (plain) offers RTP/AVP; rtpengine offers RTP/SAVP with SDES keys of its own to
        B (libsrtp); B answers with one crypto line carrying B's key."""
        call = "plain-offers-%s-%d" % (suite, base)
        to_b = self.offer(call, make_sdp(a, base), **{"transport-protocol": "RTP/SAVP"})
        self.assertEqual(to_b["proto"], "RTP/SAVP")
        self.assertEqual(to_b["address"], r)
        tag, _, rtpe_key = self.crypto_for(to_b, suite)
        b_key = gen_key(suite)
        to_a = self.answer(call, make_sdp(b, base + 2, "RTP/SAVP", [(tag, suite, b_key)]))
        self.assertEqual((to_a["proto"], to_a["address"], to_a["cryptos"]), ("RTP/AVP", r, []))
        try:
            ra, rb = self.exchange(
                peer_args(a, base, r, to_a["port"], rtcp_port=to_a["rtcp_port"]),
                peer_args(b, base + 2, r, to_b["port"], suite, b_key, rtpe_key,
                          rtcp_port=to_b["rtcp_port"]))
        finally:
            self.delete(call)
        self.assert_clean(ra, "%s rtpengine->A (plain)" % suite)
        self.assert_clean(rb, "%s rtpengine->B (SRTP)" % suite)
        self.assertEqual(ra["sources"], ["%s:%d" % (r, to_a["port"])])
        self.assertEqual(rb["sources"], ["%s:%d" % (r, to_b["port"])])

    def via_rtpengine_srtp_offers(self, suite, a, b, r, base):
        """B (libsrtp) offers RTP/SAVP with its key; rtpengine offers plain RTP/AVP to A;
        A answers plain; rtpengine answers B with a key of its own for B's tag."""
        call = "srtp-offers-%s-%d" % (suite, base)
        b_key = gen_key(suite)
        to_a = self.offer(call, make_sdp(b, base + 2, "RTP/SAVP", [(5, suite, b_key)]),
                          **{"transport-protocol": "RTP/AVP"})
        self.assertEqual((to_a["proto"], to_a["cryptos"]), ("RTP/AVP", []))
        to_b = self.answer(call, make_sdp(a, base))
        self.assertEqual(to_b["proto"], "RTP/SAVP")
        self.assertEqual(len(to_b["cryptos"]), 1, to_b)
        tag, got_suite, rtpe_key = to_b["cryptos"][0]
        self.assertEqual((tag, got_suite), (5, suite))
        try:
            ra, rb = self.exchange(
                peer_args(a, base, r, to_a["port"], rtcp_port=to_a["rtcp_port"]),
                peer_args(b, base + 2, r, to_b["port"], suite, b_key, rtpe_key,
                          rtcp_port=to_b["rtcp_port"]))
        finally:
            self.delete(call)
        self.assert_clean(ra, "%s rtpengine->A (plain)" % suite)
        self.assert_clean(rb, "%s rtpengine->B (SRTP)" % suite)

    def test_rtpengine_plain_to_srtp_aes_cm_128_80(self):
        self.via_rtpengine_plain_offers("AES_CM_128_HMAC_SHA1_80", A4, B4, R4, 42000)

    def test_rtpengine_plain_to_srtp_aead_aes_128_gcm(self):
        self.via_rtpengine_plain_offers("AEAD_AES_128_GCM", A4, B4, R4, 42010)

    def test_rtpengine_plain_to_srtp_ipv6(self):
        self.via_rtpengine_plain_offers("AES_CM_128_HMAC_SHA1_80", A6, B6, R6, 42020)

    def test_rtpengine_srtp_offers_aes_cm_128_80(self):
        self.via_rtpengine_srtp_offers("AES_CM_128_HMAC_SHA1_80", A4, B4, R4, 42030)

    def test_rtpengine_srtp_offers_aead_aes_128_gcm(self):
        self.via_rtpengine_srtp_offers("AEAD_AES_128_GCM", A4, B4, R4, 42040)


if __name__ == "__main__":
    unittest.main()
