"""End to end: SRTP in the real karl-dp, checked against independent implementations:
karl-srtp-peer (libsrtp2) and rtpengine (driven over ng). Karl encrypts toward a peer
and decrypts what that peer sends; payloads must arrive intact and in order, and every
SRTP drop must be counted under its reason (GET stats and /metrics).

Topology (as test_relay.py): Karl has two TAP ports, ext0 (198.51.100.1/24,
2001:db8:a::1/64) and ext1 (203.0.113.1/24, 2001:db8:b::1/64), each bridged to one
peer namespace:
  A: 198.51.100.2/24, 2001:db8:a::2/64     B: 203.0.113.2/24, 2001:db8:b::2/64
rtpengine, when used, runs in B on 203.0.113.2 (media ports 35000..35999).

test_srtp_peers.py checks the oracles themselves (peer <-> peer, peer <-> rtpengine).
"""
import base64
import os
import time
import unittest

from harness import (SRTP_PEER, SRTP_SUITES, Bridge, KarlProcess, Netns, Rtpengine, endpoint,
                     free_tcp_port, gen_key, http_json, make_sdp, parse_sdp, peer, peer_bg,
                     srtp_peer_bg, srtp_peer_result, wait_ipv6_ready)

N = 2000  # RTP packets per direction in the main runs
N_QUICK = 200  # per direction for the other suites
RTCP = 5  # SRTCP compounds per direction
INTERVAL_US = 1000  # 1000 packets/s per direction

A4, A6, B4, B6 = "198.51.100.2", "2001:db8:a::2", "203.0.113.2", "2001:db8:b::2"
KEY_OCTETS = {"AES_CM_128_HMAC_SHA1_80": 30, "AES_CM_128_HMAC_SHA1_32": 30,
              "AES_256_CM_HMAC_SHA1_80": 46, "AES_256_CM_HMAC_SHA1_32": 46,
              "AEAD_AES_128_GCM": 28, "AEAD_AES_256_GCM": 44}

CONFIG = """\
ports:
  - name: ext0
    device: net_tap0
    addresses: ["198.51.100.1/24", "2001:db8:a::1/64"]
  - name: ext1
    device: net_tap1
    addresses: ["203.0.113.1/24", "2001:db8:b::1/64"]
rtp:
  port_min: 31000
  port_max: 31999
  media_timeout_s: 30
api:
  port: %d
ng:
  enabled: false
"""


def key_octets(inline):
    """Octets of key||salt in an inline: key (base64, padding optional)."""
    b64 = inline[len("inline:"):].split("|")[0]
    return len(base64.b64decode(b64 + "=" * (-len(b64) % 4)))


