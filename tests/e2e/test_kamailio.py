"""End to end with the real SIP peers: Kamailio (Debian's kamailio, its rtpengine module)
relays SIP between two SIPp instances (Debian's sip-tester) and puts their media through
a media proxy over the ng protocol: the real karl-dp (KamailioKarlTest), or rtpengine
(KamailioRtpengineTest), the reference that proves the harness itself (Kamailio, SIPp,
pcaps, captures) works.

Topology: two bridges X and Y; namespaces made here, each with veths into them:

  A (UAC, SIPp)           K (Kamailio)                       B (UAS, SIPp)
  198.51.100.2 --X--  198.51.100.5 | 203.0.113.5  --Y-- 203.0.113.2
  media proxy:  198.51.100.1 on X (ext0)   203.0.113.1 on Y (ext1)

- Karl: karl-dp in the root namespace, its TAP ports ext0/ext1 bridged into X/Y (the
  kernel side of each TAP is the bridge port), ng on 127.0.0.1:<free port> of the root
  namespace, media ports 31000..31999.
- rtpengine: in namespace R with a veth into each bridge (ext0/198.51.100.1,
  ext1/203.0.113.1), ng on 127.0.0.1:2223 inside R, media ports 35000..35999.

SIP goes A <-> K <-> B (Record-Routed, so ACK and BYE pass Kamailio too) and never
through the media proxy; media goes A <-> proxy ext0 ... proxy ext1 <-> B. Kamailio's
rtpengine_sock is udp:127.0.0.1:22222 inside K, where an NgRelay (harness.py) hands each
datagram unchanged to the proxy's ng socket and records it: Kamailio reaches an ng socket
on another namespace's loopback without any address being added to the root namespace,
and the test sees exactly which ng requests Kamailio sent.

SIPp plays RTP from pcaps made here (G.711 PCMU, 20 ms, distinct payloads); tcpdump in A
and B captures what reaches each UA: the SDPs of the INVITE and the 200, and the RTP,
compared packet for packet with what the other side played.
"""
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
import unittest

from harness import (Bridge, Kamailio, KarlProcess, Netns, NgClient, NgError, NgRelay, Pcap,
                     Rtp, Rtpengine, Sipp, SrtpContext, Tcpdump, Veth, free_tcp_port,
                     http_json)

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = os.path.join(HERE, "kamailio")

A4, B4 = "198.51.100.2", "203.0.113.2"  # UAC, UAS
K_A4, K_B4 = "198.51.100.5", "203.0.113.5"  # Kamailio, toward A and toward B
P_A4, P_B4 = "198.51.100.1", "203.0.113.1"  # media proxy: ext0, ext1
SIP_PORT = 5060
MEDIA_PORT = 6000  # each UA's RTP port (SIPp -mp)
NG_IN_K = ("127.0.0.1", 22222)  # Kamailio's rtpengine_sock, inside K

PACKETS = 150  # RTP packets per direction: 3 s of 20 ms PCMU
HOLD_MS = 4500  # the UAC hangs up this long after its ACK: after both pcaps played
OFFER_FLAGS = "replace-origin replace-session-connection direction=ext0 direction=ext1"
ANSWER_FLAGS = "replace-origin replace-session-connection"
# The callee's SDES key in the SRTP test (RFC 4568 §6.1 inline: 30 octets key||salt).
UAS_SRTP_KEY = "inline:S2FybCBlMmUgY2FsbGVlIFNSVFAga2V5IHNhbHQh"
SUITE = "AES_CM_128_HMAC_SHA1_80"

KARL_CONFIG = """\
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
  enabled: true
  listen: "127.0.0.1:%d"
"""


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rtp_stream(ssrc, seq0, ts0, count, seed):
    """`count` PCMU packets of 20 ms (160 samples), each payload distinct."""
    out = []
    for i in range(count):
        payload = b"".join(hashlib.sha256(b"%s-%d-%d" % (seed, i, j)).digest()
                           for j in range(5))[:160]
        out.append(Rtp.build(seq0 + i, ts0 + 160 * i, ssrc, payload, pt=0, marker=(i == 0)))
    return out


def write_rtp_pcap(path, packets, src, dst):
    """The packets as SIPp's play_pcap_audio takes them: UDP in IPv4 over Ethernet, 20 ms
    apart. SIPp replaces addresses and ports with the call's."""
    Pcap.write(path, [(1.0 + 0.02 * i, src, MEDIA_PORT, dst, 30000, p)
                      for i, p in enumerate(packets)])


