"""End to end: the real karl-dp driven over the rtpengine ng protocol (UDP bencode, the
way Kamailio's and OpenSIPS' rtpengine modules drive it), with media through Karl
between two peers in their own namespaces.

Topology (as test_srtp.py): Karl has two TAP ports, ext0 (198.51.100.1/24,
2001:db8:a::1/64) and ext1 (203.0.113.1/24, 2001:db8:b::1/64), each bridged to one
peer namespace:
  A (caller): 198.51.100.2/24, 2001:db8:a::2/64   B (callee): 203.0.113.2/24, 2001:db8:b::2/64
Karl's ng socket is 127.0.0.1:<free port> in the root namespace; offers carry
direction = [ext0, ext1] (the caller is on ext0, the callee on ext1).
"""
import json
import random
import socket
import time
import unittest

from harness import (SRTP_SUITES, free_tcp_port, gen_key, http_json, parse_sdp, peer,
                     peer_bg)
from ng_client import NgClient, NgError, bdecode, bencode
from test_srtp import A4, A6, B4, B6, SrtpTopology

N = 1000  # RTP packets per direction


def sdp_text(addr, port, proto="RTP/AVP", extra=(), version=1, video_port=None, rtcp_mux=False,
             direction="sendrecv"):
    """A caller/callee SDP: audio (PCMU, PCMA, telephone-event) and optionally video."""
    ip = "IP6" if ":" in addr else "IP4"
    lines = ["v=0", "o=- 4711 %d IN %s %s" % (version, ip, addr), "s=karl-ng",
             "c=IN %s %s" % (ip, addr), "t=0 0",
             "m=audio %d %s 0 8 101" % (port, proto), "a=rtpmap:0 PCMU/8000",
             "a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000",
             "a=fmtp:101 0-16", "a=ptime:20", "a=%s" % direction]
    if rtcp_mux:
        lines.append("a=rtcp-mux")
    lines += list(extra)
    if video_port is not None:
        lines += ["m=video %d %s 96" % (video_port, proto), "a=rtpmap:96 H264/90000",
                  "a=%s" % direction]
    return "\r\n".join(lines) + "\r\n"


def media_sections(sdp):
    """[(m= line, [attribute lines], c= address or None)] per media section."""
    out = []
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            out.append([line, [], None])
        elif out and line.startswith("a="):
            out[-1][1].append(line)
        elif out and line.startswith("c="):
            out[-1][2] = line.split()[2]
    return out


class NgClientMixin:
    """Karl with ng on 127.0.0.1:<free port> and offer/answer helpers (A = tag-a on ext0,
    B = tag-b on ext1); the calls a test made are deleted after it. For SrtpTopology
    subclasses (test_ng.py, test_ice.py)."""

    @classmethod
    def make_config(cls, text):
        cls.ng_port = free_tcp_port()  # a free UDP port as well, in practice
        return text.replace("ng:\n  enabled: false\n",
                            "ng:\n  enabled: true\n  listen: \"127.0.0.1:%d\"\n" % cls.ng_port)

    def setUp(self):
        self.ng = NgClient("127.0.0.1", self.ng_port, timeout=2.0, retries=1)
        self.addCleanup(self.ng.close)
        self.calls = []

    def tearDown(self):
        for call_id in self.calls:
            try:
                self.ng.request({"command": "delete", "call-id": call_id})
            except NgError:
                pass

    def offer(self, call_id, sdp, **extra):
        msg = {"command": "offer", "call-id": call_id, "from-tag": "tag-a", "sdp": sdp,
               "direction": ["ext0", "ext1"], "replace": ["origin", "session-connection"]}
        msg.update(extra)
        if call_id not in self.calls:
            self.calls.append(call_id)
        return self.ng.request(msg)

    def answer(self, call_id, sdp, **extra):
        msg = {"command": "answer", "call-id": call_id, "from-tag": "tag-a", "to-tag": "tag-b",
               "sdp": sdp, "replace": ["origin", "session-connection"]}
        msg.update(extra)
        return self.ng.request(msg)