class SrtpTopology(unittest.TestCase):
    """Karl, namespaces A and B, helpers. Subclasses add the tests; ENGINE picks the
    config's srtp.engine (None: Karl's default)."""
    ENGINE = None
    TAG = "s"

    @classmethod
    def setUpClass(cls):
        tag = "%s%d" % (cls.TAG, os.getpid() % 100000)
        cls.made = []
        try:
            if not os.access(SRTP_PEER, os.X_OK):
                raise RuntimeError("%s is not built" % SRTP_PEER)
            cls.api_port = free_tcp_port()
            config = cls.make_config(CONFIG % cls.api_port)
            if cls.ENGINE:
                config += "srtp:\n  engine: %s\n" % cls.ENGINE
            cls.karl = KarlProcess(config, "kt0" + tag, free_tcp_port(),
                                   extra_eal=["--vdev", "net_tap1,iface=kt1" + tag])
            cls.made.append(cls.karl)
            cls.karl.wait_ready()
            cls.api = "http://127.0.0.1:%d/v1" % cls.api_port
            cls.a = Netns("karl-ta-" + tag, "kta" + tag, "ktb" + tag, [A4 + "/24", A6 + "/64"])
            cls.made.append(cls.a)
            cls.b = Netns("karl-tb-" + tag, "ktc" + tag, "ktd" + tag, [B4 + "/24", B6 + "/64"])
            cls.made.append(cls.b)
            for ns in (cls.a, cls.b):  # no DAD delay before the v6 addresses work
                ns.run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", check=False)
            cls.bra = Bridge("ktx" + tag)
            cls.made.append(cls.bra)
            cls.bra.add(cls.a.veth_root)
            cls.bra.add_tap("kt0" + tag, "02:00:00:00:ee:01")
            cls.brb = Bridge("kty" + tag)
            cls.made.append(cls.brb)
            cls.brb.add(cls.b.veth_root)
            cls.brb.add_tap("kt1" + tag, "02:00:00:00:ee:02")
            for ns in (cls.a, cls.b):
                wait_ipv6_ready(ns)
            # Karl resolves a peer's MAC (ARP/NDP) when a session names it; until then it
            # drops as no_neighbor. A plain session per family, probed until it works
            # both ways, fills Karl's neighbor table for A and B before the SRTP runs,
            # whose packets must all arrive.
            cls.warm_up(A4, B4, 39000)
            cls.warm_up(A6, B6, 39010)
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for thing in reversed(cls.made):
            thing.close()

    @classmethod
    def make_config(cls, text):
        """Subclasses adjust Karl's config (e.g. turn ng on)."""
        return text

    @classmethod
    def warm_up(cls, a_addr, b_addr, port):
        body = {"call_id": "warm-up-%d" % port, "legs": [
            {"peer": {"address": a_addr, "port": port}, "interface": "ext0"},
            {"peer": {"address": b_addr, "port": port + 2}, "interface": "ext1"}]}
        status, s, _ = http_json("POST", cls.api + "/sessions", body)
        if status != 201:
            raise RuntimeError("warm-up session: %d %s" % (status, s))
        try:
            l0 = s["legs"][0]["local"]
            echo = peer_bg(cls.b, "echo", b_addr, port + 2, 10)
            out = peer(cls.a, "probe", a_addr, port, l0["address"], l0["port"], 8)
            echo.kill()
            echo.wait()
            if "ok" not in out:
                raise RuntimeError("no path through Karl for %s <-> %s: %s\n%s" %
                                   (a_addr, b_addr, out, cls.karl.output()[-3000:]))
        finally:
            http_json("DELETE", cls.api + "/sessions/" + s["id"])

    # ------------------------------------------------------------ helpers

    def create(self, call_id, a_addr, a_port, b_addr, b_port, srtp0=None, srtp1=None):
        legs = [{"peer": {"address": a_addr, "port": a_port}, "interface": "ext0"},
                {"peer": {"address": b_addr, "port": b_port}, "interface": "ext1"}]
        if srtp0 is not None:
            legs[0]["srtp"] = srtp0
        if srtp1 is not None:
            legs[1]["srtp"] = srtp1
        status, s, _ = http_json("POST", self.api + "/sessions", {"call_id": call_id, "legs": legs})
        self.assertEqual(status, 201, s)
        self.addCleanup(http_json, "DELETE", self.api + "/sessions/" + s["id"])
        return s

    def check_srtp_echo(self, leg, suite_send, suite_recv, recv_key):
        """legs[i].srtp as the 201/GET shows it: suites as asked, the receive key as
        given, a generated send key of the suite's length."""
        srtp = leg["srtp"]
        self.assertEqual(srtp["send"]["suite"], suite_send, srtp)
        self.assertTrue(srtp["send"]["key"].startswith("inline:"), srtp)
        self.assertEqual(key_octets(srtp["send"]["key"]), KEY_OCTETS[suite_send], srtp)
        self.assertEqual(srtp["receive"], {"suite": suite_recv, "key": recv_key}, srtp)
        return srtp["send"]["key"]

    def peer_args(self, bind, port, remote, rport, rtcp_port, count, expect, suite=None,
                  send_key=None, recv_key=None, extra=()):
        args = ["--bind", endpoint(bind, port), "--remote", endpoint(remote, rport),
                "--remote-rtcp-port", rtcp_port, "--count", count, "--expect", expect,
                "--interval-us", INTERVAL_US, "--rtcp", "--rtcp-count", RTCP,
                "--expect-rtcp", RTCP if expect else 0, "--send-delay-ms", 300,
                "--timeout", 10 + count * INTERVAL_US / 1e6]
        if suite:
            args += ["--suite", suite]
        if send_key:
            args += ["--send-key", send_key]
        if recv_key:
            args += ["--recv-key", recv_key]
        return args + [str(x) for x in extra]

    def run_pair(self, a_args, b_args):
        pa = srtp_peer_bg(self.a, *a_args)
        pb = srtp_peer_bg(self.b, *b_args)
        return srtp_peer_result(pa, timeout=120), srtp_peer_result(pb, timeout=120)

    def assert_clean(self, res, what, n, source=None, rtcp=RTCP):
        """All n packets arrived once, intact, in order, each unprotected (or plain)
        without error, plus `rtcp` SRTCP/RTCP compounds; none renumbered."""
        ctx = "%s: %s\n%s" % (what, res, self.karl.output()[-2000:])
        self.assertEqual(res["received"], n, ctx)
        for key in ("corrupt", "out_of_order", "duplicates", "not_rtp", "seq_offset_changes",
                    "rtcp_corrupt"):
            self.assertEqual(res[key], 0, "%s is not 0 in %s" % (key, ctx))
        self.assertEqual(res["unprotect_errors"], {}, ctx)
        self.assertEqual(res["rtcp_unprotect_errors"], {}, ctx)
        self.assertEqual((res["first_counter"], res["last_counter"]), (0, n - 1), ctx)
        self.assertEqual(res["received_rtcp"], rtcp, ctx)
        if source:
            self.assertEqual(res["sources"], [source], ctx)

    def get(self, s):
        status, got, _ = http_json("GET", self.api + "/sessions/" + s["id"])
        self.assertEqual(status, 200, got)
        return got

    def drops(self, s, leg, kind="rtp"):
        return self.get(s)["legs"][leg]["stats"][kind]["drops_by_reason"]

    def metric(self, reason):
        m, _ = self.karl.metrics()
        return m.get('karl_dp_drops_total{reason="%s"}' % reason, 0)

    def wait_for(self, fn, want, timeout=5):
        """Polls fn() until it returns `want` (the control plane reads worker counters
        periodically); returns the last value."""
        deadline = time.time() + timeout
        got = fn()
        while got != want and time.time() < deadline:
            time.sleep(0.1)
            got = fn()
        return got

    @staticmethod
    def src(addr, port):
        return "%s:%d" % (addr, port)

    # ------------------------------------------------------------ scenarios

    def plain_a_srtp_b(self, suite, n, a_port, b_port, a_addr=A4, b_addr=B4, b_extra=(),
                       b_key=None):
        """A plain <-> Karl <-> B libsrtp; leg 1 SRTP with a Karl-generated send key and
        B's key for receiving."""
        b_key = b_key or gen_key(suite)
        s = self.create("plain-srtp-%s-%d" % (suite, a_port), a_addr, a_port, b_addr, b_port,
                        srtp1={"send": {"suite": suite}, "receive": {"suite": suite, "key": b_key}})
        self.assertIsNone(s["legs"][0]["srtp"], s["legs"][0])
        karl_key = self.check_srtp_echo(s["legs"][1], suite, suite, b_key)
        l0, l1 = s["legs"][0], s["legs"][1]
        ra, rb = self.run_pair(
            self.peer_args(a_addr, a_port, l0["local"]["address"], l0["local"]["port"],
                           l0["local_rtcp_port"], n, n),
            self.peer_args(b_addr, b_port, l1["local"]["address"], l1["local"]["port"],
                           l1["local_rtcp_port"], n, n, suite, b_key, karl_key,
                           extra=["--ssrc", 0x5EC0B, *b_extra]))
        self.assert_clean(ra, "%s B->Karl->A (decrypted by Karl)" % suite, n,
                          self.src(l0["local"]["address"], l0["local"]["port"]))
        self.assertEqual(ra["ssrcs"], [0x5EC0B])
        self.assert_clean(rb, "%s A->Karl->B (encrypted by Karl)" % suite, n,
                          self.src(l1["local"]["address"], l1["local"]["port"]))
        got = self.get(s)
        self.assertEqual(got["legs"][1]["srtp"]["send"]["key"], karl_key)
        for leg in (0, 1):
            for kind in ("rtp", "rtcp"):
                d = got["legs"][leg]["stats"][kind]["drops_by_reason"]
                self.assertEqual({k: v for k, v in d.items() if k.startswith("srtp")}, {},
                                 "leg %d %s drops: %s" % (leg, kind, d))
        self.assertGreaterEqual(got["legs"][1]["stats"]["rtp"]["packets"], n)
        self.assertEqual(got["legs"][1]["stats"]["rtp"]["ssrc"], 0x5EC0B)
        return s

    def every_suite_quick(self, base):
        for i, suite in enumerate(SRTP_SUITES):
            with self.subTest(suite=suite):
                self.plain_a_srtp_b(suite, N_QUICK, base + 10 * i, base + 10 * i + 2)