def sip_messages(datagrams):
    """SIP messages among captured datagrams, in order: {"first", "headers" (lower-case
    name -> [values]), "body", "src", "dst"}."""
    out = []
    for d in datagrams:
        if SIP_PORT not in (d["sport"], d["dport"]):
            continue
        text = d["payload"].decode(errors="replace")
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        out.append({"first": lines[0], "headers": headers, "body": body, "src": d["src"],
                    "dst": d["dst"]})
    return out


def sdp_summary(sdp):
    """What the tests check of a one-audio-stream SDP."""
    out = {"origin": None, "connections": [], "port": None, "proto": None, "cryptos": []}
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("o="):
            out["origin"] = line.split()[-1]
        elif line.startswith("c="):
            out["connections"].append(line.split()[-1])
        elif line.startswith("m=audio "):
            _, port, proto = line[2:].split()[:3]
            out["port"], out["proto"] = int(port), proto
        elif line.startswith("a=crypto:"):
            tag, suite, key = line[len("a=crypto:"):].split()[:3]
            out["cryptos"].append((int(tag), suite, key))
    return out


class KamailioCalls:
    """The scenarios; the subclasses start the media proxy (start_proxy) and say how to
    see that it freed a call (assert_call_freed). Not a TestCase itself."""
    TAG = "x"
    PORT_MIN, PORT_MAX = 0, 0

    # ------------------------------------------------------------ topology

    @classmethod
    def setUpClass(cls):
        tag = "%s%d" % (cls.TAG, os.getpid() % 100000)
        cls.tag = tag
        cls.made = []
        try:
            for tool in ("kamailio", "sipp", "tcpdump"):
                if not shutil.which(tool):
                    raise RuntimeError("%s is not installed (scripts/setup.sh installs it)" % tool)
            cls.tmp = tempfile.mkdtemp(prefix="karl-kamailio-e2e-")
            cls.br_x = Bridge("kmx" + tag)
            cls.made.append(cls.br_x)
            cls.br_y = Bridge("kmy" + tag)
            cls.made.append(cls.br_y)
            cls.a = Netns("karl-ma-" + tag, "kma" + tag, "kmb" + tag, [A4 + "/24"])
            cls.made.append(cls.a)
            cls.br_x.add(cls.a.veth_root)
            cls.b = Netns("karl-mb-" + tag, "kmc" + tag, "kmd" + tag, [B4 + "/24"])
            cls.made.append(cls.b)
            cls.br_y.add(cls.b.veth_root)
            cls.k = Netns("karl-mk-" + tag, "kme" + tag, "kmf" + tag, [K_A4 + "/24"])
            cls.made.append(cls.k)
            cls.br_x.add(cls.k.veth_root)
            cls.k_y = Veth(cls.k, "kmg" + tag, "kmh" + tag, [K_B4 + "/24"])
            cls.made.append(cls.k_y)
            cls.br_y.add(cls.k_y.veth_root)
            ng_target, ng_ns = cls.start_proxy()
            cls.relay = NgRelay(cls.k, NG_IN_K, ng_target, ng_ns)
            cls.made.append(cls.relay)
            with open(os.path.join(SCENARIOS, "kamailio.cfg.in")) as f:
                cfg = f.read()
            for k, v in (("@SIP_A@", K_A4), ("@SIP_B@", K_B4), ("@NG@", "%s:%d" % NG_IN_K),
                         ("@OFFER_FLAGS@", OFFER_FLAGS), ("@ANSWER_FLAGS@", ANSWER_FLAGS)):
                cfg = cfg.replace(k, v)
            cls.kamailio = Kamailio(cls.k, cfg)
            cls.made.append(cls.kamailio)
            cls.kamailio.wait_listening([K_A4, K_B4], SIP_PORT)
            # No warm-up call: the first call's first RTP packet may reach Karl before
            # B's MAC is known; Karl holds it until ARP answers (as rtpengine's kernel
            # would), and the tests check that nothing is lost.
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for thing in reversed(cls.made):
            thing.close()
        if getattr(cls, "tmp", None):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # ------------------------------------------------------------ to be overridden

    @classmethod
    def start_proxy(cls):
        """Starts the media proxy (adding it to cls.made); returns (ng address, namespace
        of the ng socket or None for this one)."""
        raise NotImplementedError

    @classmethod
    def proxy_log(cls):
        return ""

    def assert_call_freed(self, call_id):
        raise NotImplementedError

    # ------------------------------------------------------------ helpers

    @classmethod
    def context(cls, *parts):
        return "\n".join([*parts, "--- kamailio:\n" + cls.kamailio.output()[-4000:],
                          "--- media proxy:\n" + cls.proxy_log()[-4000:]])

    @classmethod
    def call(cls, service, uas_scenario, uac_packets, uas_pcap_packets, hold_ms=HOLD_MS):
        """One call A -> K -> B: the UAS (uas_scenario) in B, the UAC (uac.xml) in A, each
        playing its packets from a pcap, tcpdump in A and B. Returns (UAC exit code, UAS
        exit code, A's datagrams, B's datagrams, failure report)."""
        d = tempfile.mkdtemp(dir=cls.tmp)
        uac_pcap, uas_pcap = os.path.join(d, "uac.pcap"), os.path.join(d, "uas.pcap")
        write_rtp_pcap(uac_pcap, uac_packets, A4, P_A4)
        write_rtp_pcap(uas_pcap, uas_pcap_packets, B4, P_B4)
        made = []
        try:
            cap_a = Tcpdump(cls.a, cls.a.veth_ns, os.path.join(d, "a.pcap"))
            made.append(cap_a)
            cap_b = Tcpdump(cls.b, cls.b.veth_ns, os.path.join(d, "b.pcap"))
            made.append(cap_b)
            uas = Sipp(cls.b, os.path.join(SCENARIOS, uas_scenario),
                       ["-i", B4, "-p", SIP_PORT, "-mi", B4, "-mp", MEDIA_PORT,
                        "-key", "srtp_key", UAS_SRTP_KEY], files=[uas_pcap], timeout=30)
            made.append(uas)
            uas.wait_listening(B4, SIP_PORT)
            uac = Sipp(cls.a, os.path.join(SCENARIOS, "uac.xml"),
                       ["-i", A4, "-p", SIP_PORT, "-mi", A4, "-mp", MEDIA_PORT,
                        "-rsa", "%s:%d" % (K_A4, SIP_PORT), "-s", service, "-d", hold_ms,
                        "%s:%d" % (B4, SIP_PORT)], files=[uac_pcap], timeout=30)
            made.append(uac)
            rc_uac = uac.result()
            # The callee's call ends with the caller's (BYE); if the caller failed, the
            # callee may wait for a request that never comes: do not wait its timeout out.
            rc_uas = uas.result(timeout=10 if rc_uac == 0 else 2)
            time.sleep(0.3)  # the last packets reach the captures
            got_a, got_b = cap_a.stop(), cap_b.stop()
            report = cls.context("SIPp exit codes: UAC %s, UAS %s" % (rc_uac, rc_uas),
                                 "=== UAC", uac.report(), "=== UAS", uas.report())
            return rc_uac, rc_uas, got_a, got_b, report
        finally:
            for thing in reversed(made):
                thing.close()

    def run_call(self, service, uas_scenario, uac_packets, uas_pcap_packets):
        """call(), asserting that both SIPp instances passed. Returns (A's datagrams, B's)."""
        rc_uac, rc_uas, got_a, got_b, report = self.call(service, uas_scenario, uac_packets,
                                                         uas_pcap_packets)
        self.assertEqual((rc_uac, rc_uas), (0, 0), report)
        return got_a, got_b

    def find(self, msgs, first_prefix, dst, cseq_method="INVITE"):
        for m in msgs:
            if m["first"].startswith(first_prefix) and m["dst"] == dst and \
                    m["headers"].get("cseq", [""])[0].endswith(cseq_method):
                return m
        self.fail("no %r (%s) reached %s among %s" % (first_prefix, cseq_method, dst,
                                                     [x["first"] for x in msgs]))

    def assert_proxy_sdp(self, sdp, address, proto):
        """An SDP rewritten by the proxy: its address everywhere (o=, c=), a port of its
        range, the transport wanted."""
        s = sdp_summary(sdp)
        self.assertEqual(s["origin"], address, sdp)
        self.assertTrue(s["connections"], sdp)
        self.assertEqual(set(s["connections"]), {address}, sdp)
        self.assertIsNotNone(s["port"], sdp)
        self.assertTrue(self.PORT_MIN <= s["port"] <= self.PORT_MAX, "port %s not in %d..%d:\n%s"
                        % (s["port"], self.PORT_MIN, self.PORT_MAX, sdp))
        self.assertEqual(s["proto"], proto, sdp)
        return s

    @staticmethod
    def rtp_to(datagrams, dst):
        """RTP payloads (whole UDP payloads) that reached dst:MEDIA_PORT, in capture order,
        and the set of (source address, port) they came from."""
        got = [d for d in datagrams if d["dst"] == dst and d["dport"] == MEDIA_PORT]
        return [d["payload"] for d in got], {(d["src"], d["sport"]) for d in got}

    def assert_same_rtp(self, got, want, what):
        """Every packet arrived once, in order, byte for byte."""
        if len(got) != len(want):
            seqs = {Rtp.parse(p)["seq"] for p in got}
            missing = [Rtp.parse(p)["seq"] for p in want if Rtp.parse(p)["seq"] not in seqs]
            self.fail(self.context("%s: %d of %d RTP packets arrived; missing seq %s" % (
                what, len(got), len(want), missing[:20])))
        for i, (g, w) in enumerate(zip(got, want)):
            if g != w:
                self.fail(self.context("%s: packet %d differs:\n got %s\nwant %s" % (
                    what, i, Rtp.parse(g), Rtp.parse(w))))

    def assert_ng_exchange(self, call_id, offer_flags_extra=()):
        """Kamailio sent offer, answer and delete for the call, each answered "ok"."""
        reqs = self.relay.requests(call_id=call_id)
        commands = [r["command"] for r in reqs]
        self.assertEqual([c for c in commands if c in ("offer", "answer", "delete")][:1],
                         ["offer"], commands)
        self.assertIn("answer", commands)
        self.assertEqual(commands[-1], "delete", commands)
        for r in reqs:
            reply = self.relay.reply_to(r["_cookie"])
            self.assertIsNotNone(reply, "no reply to %s" % r)
            self.assertEqual(reply.get("result"), "ok", "%s -> %s" % (r, reply))
        offer = reqs[commands.index("offer")]
        self.assertEqual(offer.get("direction"), ["ext0", "ext1"], offer)
        for extra in offer_flags_extra:
            self.assertIn(extra, offer.items(), offer)
        return reqs

    # ------------------------------------------------------------ the scenarios

    def test_plain_call_media_and_delete(self):
        """RTP/AVP both ways: the SDPs reaching the UAs carry the proxy's address and
        ports, each side's RTP reaches the other intact from the proxy's advertised
        address, and the BYE's ng delete frees the call."""
        uac_rtp = rtp_stream(0x11223344, 1000, 16000, PACKETS, b"uac")
        uas_rtp = rtp_stream(0x55667788, 20000, 320000, PACKETS, b"uas")
        got_a, got_b = self.run_call("plain", "uas.xml", uac_rtp, uas_rtp)
        msgs = sip_messages(got_a) + sip_messages(got_b)
        invite = self.find(msgs, "INVITE ", B4)
        ok = self.find(msgs, "SIP/2.0 200", A4)
        to_b = self.assert_proxy_sdp(invite["body"], P_B4, "RTP/AVP")
        to_a = self.assert_proxy_sdp(ok["body"], P_A4, "RTP/AVP")
        self.assertEqual((to_b["cryptos"], to_a["cryptos"]), ([], []))
        call_id = invite["headers"]["call-id"][0]

        got, sources = self.rtp_to(got_b, B4)
        self.assert_same_rtp(got, uac_rtp, "A -> proxy -> B")
        self.assertEqual(sources, {(P_B4, to_b["port"])})
        got, sources = self.rtp_to(got_a, A4)
        self.assert_same_rtp(got, uas_rtp, "B -> proxy -> A")
        self.assertEqual(sources, {(P_A4, to_a["port"])})

        self.assert_ng_exchange(call_id)
        self.assert_call_freed(call_id)
        self.assert_call_quality(call_id)

    def mos_line(self, call_id):
        """The values Kamailio's rtpengine module read from the delete reply (its mos_*
        pvs, logged by kamailio.cfg on BYE)."""
        deadline = time.time() + 5
        pattern = re.compile(r"karl-e2e: MOS call-id %s average=(\S*) packetloss=(\S*) "
                             r"jitter=(\S*) samples=(\S*)" % re.escape(call_id))
        while True:
            m = pattern.search(self.kamailio.output())
            if m or time.time() > deadline:
                break
            time.sleep(0.1)
        self.assertIsNotNone(m, self.context("no MOS line for %s" % call_id))
        return m.groups()

    def test_sdes_plain_caller_srtp_callee(self):
        """A plain RTP/AVP caller bridged to an RTP/SAVP callee with SDES: the callee is
        offered RTP/SAVP with a=crypto lines and answers with its own key; the caller's
        answer is plain RTP/AVP without crypto. The callee gets SRTP that decrypts, with
        the key the proxy offered, to exactly what the caller played, and the caller gets
        the callee's SRTP decrypted by the proxy."""
        uac_rtp = rtp_stream(0x0A0B0C0D, 3000, 48000, PACKETS, b"uac-srtp")
        uas_rtp = rtp_stream(0x1A1B1C1D, 40000, 640000, PACKETS, b"uas-srtp")
        uas_ctx = SrtpContext(SUITE, UAS_SRTP_KEY)
        uas_srtp = [uas_ctx.protect(p) for p in uas_rtp]
        got_a, got_b = self.run_call("srtp", "uas_srtp.xml", uac_rtp, uas_srtp)
        msgs = sip_messages(got_a) + sip_messages(got_b)
        invite = self.find(msgs, "INVITE ", B4)
        ok = self.find(msgs, "SIP/2.0 200", A4)
        to_b = self.assert_proxy_sdp(invite["body"], P_B4, "RTP/SAVP")
        to_a = self.assert_proxy_sdp(ok["body"], P_A4, "RTP/AVP")
        self.assertEqual(to_a["cryptos"], [], ok["body"])
        offered = [c for c in to_b["cryptos"] if c[1] == SUITE]
        self.assertTrue(offered, invite["body"])
        self.assertEqual(len({c[0] for c in to_b["cryptos"]}), len(to_b["cryptos"]),
                         "a=crypto tags repeat: %s" % invite["body"])
        self.assertTrue(offered[0][2].startswith("inline:"), offered)
        self.assertNotEqual(offered[0][2], UAS_SRTP_KEY)
        answer_from_b = self.find(msgs, "SIP/2.0 200", K_B4)  # the UAS's own answer
        self.assertIn("a=crypto:%d %s %s" % (offered[0][0], SUITE, UAS_SRTP_KEY),
                      answer_from_b["body"])
        call_id = invite["headers"]["call-id"][0]

        # A -> proxy -> B: SRTP with the key the proxy offered to B.
        got, sources = self.rtp_to(got_b, B4)
        self.assertEqual(sources, {(P_B4, to_b["port"])})
        proxy_ctx = SrtpContext(SUITE, offered[0][2])
        plain = []
        for i, p in enumerate(got):
            try:
                plain.append(proxy_ctx.unprotect(p))
            except ValueError as e:
                self.fail(self.context("A -> proxy -> B: packet %d: %s" % (i, e)))
        self.assert_same_rtp(plain, uac_rtp, "A -> proxy -> B (SRTP, decrypted)")
        # B -> proxy -> A: the callee's SRTP, decrypted by the proxy.
        got, sources = self.rtp_to(got_a, A4)
        self.assertEqual(sources, {(P_A4, to_a["port"])})
        self.assert_same_rtp(got, uas_rtp, "B (SRTP) -> proxy -> A (plain)")

        self.assert_ng_exchange(call_id, offer_flags_extra=[("transport-protocol", "RTP/SAVP")])
        self.assert_call_freed(call_id)