class NgTest(NgClientMixin, SrtpTopology):
    TAG = "n"

    # ------------------------------------------------------------ helpers

    def sessions_of(self, call_id, state=None):
        url = self.api + "/sessions?call_id=" + call_id + ("&state=" + state if state else "")
        status, page, _ = http_json("GET", url)
        self.assertEqual(status, 200, page)
        return page["sessions"]

    def free_pairs(self):
        m, _ = self.karl.metrics()
        return m["karl_port_pairs_free"]

    def in_range(self, port):
        self.assertTrue(31000 <= port <= 31999, port)

    def probe(self, a_addr, a_port, karl_a, b_addr, b_port):
        """Until A -> Karl -> B -> Karl -> A works (neighbors resolved, latching done)."""
        echo = peer_bg(self.b, "echo", b_addr, b_port, 10)
        out = peer(self.a, "probe", a_addr, a_port, karl_a["address"], karl_a["port"], 8)
        echo.kill()
        echo.wait()
        self.assertIn("ok", out, "no path through Karl: %s\n%s" % (out, self.karl.output()[-3000:]))

    def send_recv(self, src_ns, src_addr, src_port, dst, dst_ns, dst_addr, dst_port, n, ssrc):
        rx = peer_bg(dst_ns, "recv", dst_addr, dst_port, n, 20)
        time.sleep(0.3)
        peer(src_ns, "send", src_addr, src_port, dst["address"], dst["port"], n, ssrc)
        res = json.loads(rx.communicate(timeout=30)[0].strip().splitlines()[-1])
        self.assertEqual(res["count"], n, res)
        self.assertTrue(res["in_order"] and res["intact"], res)
        return res

    # ------------------------------------------------------------ plain RTP

    def test_a_offer_answer_relays_media_and_delete_frees_ports(self):
        # Every pair free once all is over: ports 31000..31999 are 500 pairs on each of
        # Karl's four addresses (the warm-up sessions' pairs may still be in their grace
        # period now, so the count at this moment is no baseline).
        all_free = 500 * 4
        r = self.offer("ng-basic", sdp_text(A4, 40100), flags=["trust-address"])
        self.assertNotIn("warning", r)
        off = parse_sdp(r["sdp"])
        self.assertEqual(off["address"], "203.0.113.1")
        self.in_range(off["port"])
        self.assertEqual(off["rtcp_port"], off["port"] + 1)
        self.assertEqual(off["proto"], "RTP/AVP")
        # Everything Karl does not own passes through in order.
        self.assertIn("a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
                      "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
                      "a=sendrecv\r\n", r["sdp"])
        self.assertIn("o=- 4711 1 IN IP4 203.0.113.1\r\n", r["sdp"])  # replace origin

        a = self.answer("ng-basic", sdp_text(B4, 40102))
        ans = parse_sdp(a["sdp"])
        self.assertEqual(ans["address"], "198.51.100.1")
        self.in_range(ans["port"])
        self.assertEqual(ans["rtcp_port"], ans["port"] + 1)

        # The sessions show in the REST API with the ng call-id and tags.
        (s,) = self.sessions_of("ng-basic", "active")
        self.assertEqual((s["from_tag"], s["to_tag"]), ("tag-a", "tag-b"))
        self.assertEqual(s["legs"][0]["local"], {"address": "198.51.100.1", "port": ans["port"]})
        self.assertEqual(s["legs"][1]["local"], {"address": "203.0.113.1", "port": off["port"]})
        self.assertEqual(s["legs"][0]["peer"], {"address": A4, "port": 40100})
        self.assertEqual(s["legs"][1]["peer"], {"address": B4, "port": 40102})

        karl_a = {"address": "198.51.100.1", "port": ans["port"]}
        karl_b = {"address": "203.0.113.1", "port": off["port"]}
        self.probe(A4, 40100, karl_a, B4, 40102)
        res = self.send_recv(self.a, A4, 40100, karl_a, self.b, B4, 40102, N, 0xA1)
        self.assertEqual(res["sources"], ["203.0.113.1:%d" % off["port"]])
        res = self.send_recv(self.b, B4, 40102, karl_b, self.a, A4, 40100, N, 0xB1)
        self.assertEqual(res["sources"], ["198.51.100.1:%d" % ans["port"]])

        # query: rtpengine's shape, counters of what each side sent.
        q = self.ng.request({"command": "query", "call-id": "ng-basic"})
        self.assertEqual(set(q["tags"]), {"tag-a", "tag-b"})
        ta, tb = q["tags"]["tag-a"], q["tags"]["tag-b"]
        self.assertEqual(ta["subscriptions"], [{"tag": "tag-b", "type": "offer/answer"}])
        self.assertEqual(tb["subscribers"], [{"tag": "tag-a", "type": "offer/answer"}])
        (ma,) = ta["medias"]
        self.assertEqual((ma["index"], ma["type"], ma["protocol"]), (1, "audio", "RTP/AVP"))
        rtp_a, rtcp_a = ma["streams"]
        self.assertEqual(rtp_a["local port"], ans["port"])
        self.assertEqual(rtp_a["endpoint"], {"family": "IPv4", "address": A4, "port": 40100})
        self.assertGreaterEqual(rtp_a["stats"]["packets"], N)
        self.assertEqual(rtp_a["SSRC"], 0xA1)
        self.assertEqual(rtcp_a["local port"], ans["port"] + 1)
        self.assertGreaterEqual(tb["medias"][0]["streams"][0]["stats"]["packets"], N)
        self.assertGreaterEqual(q["totals"]["RTP"]["packets"], 2 * N)
        mos = q["SSRC"][str(0xA1)]["average MOS"]
        self.assertTrue(40 <= mos["MOS"] <= 45, mos)  # clean LAN: 4.0..4.5
        self.assertEqual(mos["packet loss"], 0)

        lst = self.ng.request({"command": "list"})
        self.assertIn("ng-basic", lst["calls"])
        st = self.ng.request({"command": "statistics"})["statistics"]
        self.assertGreaterEqual(st["currentstatistics"]["sessionsown"], 1)

        d = self.ng.request({"command": "delete", "call-id": "ng-basic", "from-tag": "tag-a"})
        self.assertGreaterEqual(d["totals"]["RTP"]["packets"], 2 * N)
        self.assertEqual(self.sessions_of("ng-basic", "active"), [])
        self.assertEqual(self.sessions_of("ng-basic", "ended")[0]["end_reason"], "deleted")
        self.assertNotIn("ng-basic", self.ng.request({"command": "list"})["calls"])
        # Ports come back after the workers' grace period.
        deadline = time.time() + 5
        while time.time() < deadline:
            if self.free_pairs() == all_free:
                break
            time.sleep(0.1)
        status, live, _ = http_json("GET", self.api + "/sessions?state=active")
        self.assertEqual(self.free_pairs(), all_free, "active sessions: %s" % live)
        # A second delete is not an error (rtpengine answers ok with a warning).
        d2 = self.ng.request({"command": "delete", "call-id": "ng-basic", "from-tag": "tag-a"})
        self.assertIn("not found", d2["warning"])

    def test_b_audio_video_ipv6_and_reoffer_keeps_ports(self):
        r = self.offer("ng-av6", sdp_text(A6, 40200, video_port=40202))
        secs = media_sections(r["sdp"])
        self.assertEqual(len(secs), 2)
        self.assertIn("c=IN IP6 2001:db8:b::1\r\n", r["sdp"])
        ports = [int(m[0].split()[1]) for m in secs]
        for p in ports:
            self.in_range(p)
        self.assertNotEqual(ports[0], ports[1])
        self.assertTrue(secs[1][0].startswith("m=video "), secs[1])
        a = self.answer("ng-av6", sdp_text(B6, 40204, video_port=40206))
        aports = [int(m[0].split()[1]) for m in media_sections(a["sdp"])]
        self.assertIn("c=IN IP6 2001:db8:a::1\r\n", a["sdp"])
        self.assertEqual(len(self.sessions_of("ng-av6", "active")), 2)
        # The audio relays over IPv6.
        karl_a = {"address": "2001:db8:a::1", "port": aports[0]}
        self.probe(A6, 40200, karl_a, B6, 40204)
        self.send_recv(self.a, A6, 40200, karl_a, self.b, B6, 40204, 200, 0xA6)

        # Re-INVITE with the same SDP: same ports, same o= version.
        r2 = self.offer("ng-av6", sdp_text(A6, 40200, video_port=40202))
        self.assertEqual(r2["sdp"], r["sdp"])
        a2 = self.answer("ng-av6", sdp_text(B6, 40204, video_port=40206))
        self.assertEqual(a2["sdp"], a["sdp"])
        # Hold (sendonly, version 2): same ports, the direction passes through.
        r3 = self.offer("ng-av6", sdp_text(A6, 40200, video_port=40202, version=2,
                                           direction="sendonly"))
        self.assertEqual([int(m[0].split()[1]) for m in media_sections(r3["sdp"])], ports)
        self.assertIn("a=sendonly", r3["sdp"])
        self.assertIn("o=- 4711 2 IN IP6", r3["sdp"])
        # A re-offer from the callee (re-INVITE the other way) reaches the caller with
        # the caller-side ports.
        r4 = self.ng.request({"command": "offer", "call-id": "ng-av6", "from-tag": "tag-b",
                              "to-tag": "tag-a", "sdp": sdp_text(B6, 40204, video_port=40206,
                                                                 version=2)})
        self.assertEqual([int(m[0].split()[1]) for m in media_sections(r4["sdp"])], aports)
        self.assertIn("c=IN IP6 2001:db8:a::1\r\n", r4["sdp"])
        a4 = self.ng.request({"command": "answer", "call-id": "ng-av6", "from-tag": "tag-b",
                              "to-tag": "tag-a", "sdp": sdp_text(A6, 40200, video_port=40202,
                                                                 version=3)})
        self.assertEqual([int(m[0].split()[1]) for m in media_sections(a4["sdp"])], ports)
        self.assertEqual(len(self.sessions_of("ng-av6", "active")), 2)

    def test_c_rejected_stream_rtcp_mux_ice_and_warnings(self):
        ice = ["a=ice-ufrag:F7gI", "a=ice-pwd:x9cml/YzichV2+XlhiMu8g",
               "a=candidate:1 1 UDP 2130706431 198.51.100.2 40300 typ host"]
        r = self.offer("ng-mux", sdp_text(A4, 40300, video_port=40302, rtcp_mux=True, extra=ice),
                       ICE="remove", flags=["no-such-flag"], **{"record call": "yes"})
        self.assertIn("unknown flag 'no-such-flag'", r["warning"])
        self.assertIn("record call", r["warning"])
        self.assertNotIn("ice-", r["sdp"])
        self.assertNotIn("candidate", r["sdp"])
        audio, video = media_sections(r["sdp"])
        self.assertIn("a=rtcp-mux", audio[1])  # offered on to the callee
        # The callee accepts mux on audio and rejects the video.
        b = sdp_text(B4, 40304, rtcp_mux=True) + "m=video 0 RTP/AVP 96\r\n"
        a = self.answer("ng-mux", b)
        audio, video = media_sections(a["sdp"])
        port = int(audio[0].split()[1])
        self.assertIn("a=rtcp-mux", audio[1])
        self.assertIn("a=rtcp:%d" % port, audio[1])
        self.assertTrue(video[0].startswith("m=video 0 "), video)
        (s,) = self.sessions_of("ng-mux", "active")  # the rejected video has no session
        self.assertTrue(s["legs"][0]["rtcp_mux"] and s["legs"][1]["rtcp_mux"], s["legs"])
        self.assertEqual(s["legs"][0]["local_rtcp_port"], s["legs"][0]["local"]["port"])

        # rtcp-mux demux: the caller's mux is accepted, the callee is not offered mux.
        r = self.offer("ng-demux", sdp_text(A4, 40310, rtcp_mux=True), **{"rtcp-mux": ["demux"]})
        self.assertNotIn("a=rtcp-mux", r["sdp"])
        a = self.answer("ng-demux", sdp_text(B4, 40312))
        self.assertIn("a=rtcp-mux", a["sdp"])
        (s,) = self.sessions_of("ng-demux", "active")
        self.assertEqual((s["legs"][0]["rtcp_mux"], s["legs"][1]["rtcp_mux"]), (True, False))

    # ------------------------------------------------------------ SDES bridging

    def test_d_plain_caller_to_srtp_callee(self):
        r = self.offer("ng-sdes", sdp_text(A4, 40400), **{"transport-protocol": "RTP/SAVP"})
        off = parse_sdp(r["sdp"])
        self.assertEqual(off["proto"], "RTP/SAVP")
        suites = [c[1] for c in off["cryptos"]]
        self.assertEqual(sorted(suites), sorted(SRTP_SUITES))
        self.assertEqual([c[0] for c in off["cryptos"]], list(range(1, 7)))
        # The callee picks AES_CM_128_HMAC_SHA1_80 with its own key.
        suite = "AES_CM_128_HMAC_SHA1_80"
        tag, _, karl_key = next(c for c in off["cryptos"] if c[1] == suite)
        b_key = gen_key(suite)
        a = self.answer("ng-sdes", sdp_text(B4, 40402, proto="RTP/SAVP",
                                            extra=["a=crypto:%d %s %s" % (tag, suite, b_key)]))
        ans = parse_sdp(a["sdp"])
        self.assertEqual(ans["proto"], "RTP/AVP")
        self.assertEqual(ans["cryptos"], [])
        # Media: A plain, B libsrtp (karl-srtp-peer), both ways, SRTCP included.
        ra, rb = self.run_pair(
            self.peer_args(A4, 40400, "198.51.100.1", ans["port"], ans["rtcp_port"], N, N),
            self.peer_args(B4, 40402, "203.0.113.1", off["port"], off["rtcp_port"], N, N, suite,
                           b_key, karl_key, extra=["--ssrc", 0x5D35]))
        self.assert_clean(ra, "B (SRTP) -> Karl -> A (plain)", N)
        self.assert_clean(rb, "A (plain) -> Karl -> B (SRTP)", N)
        q = self.ng.request({"command": "query", "call-id": "ng-sdes"})
        self.assertEqual(q["tags"]["tag-b"]["medias"][0]["protocol"], "RTP/SAVP")
        self.assertEqual(q["tags"]["tag-b"]["medias"][0]["streams"][0]["crypto suite"], suite)
        self.assertNotIn("crypto suite", q["tags"]["tag-a"]["medias"][0]["streams"][0])
        self.assertEqual(q["tags"]["tag-a"]["medias"][0]["protocol"], "RTP/AVP")

    def test_e_srtp_caller_to_plain_callee_with_sdes_options(self):
        suite = "AEAD_AES_128_GCM"
        a_key = gen_key(suite)
        cm_key = gen_key("AES_CM_128_HMAC_SHA1_80")
        r = self.offer("ng-savp", sdp_text(A4, 40500, proto="RTP/SAVP", extra=[
            "a=crypto:1 %s %s" % (suite, a_key),
            "a=crypto:2 AES_CM_128_HMAC_SHA1_80 %s" % cm_key]),
            **{"transport-protocol": "RTP/AVP"})
        off = parse_sdp(r["sdp"])
        self.assertEqual((off["proto"], off["cryptos"]), ("RTP/AVP", []))
        a = self.answer("ng-savp", sdp_text(B4, 40502))
        ans = parse_sdp(a["sdp"])
        self.assertEqual(ans["proto"], "RTP/SAVP")
        (crypto,) = ans["cryptos"]
        self.assertEqual(crypto[:2], (1, suite))  # the caller's first suite, its tag
        karl_key = crypto[2]
        self.assertNotEqual(karl_key, a_key)
        ra, rb = self.run_pair(
            self.peer_args(A4, 40500, "198.51.100.1", ans["port"], ans["rtcp_port"], N, N, suite,
                           a_key, karl_key, extra=["--ssrc", 0x5A1]),
            self.peer_args(B4, 40502, "203.0.113.1", off["port"], off["rtcp_port"], N, N))
        self.assert_clean(ra, "B (plain) -> Karl -> A (SRTP GCM)", N)
        self.assert_clean(rb, "A (SRTP GCM) -> Karl -> B (plain)", N)

        # SDES options shape what Karl offers a SAVP callee.
        r = self.offer("ng-sdes-opts", sdp_text(A4, 40510), **{
            "transport-protocol": "RTP/SAVP",
            "SDES": ["no-AEAD_AES_256_GCM", "no-AES_256_CM_HMAC_SHA1_32", "no-F8_128_HMAC_SHA1_80"]})
        suites = [c[1] for c in parse_sdp(r["sdp"])["cryptos"]]
        self.assertEqual(suites, ["AEAD_AES_128_GCM", "AES_256_CM_HMAC_SHA1_80",
                                  "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"])
        r = self.offer("ng-sdes-only", sdp_text(A4, 40520), flags=[
            "RTP/SAVP", "SDES-only-AES_CM_128_HMAC_SHA1_80"])
        self.assertEqual([c[1] for c in parse_sdp(r["sdp"])["cryptos"]],
                         ["AES_CM_128_HMAC_SHA1_80"])
        # An answer whose crypto does not match Karl's offer is refused.
        with self.assertRaisesRegex(NgError, "no a=crypto line matching"):
            self.answer("ng-sdes-only", sdp_text(B4, 40522, proto="RTP/SAVP", extra=[
                "a=crypto:7 AES_CM_128_HMAC_SHA1_80 %s" % cm_key]))

    # ------------------------------------------------------------ protocol behaviour

    def raw(self, cookie, message):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        try:
            s.sendto(cookie + b" " + bencode(message), ("127.0.0.1", self.ng_port))
            return s.recv(65535)
        finally:
            s.close()

    def test_f_retransmission_errors_and_metrics(self):
        msg = {"command": "offer", "call-id": "ng-retrans", "from-tag": "tag-a",
               "sdp": sdp_text(A4, 40600), "direction": ["ext0", "ext1"]}
        self.calls.append("ng-retrans")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        try:
            pkt = b"retrans-1 " + bencode(msg)
            s.sendto(pkt, ("127.0.0.1", self.ng_port))
            first = s.recv(65535)
            s.sendto(pkt, ("127.0.0.1", self.ng_port))
            second = s.recv(65535)
        finally:
            s.close()
        self.assertEqual(first, second)  # the cached reply, byte for byte
        self.assertTrue(first.startswith(b"retrans-1 "))
        self.assertEqual(len(self.sessions_of("ng-retrans", "active")), 1)

        def err(cookie, message):
            reply = bdecode(self.raw(cookie, message).split(b" ", 1)[1])
            self.assertEqual(reply["result"], "error", reply)
            return reply["error-reason"]

        self.assertEqual(err(b"e1", {"command": "bogus"}), "Unrecognized command")
        self.assertEqual(err(b"e2", {"command": "answer", "call-id": "no-such-call",
                                     "from-tag": "x", "to-tag": "y", "sdp": sdp_text(B4, 1000)}),
                         "Unknown call-id")
        self.assertIn("SDP line 3", err(b"e3", {"command": "offer", "call-id": "ng-bad",
                                                "from-tag": "x",
                                                "sdp": "v=0\r\no=- 1 1 IN IP4 198.51.100.2\r\n"
                                                       "x\r\n"}))
        self.assertEqual(err(b"e4", {"command": "offer", "call-id": "ng-bad", "from-tag": "x"}),
                         "No SDP body in message")
        self.assertIn("no Karl port named 'nope'",
                      err(b"e5", {"command": "offer", "call-id": "ng-bad", "from-tag": "x",
                                  "sdp": sdp_text(A4, 40610), "direction": ["nope", "ext1"]}))
        self.assertEqual(self.sessions_of("ng-bad"), [])  # nothing half-made
        # A datagram that is not bencode gets an error reply with its cookie.
        reply = self.raw(b"junk-1", {"command": "ping"})  # sanity: a good one answers
        self.assertEqual(bdecode(reply.split(b" ", 1)[1]), {"result": "pong"})
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        try:
            s.sendto(b"junk-2 d7:command", ("127.0.0.1", self.ng_port))
            reply = s.recv(65535)
        finally:
            s.close()
        self.assertTrue(reply.startswith(b"junk-2 "), reply)
        self.assertEqual(bdecode(reply.split(b" ", 1)[1])["result"], "error")

        m, _ = self.karl.metrics()
        self.assertGreaterEqual(m.get('karl_ng_requests_total{command="offer",result="ok"}', 0), 1)
        self.assertGreaterEqual(m.get('karl_ng_requests_total{command="offer",result="error"}', 0), 3)
        self.assertGreaterEqual(m.get("karl_ng_retransmissions_total", 0), 1)
        self.assertGreaterEqual(m.get('karl_ng_request_seconds_count{command="offer"}', 0), 1)

    def test_h_mutated_requests_never_break_karl(self):
        """Valid offers/answers/deletes/queries mutated at random (bytes flipped, cut
        short, values of the wrong type, SDP lines garbled): every datagram with a
        readable cookie gets a reply, Karl keeps running, and what the mutations made is
        cleaned up by deletes. Bounded: 600 requests."""
        rng = random.Random(20261128)
        base = [
            {"command": "offer", "call-id": "fz", "from-tag": "fa", "sdp": sdp_text(A4, 40800,
                                                                                   video_port=40802),
             "direction": ["ext0", "ext1"], "flags": ["trust-address", "RTP/SAVP"],
             "replace": ["origin"], "rtcp-mux": ["demux"], "SDES": ["no-AEAD_AES_256_GCM"]},
            {"command": "answer", "call-id": "fz", "from-tag": "fa", "to-tag": "fb",
             "sdp": sdp_text(B4, 40804, proto="RTP/SAVP", video_port=40806, extra=[
                 "a=crypto:1 AEAD_AES_128_GCM inline:UJ8tWcCK8hk5ZJk2XoC7GZ/Z9C51tCbmO1SCPg=="])},
            {"command": "query", "call-id": "fz"},
            {"command": "delete", "call-id": "fz", "from-tag": "fa"},
        ]

        def mutate(msg):
            m = dict(msg)
            m["call-id"] = "fz%d" % rng.randrange(8)
            kind = rng.randrange(6)
            key = rng.choice(sorted(m))
            if kind == 0:
                m[key] = rng.choice([7, [], {}, ["x", 1], "", "\x00\xff"])
            elif kind == 1 and isinstance(m.get("sdp"), str):
                lines = m["sdp"].split("\r\n")
                i = rng.randrange(len(lines))
                lines[i] = lines[i][:rng.randrange(len(lines[i]) + 1)] + rng.choice(
                    ["", "x", " 99999", "/", "=", ":", " IN IP4 ", "\t"])
                m["sdp"] = "\r\n".join(lines)
            elif kind == 2:
                del m[key]
            elif kind == 3:
                m["flags"] = [rng.choice(["direction=", "SDES-only-", "RTP/", "TOS=999",
                                          "media-address=x", "ICE=", "rtcp-mux-"]) * rng.randrange(3)]
            data = bencode(m)
            if kind == 4:  # flip bytes
                b = bytearray(data)
                for _ in range(rng.randrange(1, 4)):
                    b[rng.randrange(len(b))] = rng.randrange(256)
                data = bytes(b)
            elif kind == 5:  # cut short
                data = data[:rng.randrange(1, len(data))]
            return data

        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        replies = 0
        try:
            for n in range(600):
                cookie = b"fz%d" % n
                s.sendto(cookie + b" " + mutate(rng.choice(base)), ("127.0.0.1", self.ng_port))
                data = s.recv(65535)
                self.assertTrue(data.startswith(cookie + b" "), data[:80])
                reply = bdecode(data.split(b" ", 1)[1])
                self.assertIn(reply.get("result"), ("ok", "error", "pong"), reply)
                replies += 1
        finally:
            s.close()
        self.assertEqual(replies, 600)
        self.assertIsNone(self.karl.proc.poll(), "karl-dp exited")
        self.assertTrue(self.ng.ping())
        for i in range(8):
            self.ng.request({"command": "delete", "call-id": "fz%d" % i})
        for i in range(8):
            self.assertEqual(self.sessions_of("fz%d" % i, "active"), [])

    def test_g_rest_sessions_are_visible_over_ng(self):
        body = {"call_id": "rest-made", "from_tag": "rf", "to_tag": "rt", "legs": [
            {"peer": {"address": A4, "port": 40700}, "interface": "ext0"},
            {"peer": {"address": B4, "port": 40702}, "interface": "ext1"}]}
        status, s, _ = http_json("POST", self.api + "/sessions", body)
        self.assertEqual(status, 201, s)
        self.assertIn("rest-made", self.ng.request({"command": "list"})["calls"])
        q = self.ng.request({"command": "query", "call-id": "rest-made"})
        self.assertEqual(set(q["tags"]), {"rf", "rt"})
        self.assertEqual(q["tags"]["rf"]["medias"][0]["streams"][0]["local port"],
                         s["legs"][0]["local"]["port"])
        self.ng.request({"command": "delete", "call-id": "rest-made"})
        status, got, _ = http_json("GET", self.api + "/sessions/" + s["id"])
        self.assertEqual(got["state"], "ended")


if __name__ == "__main__":
    unittest.main()