class SrtpTest(SrtpTopology):
    """Karl's default SRTP engine, or the one KARL_SRTP_ENGINE names (ipsec_mb, openssl,
    libsrtp) to run every scenario on another."""
    ENGINE = os.environ.get("KARL_SRTP_ENGINE") or None

    def test_0_tap_ports_offload_tx_checksums(self):
        """net_tap offers IPv4 and UDP TX checksum offload, so the SRTP packets of these
        tests leave with checksums the device finished (D24); the namespaces' kernels
        verify them on receipt, so every payload counted intact below also checks that."""
        out = self.karl.output()
        for port in ("ext0", "ext1"):
            self.assertRegex(out, r"port %s \(net_tap\d[^)]*\).*tx checksum offload: ipv4\+udp"
                             % port, out[-3000:])

    # (a) plain <-> SRTP ---------------------------------------------------

    def test_a_plain_to_srtp_aes_cm_128_hmac_sha1_80(self):
        self.plain_a_srtp_b("AES_CM_128_HMAC_SHA1_80", N, 40000, 40002)

    def test_a_plain_to_srtp_aead_aes_128_gcm(self):
        self.plain_a_srtp_b("AEAD_AES_128_GCM", N, 40010, 40012)

    def test_a_plain_to_srtp_every_suite_quick(self):
        self.every_suite_quick(40100)

    def test_a_plain_to_srtp_ipv6(self):
        self.plain_a_srtp_b("AEAD_AES_256_GCM", N_QUICK, 40200, 40202, A6, B6)

    def test_a_roc_rollover(self):
        # B's sequence numbers wrap during the run: Karl must estimate the ROC
        # (RFC 3711 §3.3.1) when decrypting, and carry it when encrypting A's stream
        # (A's numbers wrap too).
        suite = "AES_CM_128_HMAC_SHA1_80"
        b_key = gen_key(suite)
        s = self.create("roc", A4, 40300, B4, 40302,
                        srtp1={"send": {"suite": suite}, "receive": {"suite": suite, "key": b_key}})
        karl_key = s["legs"][1]["srtp"]["send"]["key"]
        l0, l1 = s["legs"][0], s["legs"][1]
        n = 1000
        ra, rb = self.run_pair(
            self.peer_args(A4, 40300, l0["local"]["address"], l0["local"]["port"],
                           l0["local_rtcp_port"], n, n, extra=["--seq-start", 65200]),
            self.peer_args(B4, 40302, l1["local"]["address"], l1["local"]["port"],
                           l1["local_rtcp_port"], n, n, suite, b_key, karl_key,
                           extra=["--seq-start", 65000]))
        self.assert_clean(ra, "ROC B->A", n)
        self.assert_clean(rb, "ROC A->B", n)

    def test_a_key_with_lifetime_and_mki(self):
        # RFC 4568 §9.1 key-params with "|2^31|1:4" on the key Karl receives with.
        suite = "AES_CM_128_HMAC_SHA1_80"
        self.plain_a_srtp_b(suite, N_QUICK, 40400, 40402, b_key=gen_key(suite) + "|2^31|1:4")

    # (b) SRTP <-> SRTP, different suites --------------------------------------

    def srtp_both(self, suite_a, suite_b, n, a_port, b_port, a_addr=A4, b_addr=B4):
        ka, kb = gen_key(suite_a), gen_key(suite_b)
        s = self.create("srtp-srtp-%d" % a_port, a_addr, a_port, b_addr, b_port,
                        srtp0={"send": {"suite": suite_a},
                               "receive": {"suite": suite_a, "key": ka}},
                        srtp1={"send": {"suite": suite_b},
                               "receive": {"suite": suite_b, "key": kb}})
        karl_to_a = self.check_srtp_echo(s["legs"][0], suite_a, suite_a, ka)
        karl_to_b = self.check_srtp_echo(s["legs"][1], suite_b, suite_b, kb)
        self.assertNotEqual(karl_to_a, karl_to_b)
        l0, l1 = s["legs"][0], s["legs"][1]
        ra, rb = self.run_pair(
            self.peer_args(a_addr, a_port, l0["local"]["address"], l0["local"]["port"],
                           l0["local_rtcp_port"], n, n, suite_a, ka, karl_to_a),
            self.peer_args(b_addr, b_port, l1["local"]["address"], l1["local"]["port"],
                           l1["local_rtcp_port"], n, n, suite_b, kb, karl_to_b))
        self.assert_clean(ra, "%s -> %s (B->A)" % (suite_b, suite_a), n)
        self.assert_clean(rb, "%s -> %s (A->B)" % (suite_a, suite_b), n)

    def test_b_srtp_to_srtp_rekey_cm_to_gcm(self):
        self.srtp_both("AES_CM_128_HMAC_SHA1_80", "AEAD_AES_256_GCM", N, 41000, 41002)

    def test_b_srtp_to_srtp_rekey_gcm_to_cm32(self):
        self.srtp_both("AEAD_AES_128_GCM", "AES_256_CM_HMAC_SHA1_32", N_QUICK, 41010, 41012)

    def test_b_srtp_to_srtp_same_suite_ipv6_to_ipv4(self):
        self.srtp_both("AES_CM_128_HMAC_SHA1_32", "AES_CM_128_HMAC_SHA1_32", N_QUICK, 41020,
                       41022, A6, B4)

    def test_b_patch_rekeys_a_live_leg(self):
        """PATCH with the same keys keeps the leg working (contexts kept); PATCH with a new
        receive key makes Karl drop the old key's packets and accept the new one's."""
        suite = "AES_CM_128_HMAC_SHA1_80"
        old_key, new_key = gen_key(suite), gen_key(suite)
        s = self.create("patch-rekey", A4, 42100, B4, 42102,
                        srtp1={"send": {"suite": suite},
                               "receive": {"suite": suite, "key": old_key}})
        karl_key = s["legs"][1]["srtp"]["send"]["key"]
        l0, l1 = s["legs"][0], s["legs"][1]
        url = self.api + "/sessions/" + s["id"]

        def b_to_a(key, n, expect, port, seq_start):
            return self.run_pair(
                self.peer_args(A4, 42100, l0["local"]["address"], l0["local"]["port"],
                               l0["local_rtcp_port"], 0, expect) + ["--timeout", 4],
                self.peer_args(B4, port, l1["local"]["address"], l1["local"]["port"],
                               l1["local_rtcp_port"], n, 0, suite, key, karl_key,
                               extra=["--seq-start", seq_start]))[0]

        same = {"legs": [None, {"srtp": {"send": {"suite": suite, "key": karl_key},
                                         "receive": {"suite": suite, "key": old_key}}}]}
        status, body, _ = http_json("PATCH", url, same)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["legs"][1]["srtp"]["send"]["key"], karl_key)
        ra = b_to_a(old_key, 50, 50, 42102, 1000)
        self.assertEqual(ra["received"], 50, ra)
        new = {"legs": [None, {"srtp": {"send": {"suite": suite, "key": karl_key},
                                        "receive": {"suite": suite, "key": new_key}}}]}
        status, body, _ = http_json("PATCH", url, new)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["legs"][1]["srtp"]["receive"]["key"], new_key)
        # The new key's packets come through (a fresh context: ROC 0, empty window) ...
        ra = b_to_a(new_key, 50, 50, 42104, 2000)
        self.assertEqual(ra["received"], 50, ra)
        # ... and the old key's no longer do (sequence numbers ahead of the replay window,
        # so the tag is what fails).
        ra = b_to_a(old_key, 20, 1, 42106, 3000)
        self.assertEqual(ra["received"], 0, ra)
        got = self.wait_for(lambda: self.drops(s, 1, "rtp").get("srtp_auth_failed", 0), 20)
        self.assertEqual(got, 20, self.get(s)["legs"][1]["stats"])
        # A bad key in a PATCH changes nothing and says where it is wrong.
        bad = {"legs": [None, {"srtp": {"receive": {"suite": suite, "key": "inline:short"}}}]}
        status, body, _ = http_json("PATCH", url, bad)
        self.assertEqual(status, 400, body)
        self.assertEqual(body["error"]["field"], "legs[1].srtp.receive.key", body)
        self.assertEqual(self.get(s)["legs"][1]["srtp"]["receive"]["key"], new_key)

    # (c) negative: wrong key, replay, too short -----------------------------

    def test_c_wrong_key_is_dropped_as_srtp_auth_failed(self):
        suite = "AES_CM_128_HMAC_SHA1_80"
        good, wrong = gen_key(suite), gen_key(suite)
        s = self.create("wrong-key", A4, 42000, B4, 42002,
                        srtp1={"send": {"suite": suite}, "receive": {"suite": suite, "key": good}})
        l0, l1 = s["legs"][0], s["legs"][1]
        before = self.metric("srtp_auth_failed")
        n = 100
        ra, rb = self.run_pair(
            # A only listens: nothing may come through.
            self.peer_args(A4, 42000, l0["local"]["address"], l0["local"]["port"],
                           l0["local_rtcp_port"], 0, 1) + ["--timeout", 3],
            self.peer_args(B4, 42002, l1["local"]["address"], l1["local"]["port"],
                           l1["local_rtcp_port"], n, 0, suite, wrong))
        self.assertEqual(rb["sent"], n)
        self.assertEqual((ra["received"], ra["corrupt"], ra["not_rtp"], ra["received_rtcp"],
                          ra["rtcp_corrupt"]), (0, 0, 0, 0, 0), "forwarded: %s" % ra)
        rtp = self.wait_for(lambda: self.drops(s, 1, "rtp").get("srtp_auth_failed", 0), n)
        self.assertEqual(rtp, n, self.get(s)["legs"][1]["stats"])
        rtcp = self.wait_for(lambda: self.drops(s, 1, "rtcp").get("srtp_auth_failed", 0), RTCP)
        self.assertEqual(rtcp, RTCP, self.get(s)["legs"][1]["stats"])
        got = self.wait_for(lambda: self.metric("srtp_auth_failed") - before, n + RTCP)
        self.assertEqual(got, n + RTCP)
        stats = self.get(s)["legs"][1]["stats"]["rtp"]
        self.assertEqual(stats["drops_by_reason"], {"srtp_auth_failed": n}, stats)
        self.assertGreaterEqual(stats["drops"], n, stats)

    def test_c_replayed_packets_are_dropped_as_srtp_replay(self):
        suite = "AEAD_AES_128_GCM"
        b_key = gen_key(suite)
        s = self.create("replay", A4, 42010, B4, 42012,
                        srtp1={"send": {"suite": suite}, "receive": {"suite": suite, "key": b_key}})
        l0, l1 = s["legs"][0], s["legs"][1]
        before = self.metric("srtp_replay")
        n, k = 300, 10
        ra, rb = self.run_pair(
            self.peer_args(A4, 42010, l0["local"]["address"], l0["local"]["port"],
                           l0["local_rtcp_port"], 0, n),
            self.peer_args(B4, 42012, l1["local"]["address"], l1["local"]["port"],
                           l1["local_rtcp_port"], n, 0, suite, b_key,
                           extra=["--replay", k]))
        self.assertEqual(rb["replayed"], k)
        # Every packet once: Karl forwarded the originals and dropped the copies.
        self.assert_clean(ra, "replay B->A", n)
        got = self.wait_for(lambda: self.drops(s, 1, "rtp").get("srtp_replay", 0), k)
        self.assertEqual(got, k, self.get(s)["legs"][1]["stats"])
        self.assertEqual(self.wait_for(lambda: self.metric("srtp_replay") - before, k), k)
        self.assertEqual(self.drops(s, 1, "rtp"), {"srtp_replay": k})

    def test_c_short_packet_is_dropped_as_srtp_too_short(self):
        # An RTP header and 4 octets: shorter than header + 10-octet tag (RFC 3711 §3.1).
        suite = "AES_CM_128_HMAC_SHA1_80"
        s = self.create("short", A4, 42020, B4, 42022,
                        srtp1={"send": {"suite": suite},
                               "receive": {"suite": suite, "key": gen_key(suite)}})
        l1 = s["legs"][1]["local"]
        before = self.metric("srtp_too_short")
        code = ("import socket,struct;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
                "s.bind(('%s',%d));[s.sendto(struct.pack('!BBHII',0x80,0,i,0,7)+b'abcd',"
                "('%s',%d)) for i in range(3)]" % (B4, 42022, l1["address"], l1["port"]))
        self.b.run("python3", "-c", code)
        got = self.wait_for(lambda: self.drops(s, 1, "rtp").get("srtp_too_short", 0), 3)
        self.assertEqual(got, 3, self.get(s)["legs"][1]["stats"])
        self.assertEqual(self.wait_for(lambda: self.metric("srtp_too_short") - before, 3), 3)

    # (d) rtpengine as Karl's SRTP peer --------------------------------------

    def via_rtpengine(self, suite, base):
        """A (plain) -> Karl leg 0 (plain) -> Karl leg 1 (SRTP) -> rtpengine in B -> plain
        peer in B, and back. rtpengine gets Karl's generated key in the SDP answer and
        Karl gets rtpengine's key from rtpengine's SDP offer."""
        rtpe = Rtpengine(self.b, [B4])
        self.addCleanup(rtpe.close)
        rtpe.wait_ready()
        call = "karl-rtpe-%s" % suite
        a_port, bp_port = base, base + 2  # A's peer, B's plain peer
        offer = rtpe.request({"command": "offer", "call-id": call, "from-tag": "b-plain",
                              "sdp": make_sdp(B4, bp_port), "transport-protocol": "RTP/SAVP",
                              "DTLS": "off"})
        to_karl = parse_sdp(offer["sdp"])
        self.assertEqual((to_karl["proto"], to_karl["address"]), ("RTP/SAVP", B4), to_karl)
        found = [c for c in to_karl["cryptos"] if c[1] == suite]
        self.assertTrue(found, "rtpengine offered no %s: %s" % (suite, to_karl["cryptos"]))
        tag, _, rtpe_key = found[0]
        s = self.create(call, A4, a_port, B4, to_karl["port"],
                        srtp1={"send": {"suite": suite},
                               "receive": {"suite": suite, "key": rtpe_key}})
        karl_key = self.check_srtp_echo(s["legs"][1], suite, suite, rtpe_key)
        l0, l1 = s["legs"][0], s["legs"][1]
        self.assertEqual(to_karl["rtcp_port"], to_karl["port"] + 1)  # Karl's default
        answer = rtpe.request({"command": "answer", "call-id": call, "from-tag": "b-plain",
                               "to-tag": "karl", "DTLS": "off",
                               "sdp": make_sdp(l1["local"]["address"], l1["local"]["port"],
                                               "RTP/SAVP", [(tag, suite, karl_key)])})
        to_plain = parse_sdp(answer["sdp"])
        self.assertEqual((to_plain["proto"], to_plain["cryptos"]), ("RTP/AVP", []), to_plain)
        try:
            ra, rb = self.run_pair(
                self.peer_args(A4, a_port, l0["local"]["address"], l0["local"]["port"],
                               l0["local_rtcp_port"], N, N),
                self.peer_args(B4, bp_port, to_plain["address"], to_plain["port"],
                               to_plain["rtcp_port"], N, N))
        finally:
            rtpe.request({"command": "delete", "call-id": call, "from-tag": "b-plain"})
        ctx = "\nrtpengine log:\n" + rtpe.output()[-3000:]
        self.assert_clean(ra, "%s B plain -> rtpengine -> Karl -> A%s" % (suite, ctx), N,
                          self.src(l0["local"]["address"], l0["local"]["port"]))
        self.assert_clean(rb, "%s A -> Karl -> rtpengine -> B plain%s" % (suite, ctx), N,
                          self.src(to_plain["address"], to_plain["port"]))
        d = self.drops(s, 1)
        self.assertEqual({k: v for k, v in d.items() if k.startswith("srtp")}, {}, d)

    def test_d_rtpengine_aes_cm_128_hmac_sha1_80(self):
        self.via_rtpengine("AES_CM_128_HMAC_SHA1_80", 43000)

    def test_d_rtpengine_aead_aes_128_gcm(self):
        self.via_rtpengine("AEAD_AES_128_GCM", 43010)


class SrtpOpensslEngineTest(SrtpTopology):
    """srtp.engine: openssl, every suite both ways."""
    ENGINE = "openssl"
    TAG = "o"

    def test_plain_to_srtp_every_suite_quick(self):
        self.every_suite_quick(44000)


class SrtpLibsrtpEngineTest(SrtpTopology):
    """srtp.engine: libsrtp, every suite both ways."""
    ENGINE = "libsrtp"
    TAG = "l"

    def test_plain_to_srtp_every_suite_quick(self):
        self.every_suite_quick(44000)


if __name__ == "__main__":
    unittest.main()