class KamailioRtpengineTest(KamailioCalls, unittest.TestCase):
    def assert_call_quality(self, call_id):
        """rtpengine computes MOS from RTCP reports only; SIPp sends none, so Kamailio's
        MOS variables stay empty (the line is still logged)."""
        self.mos_line(call_id)

    """Against rtpengine (Debian's rtpengine-daemon), in its own namespace R."""
    TAG = "e"
    PORT_MIN, PORT_MAX = 35000, 35999

    @classmethod
    def start_proxy(cls):
        cls.r = Netns("karl-mr-" + cls.tag, "kmi" + cls.tag, "kmj" + cls.tag, [P_A4 + "/24"])
        cls.made.append(cls.r)
        cls.br_x.add(cls.r.veth_root)
        cls.r_y = Veth(cls.r, "kmk" + cls.tag, "kml" + cls.tag, [P_B4 + "/24"])
        cls.made.append(cls.r_y)
        cls.br_y.add(cls.r_y.veth_root)
        cls.rtpe = Rtpengine(cls.r, ["ext0/" + P_A4, "ext1/" + P_B4], ng_port=2223,
                             port_min=cls.PORT_MIN, port_max=cls.PORT_MAX)
        cls.made.append(cls.rtpe)
        cls.rtpe.wait_ready()
        return ("127.0.0.1", 2223), cls.r

    @classmethod
    def proxy_log(cls):
        return cls.rtpe.output()

    def assert_call_freed(self, call_id):
        # --delete-delay=0: the call is gone as soon as the delete is answered.
        listed = self.rtpe.request({"command": "list"})
        self.assertNotIn(call_id, listed.get("calls", []), listed)
        with self.assertRaises(NgError):
            self.rtpe.request({"command": "query", "call-id": call_id})


class KamailioKarlTest(KamailioCalls, unittest.TestCase):
    def assert_call_quality(self, call_id):
        """Karl estimates MOS from its own RTP statistics (jitter, loss): Kamailio's MOS
        variables fill from the delete reply; a clean bridged LAN scores 4.0-4.5."""
        average, loss, jitter, samples = self.mos_line(call_id)
        self.assertRegex(average, r"^\d\.\d+$")  # the module turns rtpengine's MOS x10 into 4.4
        self.assertTrue(4.0 <= float(average) <= 4.5, "MOS average %r" % average)
        self.assertEqual(loss, "0")
        self.assertTrue(jitter.isdigit(), jitter)
        self.assertTrue(samples.isdigit() and int(samples) >= 1, samples)

    """Against the real karl-dp, its ng server on 127.0.0.1 of the root namespace."""
    TAG = "k"
    PORT_MIN, PORT_MAX = 31000, 31999

    @classmethod
    def start_proxy(cls):
        api_port, ng_port = free_tcp_port(), free_udp_port()
        cls.karl = KarlProcess(KARL_CONFIG % (api_port, ng_port), "km0" + cls.tag,
                               free_tcp_port(),
                               extra_eal=["--vdev", "net_tap1,iface=km1" + cls.tag])
        cls.made.append(cls.karl)
        cls.karl.wait_ready()
        cls.api = "http://127.0.0.1:%d/v1" % api_port
        cls.br_x.add_tap("km0" + cls.tag, "02:00:00:00:ee:01")
        cls.br_y.add_tap("km1" + cls.tag, "02:00:00:00:ee:02")
        deadline = time.time() + 10
        with NgClient("127.0.0.1", ng_port, timeout=0.3, retries=0) as probe:
            while True:
                try:
                    if probe.ping():
                        break
                except (NgError, OSError) as e:
                    if time.time() > deadline:
                        raise RuntimeError("karl-dp's ng on 127.0.0.1:%d did not answer ping "
                                           "within 10 s (%s):\n%s" % (ng_port, e,
                                                                      cls.karl.output()[-3000:]))
                time.sleep(0.1)
        return ("127.0.0.1", ng_port), None

    def setUp(self):
        # The port pairs free once no session is live (an earlier test's
        # call may still be on its way out).
        deadline = time.time() + 5
        while True:
            status, listed, _ = http_json("GET", self.api + "/sessions")
            live = [x for x in (listed or {}).get("sessions", []) if x.get("state") != "ended"]
            if status == 200 and not live:
                break
            if time.time() > deadline:
                self.fail("sessions still live before the test: %s %s" % (status, listed))
            time.sleep(0.1)
        # An ended session's pairs come back after the workers' grace period: settle first.
        self.free_pairs_before = self.free_pairs()
        self.assertIsNotNone(self.free_pairs_before, "no karl_port_pairs_free in /metrics")
        while time.time() < deadline + 5:
            time.sleep(0.2)
            now = self.free_pairs()
            if now == self.free_pairs_before:
                break
            self.free_pairs_before = now

    def free_pairs(self):
        m, _ = self.karl.metrics()
        return m.get("karl_port_pairs_free")

    @classmethod
    def proxy_log(cls):
        try:
            m, _ = cls.karl.metrics()
            drops = {k: v for k, v in m.items() if k.startswith("karl_dp_drops_total") and v}
        except Exception as e:  # the failure being reported matters more
            drops = "unreadable: %s" % e
        return "drops: %s\n%s" % (drops, cls.karl.output())

    def assert_call_freed(self, call_id):
        deadline = time.time() + 5
        while True:
            status, listed, _ = http_json("GET", self.api + "/sessions?call_id=" + call_id)
            self.assertEqual(status, 200, listed)
            live = [s for s in listed.get("sessions", []) if s.get("state") != "ended"]
            free = self.free_pairs()
            if not live and free == self.free_pairs_before:
                return
            if time.time() > deadline:
                self.fail(self.context("call %s not freed: sessions %s, free port pairs %s "
                                       "(%s before the call)" % (call_id, listed, free,
                                                                 self.free_pairs_before)))
            time.sleep(0.1)


if __name__ == "__main__":
    unittest.main()
