"""ng compatibility, differential: the same ng request sequences sent to rtpengine and to
Karl must give replies with the same result, the same keys and equivalent SDP.

Each scenario (SCENARIOS below) is run once against each server. A reply is compared
after normalization (normalize_sdp):
  - the relay's own addresses become RELAY4 / RELAY6 (the addresses written in the test's
    SDPs stay as they are, so a missing replace-origin shows);
  - every non-zero port in m=, a=rtcp: and a=candidate lines becomes a label (P1, P2, ...
    in order of first appearance in the scenario), a port one above a labelled port
    becomes "P<n>+1" (RTCP = RTP + 1), 0 stays 0; a re-offer that keeps its ports keeps
    its labels;
  - SRTP keys become KEY, a=crypto tags become TAG (the scenario checks the answer's tag
    itself), ICE credentials and DTLS fingerprints become placeholders;
  - the o= version becomes V, or V= / V+ when it stayed / went up against the previous
    reply in the same direction (offer replies, answer replies).
The lines of each section (the session part, then each m= section in order) are compared
as multisets: attribute order is not compared (rtpengine regenerates it, Karl keeps the
input's order). For query the keys of the nested tags / medias / streams dictionaries are
compared too, and for errors the error-reason text.

A difference fails the test unless DEVIATIONS lists it (with its reason); the same table
is docs/ng-compat.md. Every scenario also states what a relay must do (s.expect(...)),
checked on both servers.

Topology: rtpengine in namespace N (198.51.100.4/24, 2001:db8:a::4/64, media on those,
ng on 127.0.0.1 inside N); karl-dp with one TAP port (203.0.113.1/24, 2001:db8:b::1/64),
ng on 127.0.0.1 in the host. No media flows; the peers' addresses in the SDPs
(198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are only written, never sent to.

KARL_NG_COMPAT_ONLY=rtpengine: only the rtpengine half (scenarios checked on rtpengine,
no karl-dp started; for developing the scenarios). KARL_NG_COMPAT_SHOW=1 prints every
normalized reply of rtpengine (and of Karl when it runs).
"""
import base64
import ipaddress
import os
import re
import socket
import time
import unittest

from harness import KarlProcess, Netns, Rtpengine, free_tcp_port, wait_ipv6_ready
from ng_client import bdecode, bencode, netns_socket

RTPE4, RTPE6 = "198.51.100.4", "2001:db8:a::4"
KARL4, KARL6 = "203.0.113.1", "2001:db8:b::1"
CALLER4, CALLEE4 = "198.51.100.10", "203.0.113.20"
CALLER6, CALLEE6 = "2001:db8:a::10", "2001:db8:b::20"

KARL_CONFIG = """\
ports:
  - name: ext0
    device: net_tap0
    addresses: ["%s/24", "%s/64"]
rtp:
  port_min: 30000
  port_max: 39999
api:
  enabled: false
ng:
  enabled: true
  listen: "127.0.0.1:%%d"
""" % (KARL4, KARL6)

ONLY = os.environ.get("KARL_NG_COMPAT_ONLY", "")
SHOW = os.environ.get("KARL_NG_COMPAT_SHOW", "") not in ("", "0")

# Deliberate differences: (kind, side, pattern, reason). kind:
#   "sdp"           a normalized SDP line that only `side`'s reply has;
#   "key"           a reply key (path such as "tags.*.medias.*.flags") only `side` has;
#   "error-reason"  "scenario/step" where `side`'s error-reason is the other's followed by
#                   ": <details>" (nothing else is accepted for it);
#   "reply"         "scenario/step" whose whole reply differs (result, keys, SDP); the
#                   scenario's own expectations still hold for both.
# pattern: a regular expression matched against the whole line / key path / step.
DEVIATIONS = [
    ("sdp", "rtpengine", r"a=crypto:TAG (AES_192_CM_HMAC_SHA1_(80|32)|F8_128_HMAC_SHA1_(80|32)"
     r"|NULL_HMAC_SHA1_(80|32)) inline:KEY",
     "Karl offers only the suites its SRTP engine runs: AES_CM_128 and AES_256_CM "
     "(HMAC-SHA1 80/32) and AEAD_AES_128/256_GCM; no AES-192, F8 or NULL cipher"),
    ("sdp", "rtpengine", r"a=(fingerprint:sha-\d+ FINGERPRINT|setup:(actpass|active|passive)"
     r"|tls-id:TLSID)",
     "Karl does not do DTLS-SRTP: an RTP/SAVP offer carries SDES a=crypto only"),
    ("sdp", "rtpengine", r"a=rtpmap:(0 PCMU|8 PCMA|3 GSM|9 G722|18 G729)/8000",
     "rtpengine fills in rtpmap lines for static payload types the offer left implicit; "
     "Karl leaves the payload list as the endpoint wrote it (RFC 3551 defines them)"),
    ("reply", "karl", r"sdes_off/(offer|delete)",
     "SDES-off on an RTP/SAVP offer leaves Karl (no DTLS) no way to key SRTP: Karl refuses "
     "the offer with an error where rtpengine offers DTLS-SRTP only; so the delete finds no "
     "call"),
    ("sdp", "karl", r"a=rtpmap:96 H264/90000",
     "a media section the answerer rejected (port 0) reaches the offerer as the answerer "
     "wrote it (RFC 3264 §6 lets it keep its attributes); rtpengine strips them"),
    ("sdp", "karl", r"a=ice-lite",
     "Karl is an ICE-lite agent (RFC 8445 §2.5): it answers connectivity checks and never "
     "sends its own, so its SDP says a=ice-lite; rtpengine runs full ICE"),
    ("sdp", "rtpengine", r"a=candidate:FOUNDATION [12] UDP PRIO RELAY[46] P-OTHER typ host",
     "rtpengine opens a leg's port on every address of the interface and offers a candidate "
     "per address family; Karl's leg has one local address (of the leg's family), and that is "
     "its one candidate per component"),
    ("reply", "karl", r"ice_default/reoffer-without-ice",
     "a re-offer that drops ICE changes the SDP Karl sends (no more ICE lines), so Karl "
     "raises the o= version (RFC 3264 §8); rtpengine sends the changed SDP with the old "
     "version. The step's expectations (no ICE passed on) hold for both"),
    ("error-reason", "karl", r"errors/offer-bad-sdp",
     "Karl's reason is rtpengine's text followed by where the SDP is wrong (line, what was "
     "expected)"),
]


# ---------------------------------------------------------------- ng transport


class RawNg:
    """ng over UDP that returns every reply, errors included (NgClient raises on
    result=error). Retries with the same cookie (the server's reply cache answers)."""

    def __init__(self, port, netns=None, timeout=1.0, retries=2):
        self.addr = ("127.0.0.1", port)
        self.sock = netns_socket(netns, socket.AF_INET, socket.SOCK_DGRAM) if netns else \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.timeout, self.retries, self.seq = timeout, retries, 0
        self.prefix = "compat%d_%d" % (os.getpid(), int(time.time() * 1000) % 10 ** 8)

    def request(self, message):
        self.seq += 1
        cookie = ("%s_%d" % (self.prefix, self.seq)).encode()
        packet = cookie + b" " + bencode(message)
        for _ in range(self.retries + 1):
            self.sock.sendto(packet, self.addr)
            deadline = time.time() + self.timeout
            while time.time() < deadline:
                self.sock.settimeout(max(0.001, deadline - time.time()))
                try:
                    data, _ = self.sock.recvfrom(65535)
                except socket.timeout:
                    break
                got, sep, body = data.partition(b" ")
                if sep and got == cookie:
                    return bdecode(body)
        raise AssertionError("no reply to %s from 127.0.0.1:%d" %
                             (message.get("command"), self.addr[1]))

    def ping(self):
        try:
            return self.request({"command": "ping"}).get("result") == "pong"
        except AssertionError:
            return False

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------- SDPs of the scenarios


def sdp(addr, media, session_id=1001, version=1, user="-", session_attrs=()):
    """An SDP at `addr` (c= at session level); media: list of (m= line without "m=",
    [attribute lines without "a="])."""
    ip = "IP6" if ":" in addr else "IP4"
    lines = ["v=0", "o=%s %d %d IN %s %s" % (user, session_id, version, ip, addr), "s=-",
             "c=IN %s %s" % (ip, addr), "t=0 0"]
    lines += ["a=" + a for a in session_attrs]
    for mline, attrs in media:
        lines.append("m=" + mline)
        lines += ["a=" + a for a in attrs]
    return "\r\n".join(lines) + "\r\n"


def audio(port, proto="RTP/AVP", direction="sendrecv", extra=(), rtpmaps=True, rtcp=True):
    attrs = (["rtpmap:0 PCMU/8000", "rtpmap:8 PCMA/8000"] if rtpmaps else [])
    attrs += ["rtpmap:101 telephone-event/8000", "fmtp:101 0-16", "ptime:20"]
    if rtcp:
        attrs.append("rtcp:%d" % (port + 1))
    attrs += list(extra)
    attrs.append(direction)
    return ("audio %d %s 0 8 101" % (port, proto), attrs)


def video(port, direction="sendrecv"):
    return ("video %d RTP/AVP 96" % port,
            ["rtpmap:96 H264/90000", "fmtp:96 profile-level-id=42e01f;packetization-mode=1",
             "rtcp:%d" % (port + 1), direction])


def caller_sdp(media=None, addr=CALLER4, version=1, **kw):
    return sdp(addr, media or [audio(16000, **kw)], session_id=1001, version=version,
               user="caller")


def callee_sdp(media=None, addr=CALLEE4, version=1, **kw):
    return sdp(addr, media or [audio(18000, **kw)], session_id=2002, version=version,
               user="callee")


def sdes_key(suite):
    """A fixed SDES key of the right length for `suite` (RFC 4568 §6.1: base64 of key and
    salt); deterministic so that both servers see the same request."""
    lengths = {"AES_CM_128_HMAC_SHA1_80": 30, "AES_CM_128_HMAC_SHA1_32": 30,
               "AES_256_CM_HMAC_SHA1_80": 46, "AES_256_CM_HMAC_SHA1_32": 46,
               "AEAD_AES_128_GCM": 28, "AEAD_AES_256_GCM": 44}
    return base64.b64encode(bytes(range(7, 7 + lengths[suite]))).decode()


# ---------------------------------------------------------------- normalization


def sections(text):
    """SDP text -> [[lines of the session part], [lines of m= section 1], ...]."""
    out = [[]]
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        if line.startswith("m="):
            out.append([])
        out[-1].append(line)
    return out


class Normalizer:
    """Per (scenario, server): labels ports and o= versions consistently across the
    scenario's replies."""

    def __init__(self, relay_addresses):
        self.relay = {ipaddress.ip_address(a): ("RELAY6" if ":" in a else "RELAY4")
                      for a in relay_addresses}
        self.ports = {}
        self.last_version = {}
        self.c_family = "IP4"

    def port(self, p):
        p = int(p)
        if p == 0:
            return "0"
        if p not in self.ports:
            below = self.ports.get(p - 1)
            self.ports[p] = below + "+1" if below and "+" not in below else \
                "P%d" % (1 + sum(1 for v in self.ports.values() if "+" not in v))
        return self.ports[p]

    def address(self, a):
        try:
            ip = ipaddress.ip_address(a)
        except ValueError:
            return a
        return self.relay.get(ip, str(ip))

    def line(self, line, direction):
        if line.startswith("o="):
            f = line[2:].split()
            if len(f) == 6:
                v = int(f[2])
                last = self.last_version.get(direction)
                self.last_version[direction] = v
                mark = "V" if last is None else ("V=" if v == last else
                                                 ("V+" if v > last else "V-"))
                return "o=%s %s %s %s %s %s" % (f[0], f[1], mark, f[3], f[4], self.address(f[5]))
        if line.startswith("c="):
            f = line[2:].split()
            if len(f) == 3:
                self.c_family = f[1]
                return "c=%s %s %s" % (f[0], f[1], self.address(f[2]))
        if line.startswith("m="):
            f = line[2:].split()
            if len(f) >= 3:
                port, _, count = f[1].partition("/")
                f[1] = self.port(port) + ("/" + count if count else "")
                return "m=" + " ".join(f)
        if line.startswith("a=rtcp:"):
            f = line[len("a=rtcp:"):].split()
            f[0] = self.port(f[0])
            if len(f) == 4:
                f[3] = self.address(f[3])
            return "a=rtcp:" + " ".join(f)
        if line.startswith("a=crypto:"):
            m = re.match(r"a=crypto:(\d+) (\S+) inline:([^|\s]+)(\S*)(.*)$", line)
            if m:
                return "a=crypto:TAG %s inline:KEY%s%s" % (m.group(2), m.group(4), m.group(5))
        if line.startswith("a=candidate:"):
            f = line[len("a=candidate:"):].split()
            if len(f) >= 6:
                f[0], f[3] = "FOUNDATION", "PRIO"
                # A candidate of the other address family than the c= line: its port is
                # not labelled (rtpengine's second family may or may not get the same
                # port number; labelling it would shift every later label).
                other = ("IP6" if ":" in f[4] else "IP4") != self.c_family
                f[4], f[5] = self.address(f[4]), "P-OTHER" if other else self.port(f[5])
                for i in range(6, len(f) - 1):
                    if f[i] in ("raddr",):
                        f[i + 1] = self.address(f[i + 1])
                    if f[i] in ("rport",):
                        f[i + 1] = self.port(f[i + 1])
                return "a=candidate:" + " ".join(f)
        for attr, token in (("a=ice-ufrag:", "UFRAG"), ("a=ice-pwd:", "PWD"),
                            ("a=tls-id:", "TLSID")):
            if line.startswith(attr):
                return attr + token
        if line.startswith("a=fingerprint:"):
            return "a=fingerprint:%s FINGERPRINT" % line[len("a=fingerprint:"):].split()[0]
        return line

    def sdp(self, text, direction):
        return [[self.line(l, direction) for l in sec] for sec in sections(text)]


def key_paths(reply, command):
    """The reply's key set; for query also the keys inside tags / medias / streams, as
    "tags.*.medias.*.streams.*.local port"."""
    keys = set(reply)
    if command == "query" and isinstance(reply.get("tags"), dict):
        for tag in reply["tags"].values():
            if not isinstance(tag, dict):
                continue
            keys |= {"tags.*." + k for k in tag}
            for media in tag.get("medias", []) or []:
                if not isinstance(media, dict):
                    continue
                keys |= {"tags.*.medias.*." + k for k in media}
                for stream in media.get("streams", []) or []:
                    if isinstance(stream, dict):
                        keys |= {"tags.*.medias.*.streams.*." + k for k in stream}
    return keys


def deviation(kind, side, text):
    for k, s, pattern, reason in DEVIATIONS:
        if k == kind and s == side and re.fullmatch(pattern, text):
            return reason
    return None


# ---------------------------------------------------------------- scenario recording


class Step:
    def __init__(self, name, message, reply, normalized):
        self.name, self.message, self.reply, self.sdp = name, message, reply, normalized


class Session:
    """One scenario against one server: sends its requests, records the replies
    normalized, and checks the scenario's expectations as it goes."""

    def __init__(self, server, scenario):
        self.server, self.scenario = server, scenario
        self.norm = Normalizer(server.relay_addresses)
        self.steps = []
        self.failures = []
        self.call_id = "compat-%s-%d" % (scenario, os.getpid())
        self.n = 0

    def send(self, name, message, direction=None):
        reply = self.server.ng.request(message)
        normalized = None
        if isinstance(reply.get("sdp"), str):
            text = reply["sdp"]
            if not text.endswith("\r\n") or "\n" in text.replace("\r\n", ""):
                self.failures.append("%s: %s: SDP lines must end in CRLF (RFC 4566 §5)" %
                                     (self.server.name, name))
            normalized = self.norm.sdp(reply["sdp"], direction or message.get("command"))
        self.steps.append(Step(name, message, reply, normalized))
        return reply

    def msg(self, command, call_id=None, **flags):
        m = {"command": command, "call-id": call_id or self.call_id, "from-tag": "caller"}
        if command == "answer":
            m["to-tag"] = "callee"
        m.update({k.replace("_", "-"): v for k, v in flags.items()})
        return m

    def offer(self, sdp_text, name="offer", replace=True, call_id=None, **flags):
        m = self.msg("offer", call_id, **flags)
        m["sdp"] = sdp_text
        if replace:
            m["replace"] = ["origin", "session-connection"]
        return self.send(name, m)

    def answer(self, sdp_text, name="answer", replace=True, call_id=None, **flags):
        m = self.msg("answer", call_id, **flags)
        m["sdp"] = sdp_text
        if replace:
            m["replace"] = ["origin", "session-connection"]
        return self.send(name, m)

    def delete(self, name="delete", call_id=None):
        return self.send(name, self.msg("delete", call_id))

    def expect(self, cond, what):
        """A scenario's own requirement on the last reply (checked on every server)."""
        if not cond:
            last = self.steps[-1] if self.steps else None
            self.failures.append("%s: %s (step %s, reply %r)" % (
                self.server.name, what, last.name if last else "-",
                last.reply if last else None))

    def expect_ok(self, reply, what="result ok"):
        self.expect(reply.get("result") == "ok", what)


def media_of(reply):
    """The reply's SDP as [{"type", "port", "proto", "attrs": [...], "rtcp"}] (raw values)."""
    out = []
    for sec in sections(reply.get("sdp", ""))[1:]:
        f = sec[0][2:].split()
        m = {"type": f[0], "port": int(f[1].split("/")[0]), "proto": f[2], "fmts": f[3:],
             "attrs": [l[2:] for l in sec[1:] if l.startswith("a=")],
             "c": [l for l in sec[1:] if l.startswith("c=")]}
        m["rtcp"] = next((int(a.split()[0][5:]) for a in m["attrs"] if a.startswith("rtcp:")),
                         None)
        m["cryptos"] = [a[len("crypto:"):].split() for a in m["attrs"] if a.startswith("crypto:")]
        out.append(m)
    return out


def first_media(reply):
    """The reply's first m= section (media_of), or an empty one when it has none, so that
    a scenario's expectations fail instead of the scenario stopping."""
    m = media_of(reply)
    return m[0] if m else {"type": None, "port": None, "proto": None, "fmts": [], "attrs": [],
                           "c": [], "rtcp": None, "cryptos": []}


def session_c(reply):
    return [l for l in sections(reply.get("sdp", ""))[0] if l.startswith("c=")]


# ---------------------------------------------------------------- scenarios


def sc_plain_audio(s):
    r = s.offer(caller_sdp())
    s.expect_ok(r)
    m = first_media(r)
    s.expect(len(media_of(r)) == 1 and m["port"] and m["proto"] == "RTP/AVP", "one audio stream")
    s.expect(s.server.relay4 in "".join(session_c(r)), "session c= is the relay's")
    s.expect(m["port"] and m["rtcp"] == m["port"] + 1, "a=rtcp is RTP+1")
    r = s.answer(callee_sdp())
    s.expect_ok(r)
    m2 = first_media(r)
    s.expect(m2["port"] and m2["port"] != m["port"], "answer port differs")
    s.expect_ok(s.delete())


def sc_audio_video(s):
    # The audio stream leaves PCMU/PCMA's rtpmap implicit (static payload types).
    r = s.offer(caller_sdp([audio(16000, rtpmaps=False), video(16002)]))
    s.expect_ok(r)
    m = media_of(r)
    s.expect([x["type"] for x in m] == ["audio", "video"], "audio and video kept in order")
    s.expect(all(x["port"] > 0 for x in m), "both streams get ports")
    r = s.answer(callee_sdp([audio(18000, rtpmaps=False), video(18002)]))
    s.expect_ok(r)
    s.expect(len(media_of(r)) == 2, "answer has both streams")
    s.expect_ok(s.delete())


def sc_ipv6(s):
    r = s.offer(caller_sdp(addr=CALLER6))
    s.expect_ok(r)
    s.expect("IN IP6 " + s.server.relay6 in r.get("sdp", ""), "the relay answers with its IPv6")
    r = s.answer(callee_sdp(addr=CALLEE6))
    s.expect_ok(r)
    s.expect("IN IP6 " + s.server.relay6 in r.get("sdp", ""), "IPv6 towards the caller")
    s.expect_ok(s.delete())


def sc_hold_resume(s):
    r0 = s.offer(caller_sdp())
    s.answer(callee_sdp())
    r = s.offer(caller_sdp(version=2, direction="sendonly"), name="offer-hold")
    s.expect_ok(r)
    s.expect("sendonly" in first_media(r)["attrs"], "hold re-offer keeps a=sendonly")
    s.expect(first_media(r)["port"] == first_media(r0)["port"], "hold keeps the port")
    r = s.answer(callee_sdp(version=2, direction="recvonly"), name="answer-hold")
    s.expect("recvonly" in first_media(r)["attrs"], "hold answer keeps a=recvonly")
    r = s.offer(caller_sdp(version=3), name="offer-resume")
    s.expect("sendrecv" in first_media(r)["attrs"], "resume is sendrecv")
    s.expect(first_media(r)["port"] == first_media(r0)["port"], "resume keeps the port")
    s.answer(callee_sdp(version=3), name="answer-resume")
    s.expect_ok(s.delete())


def sc_reoffer_unchanged(s):
    r0 = s.offer(caller_sdp())
    a0 = s.answer(callee_sdp())
    r1 = s.offer(caller_sdp(), name="re-offer")
    s.expect(first_media(r1)["port"] == first_media(r0)["port"], "re-offer keeps the port")
    a1 = s.answer(callee_sdp(), name="re-answer")
    s.expect(first_media(a1)["port"] == first_media(a0)["port"], "re-answer keeps the port")
    s.expect_ok(s.delete())


def sc_rejected_mline(s):
    s.offer(caller_sdp([audio(16000), video(16002)]))
    r = s.answer(callee_sdp([audio(18000), ("video 0 RTP/AVP 96", ["rtpmap:96 H264/90000"])]))
    s.expect_ok(r)
    m = media_of(r)
    s.expect(len(m) == 2 and m[1]["port"] == 0, "rejected video stays port 0")
    s.expect(m and m[0]["port"] > 0, "audio still relayed")
    s.expect_ok(s.delete())


def sc_rtcp_mux_demux(s):
    r = s.offer(caller_sdp(extra=["rtcp-mux"]), rtcp_mux=["demux"])
    s.expect_ok(r)
    s.expect("rtcp-mux" not in first_media(r)["attrs"], "demux: no a=rtcp-mux to the callee")
    r = s.answer(callee_sdp())
    s.expect("rtcp-mux" in first_media(r)["attrs"], "demux: the caller gets a=rtcp-mux back")
    s.expect_ok(s.delete())


def sc_rtcp_mux_accept(s):
    r = s.offer(caller_sdp(extra=["rtcp-mux"]), rtcp_mux=["accept"])
    s.expect_ok(r)
    s.expect("rtcp-mux" in first_media(r)["attrs"], "accept: a=rtcp-mux offered on")
    r = s.answer(callee_sdp(extra=["rtcp-mux"]))
    s.expect("rtcp-mux" in first_media(r)["attrs"], "accept: mux answered")
    s.expect_ok(s.delete())


def sc_rtcp_mux_offer(s):
    r = s.offer(caller_sdp(), rtcp_mux=["offer"])
    s.expect_ok(r)
    s.expect("rtcp-mux" in first_media(r)["attrs"], "offer: a=rtcp-mux added")
    r = s.answer(callee_sdp(extra=["rtcp-mux"]))
    s.expect("rtcp-mux" not in first_media(r)["attrs"], "offer: the caller did not ask for mux")
    s.expect_ok(s.delete())


def sc_ice_remove(s):
    ice = ["ice-ufrag:F7gI", "ice-pwd:x9cml/YzichV2+XlhiMu8g",
           "candidate:1 1 UDP 2130706431 %s 16000 typ host" % CALLER4,
           "candidate:1 2 UDP 2130706430 %s 16001 typ host" % CALLER4,
           "candidate:2 1 UDP 1694498815 203.0.113.99 46000 typ srflx raddr %s rport 16000"
           % CALLER4]
    r = s.offer(caller_sdp(extra=ice), ICE="remove")
    s.expect_ok(r)
    attrs = first_media(r)["attrs"]
    s.expect(not any(a.startswith(("ice-", "candidate")) for a in attrs), "ICE removed")
    # Kamailio configs pass ICE=remove on both (rtpengine_manage); without it on the
    # answer rtpengine would offer its own ICE candidates to the caller.
    r = s.answer(callee_sdp(), ICE="remove")
    attrs = first_media(r)["attrs"]
    s.expect(not any(a.startswith(("ice-", "candidate")) for a in attrs), "no ICE to the caller")
    s.expect_ok(s.delete())


def sc_ice_force(s):
    # A plain SIP caller without ICE toward a callee that wants it: the relay is the only
    # candidate the callee learns.
    r = s.offer(caller_sdp(), ICE="force")
    s.expect_ok(r)
    m = first_media(r)
    s.expect(any(a.startswith("ice-ufrag:") for a in m["attrs"]), "offer: a=ice-ufrag")
    r = s.answer(callee_sdp(extra=["ice-ufrag:Cq4Z", "ice-pwd:oQk8Gp0fX1wKbqv2D7hNs5rT",
                                   "candidate:1 1 UDP 2130706431 %s 18000 typ host" % CALLEE4,
                                   "candidate:1 2 UDP 2130706430 %s 18001 typ host" % CALLEE4]),
                 ICE="remove")
    s.expect_ok(r)
    first = ice_credentials(m)
    r = s.offer(caller_sdp(), ICE="force", name="reoffer")
    s.expect_ok(r)
    s.expect(ice_credentials(first_media(r)) == first,
             "a re-offer keeps the relay's ICE credentials (no ICE restart)")
    s.expect_ok(s.delete())


def sc_ice_default(s):
    # No ICE flag: an offerer that does ICE gets the relay as its only candidate, and so
    # does the callee (rtpengine's default; Kamailio configs without ICE=... rely on it).
    ice = ["ice-ufrag:F7gI", "ice-pwd:x9cml/YzichV2+XlhiMu8g",
           "candidate:1 1 UDP 2130706431 %s 16000 typ host" % CALLER4,
           "candidate:1 2 UDP 2130706430 %s 16001 typ host" % CALLER4]
    r = s.offer(caller_sdp(extra=ice))
    s.expect_ok(r)
    attrs = first_media(r)["attrs"]
    s.expect(ice_credentials(first_media(r))[0] not in (None, "F7gI"), "relay's own ufrag")
    s.expect(not any(CALLER4 in a for a in attrs if a.startswith("candidate")),
             "the caller's candidates are not passed on")
    r = s.answer(callee_sdp())
    s.expect_ok(r)
    s.expect(ice_credentials(first_media(r))[0] is not None, "the ICE caller gets ICE back")
    r = s.offer(caller_sdp(), name="reoffer-without-ice")
    s.expect_ok(r)
    s.expect(ice_credentials(first_media(r))[0] is None, "no ICE offered, none passed on")
    s.expect_ok(s.delete())


def ice_credentials(media):
    get = lambda name: next((a.split(":", 1)[1] for a in media["attrs"]
                             if a.startswith(name + ":")), None)
    return get("ice-ufrag"), get("ice-pwd")


def crypto_with(media, suite):
    return next((c for c in media["cryptos"] if c[1] == suite), None)


def sc_sdes_plain_to_savp(s):
    r = s.offer(caller_sdp(), transport_protocol="RTP/SAVP")
    s.expect_ok(r)
    m = first_media(r)
    s.expect(m["proto"] == "RTP/SAVP", "offer to the callee is RTP/SAVP")
    c = crypto_with(m, "AES_CM_128_HMAC_SHA1_80")
    s.expect(c is not None, "AES_CM_128_HMAC_SHA1_80 offered")
    s.expect(crypto_with(m, "AEAD_AES_128_GCM") is not None, "AEAD_AES_128_GCM offered")
    tag = int(c[0]) if c else 1
    suite = "AES_CM_128_HMAC_SHA1_80"
    r = s.answer(callee_sdp(proto="RTP/SAVP",
                            extra=["crypto:%d %s inline:%s" % (tag, suite, sdes_key(suite))]))
    s.expect_ok(r)
    m = first_media(r)
    s.expect(m["proto"] == "RTP/AVP" and not m["cryptos"], "plain answer to the plain caller")
    s.expect_ok(s.delete())


def sc_sdes_savp_to_plain(s):
    cryptos = ["crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + sdes_key("AES_CM_128_HMAC_SHA1_80"),
               "crypto:2 AEAD_AES_128_GCM inline:" + sdes_key("AEAD_AES_128_GCM")]
    r = s.offer(caller_sdp(proto="RTP/SAVP", extra=cryptos), transport_protocol="RTP/AVP")
    s.expect_ok(r)
    m = first_media(r)
    s.expect(m["proto"] == "RTP/AVP" and not m["cryptos"], "plain offer to the callee")
    r = s.answer(callee_sdp())
    s.expect_ok(r)
    m = first_media(r)
    s.expect(m["proto"] == "RTP/SAVP" and len(m["cryptos"]) == 1, "one crypto answered")
    s.expect(m["cryptos"] and m["cryptos"][0][:2] == ["1", "AES_CM_128_HMAC_SHA1_80"],
             "the answer takes the caller's first suite and its tag")
    s.expect(m["cryptos"] and m["cryptos"][0][2] != "inline:" +
             sdes_key("AES_CM_128_HMAC_SHA1_80"), "the relay's own key, not the caller's")
    s.expect_ok(s.delete())


def sc_sdes_no_suite(s):
    r = s.offer(caller_sdp(), transport_protocol="RTP/SAVP",
                SDES=["no-AES_CM_128_HMAC_SHA1_32", "no-AEAD_AES_256_GCM"])
    s.expect_ok(r)
    m = first_media(r)
    s.expect(crypto_with(m, "AES_CM_128_HMAC_SHA1_32") is None, "SDES-no-...32 removed it")
    s.expect(crypto_with(m, "AEAD_AES_256_GCM") is None, "SDES-no-AEAD_AES_256_GCM removed it")
    s.expect(crypto_with(m, "AES_CM_128_HMAC_SHA1_80") is not None, "the others stay")
    s.expect_ok(s.delete())


def sc_sdes_off(s):
    r = s.offer(caller_sdp(), transport_protocol="RTP/SAVP", SDES=["off"])
    # rtpengine offers DTLS-SRTP only; a relay without DTLS may refuse (see DEVIATIONS).
    s.expect(r.get("result") == "error" or (r.get("result") == "ok" and
                                            not first_media(r)["cryptos"]),
             "SDES-off: no a=crypto (or the offer refused)")
    s.expect_ok(s.delete())


def sc_query(s):
    s.offer(caller_sdp())
    s.answer(callee_sdp())
    r = s.send("query", s.msg("query"))
    s.expect_ok(r)
    s.expect(set(r.get("tags", {})) == {"caller", "callee"}, "query lists both tags")
    s.expect_ok(s.delete())


def sc_list(s):
    ids = [s.call_id + "-a", s.call_id + "-b"]
    for cid in ids:
        s.offer(caller_sdp(), call_id=cid, name="offer " + cid[-1])
    r = s.send("list", {"command": "list"})
    s.expect_ok(r)
    s.expect(sorted(r.get("calls", [])) == ids, "list names exactly the live calls")
    for cid in ids:
        s.expect_ok(s.delete(call_id=cid, name="delete " + cid[-1]))
    r = s.send("list-empty", {"command": "list"})
    s.expect(r.get("calls") == [], "no call left after delete")


def sc_statistics(s):
    s.offer(caller_sdp())
    r = s.send("statistics", {"command": "statistics"})
    s.expect_ok(r)
    s.expect(isinstance(r.get("statistics"), dict), "a statistics dictionary")
    s.expect_ok(s.delete())


def sc_errors(s):
    r = s.answer(callee_sdp(), name="answer-unknown-call", call_id=s.call_id + "-nosuch")
    s.expect(r.get("result") == "error" and r.get("error-reason"), "unknown call-id is an error")
    m = s.msg("offer")
    r = s.send("offer-no-sdp", m)
    s.expect(r.get("result") == "error", "offer without sdp is an error")
    r = s.offer("this is not an SDP\r\n", name="offer-bad-sdp")
    s.expect(r.get("result") == "error", "unparsable sdp is an error")
    r = s.send("unknown-command", {"command": "no-such-command"})
    s.expect(r.get("result") == "error", "unknown command is an error")
    # rtpengine: not an error but "ok" with a warning (a BYE for a call the relay never
    # saw must not make Kamailio log an error).
    r = s.delete(name="delete-unknown-call", call_id=s.call_id + "-nosuch")
    s.expect(r.get("result") == "ok" and r.get("warning"), "delete of an unknown call: warning")
    r = s.send("ping", {"command": "ping"})
    s.expect(r.get("result") == "pong", "ping answers pong")


SCENARIOS = [
    ("plain_audio", sc_plain_audio),
    ("audio_video", sc_audio_video),
    ("ipv6", sc_ipv6),
    ("hold_resume", sc_hold_resume),
    ("reoffer_unchanged", sc_reoffer_unchanged),
    ("rejected_mline", sc_rejected_mline),
    ("rtcp_mux_demux", sc_rtcp_mux_demux),
    ("rtcp_mux_accept", sc_rtcp_mux_accept),
    ("rtcp_mux_offer", sc_rtcp_mux_offer),
    ("ice_remove", sc_ice_remove),
    ("ice_force", sc_ice_force),
    ("ice_default", sc_ice_default),
    ("sdes_plain_to_savp", sc_sdes_plain_to_savp),
    ("sdes_savp_to_plain", sc_sdes_savp_to_plain),
    ("sdes_no_suite", sc_sdes_no_suite),
    ("sdes_off", sc_sdes_off),
    ("query", sc_query),
    ("list", sc_list),
    ("statistics", sc_statistics),
    ("errors", sc_errors),
]


def run_scenario(server, name, fn):
    s = Session(server, name)
    try:
        fn(s)
    finally:
        # Whatever the scenario left (a failed expectation stops nothing, an exception
        # might): delete its call so that list sees only its own.
        for cid in (s.call_id,):
            try:
                server.ng.request({"command": "delete", "call-id": cid, "from-tag": "caller"})
            except AssertionError:
                pass
    return s


def show(s):
    lines = ["== %s / %s" % (s.scenario, s.server.name)]
    for st in s.steps:
        r = st.reply
        head = "  %-22s result=%s" % (st.name, r.get("result"))
        if "error-reason" in r:
            head += " error-reason=%r" % r["error-reason"]
        head += " keys=%s" % ",".join(sorted(r))
        lines.append(head)
        if st.sdp:
            for sec in st.sdp:
                lines.append("      " + " | ".join(sec))
        if st.name == "query":
            lines.append("      nested keys: " + ", ".join(sorted(key_paths(r, "query") - set(r))))
        if isinstance(r.get("statistics"), dict):
            lines.append("      statistics keys: " + ", ".join(sorted(r["statistics"])))
        if "warning" in r:
            lines.append("      warning: %r" % r["warning"])
    return "\n".join(lines)


def compare(a, b):
    """Differences between rtpengine's recording `a` and Karl's `b` not in DEVIATIONS."""
    out = []
    if [st.name for st in a.steps] != [st.name for st in b.steps]:
        return ["steps differ: %s vs %s" % ([st.name for st in a.steps],
                                            [st.name for st in b.steps])]
    for sa, sb in zip(a.steps, b.steps):
        where = "%s/%s" % (a.scenario, sa.name)
        ra, rb = sa.reply, sb.reply
        if deviation("reply", "karl", where) or deviation("reply", "rtpengine", where):
            continue
        if ra.get("result") != rb.get("result"):
            out.append("%s: result %r vs %r" % (where, ra.get("result"), rb.get("result")))
        ea, eb = ra.get("error-reason"), rb.get("error-reason")
        detailed = isinstance(ea, str) and isinstance(eb, str) and (
            (eb.startswith(ea + ": ") and deviation("error-reason", "karl", where)) or
            (ea.startswith(eb + ": ") and deviation("error-reason", "rtpengine", where)))
        if ea != eb and not detailed:
            out.append("%s: error-reason %r vs %r" % (where, ra.get("error-reason"),
                                                       rb.get("error-reason")))
        command = sa.message.get("command")
        ka, kb = key_paths(ra, command), key_paths(rb, command)
        for side, only in (("rtpengine", ka - kb), ("karl", kb - ka)):
            for k in sorted(only):
                if not deviation("key", side, k):
                    out.append("%s: key %r only in %s's reply" % (where, k, side))
        if (sa.sdp is None) != (sb.sdp is None):
            out.append("%s: sdp in only one reply" % where)
            continue
        if sa.sdp is None:
            continue
        if len(sa.sdp) != len(sb.sdp):
            out.append("%s: %d vs %d SDP sections" % (where, len(sa.sdp), len(sb.sdp)))
            continue
        for i, (la, lb) in enumerate(zip(sa.sdp, sb.sdp)):
            rest_b = list(lb)
            only_a = []
            for line in la:
                if line in rest_b:
                    rest_b.remove(line)
                else:
                    only_a.append(line)
            for side, only in (("rtpengine", only_a), ("karl", rest_b)):
                for line in only:
                    if not deviation("sdp", side, line):
                        out.append("%s: SDP section %d: %r only in %s's" % (where, i, line, side))
    return out


# ---------------------------------------------------------------- servers


class Server:
    def __init__(self, name, ng, relay4, relay6):
        self.name, self.ng, self.relay4, self.relay6 = name, ng, relay4, relay6
        self.relay_addresses = (relay4, relay6)


class NgCompatTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tag = "%d" % (os.getpid() % 100000)
        cls.made = []
        cls.rtpe = cls.karl = None
        try:
            ns = Netns("karl-ngc-" + tag, "kngc" + tag, "kngd" + tag,
                       [RTPE4 + "/24", RTPE6 + "/64"])
            cls.made.append(ns)
            ns.run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", check=False)
            wait_ipv6_ready(ns)
            proc = Rtpengine(ns, [RTPE4, RTPE6], ng_port=2223, port_min=35000, port_max=35999)
            cls.made.append(proc)
            proc.wait_ready()
            ng = RawNg(2223, netns=ns.name)
            cls.made.append(ng)
            cls.rtpe = Server("rtpengine", ng, RTPE4, RTPE6)
            if ONLY != "rtpengine":
                ng_port = free_udp_port()
                karl = KarlProcess(KARL_CONFIG % ng_port, "kngt" + tag, free_tcp_port())
                cls.made.append(karl)
                karl.wait_ready()
                kng = RawNg(ng_port)
                cls.made.append(kng)
                deadline = time.time() + 5
                while not kng.ping():
                    if time.time() > deadline:
                        raise RuntimeError("karl-dp does not answer ng ping on 127.0.0.1:%d:\n%s"
                                           % (ng_port, karl.output()[-3000:]))
                cls.karl = Server("karl", kng, KARL4, KARL6)
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for thing in reversed(cls.made):
            thing.close()

    def test_scenarios(self):
        for name, fn in SCENARIOS:
            with self.subTest(scenario=name):
                a = run_scenario(self.rtpe, name, fn)
                if SHOW:
                    print(show(a))
                problems = list(a.failures)
                if self.karl is not None:
                    b = run_scenario(self.karl, name, fn)
                    if SHOW:
                        print(show(b))
                    problems += b.failures + compare(a, b)
                self.assertEqual(problems, [], "\n".join(problems))

    def test_comparison_of_rtpengine_with_itself_is_clean(self):
        """The normalization removes everything that legitimately changes between two runs
        (ports, keys, ICE credentials): rtpengine against itself shows no difference, so a
        difference against Karl is Karl's."""
        for name, fn in SCENARIOS:
            with self.subTest(scenario=name):
                a = run_scenario(self.rtpe, name, fn)
                b = run_scenario(self.rtpe, name, fn)
                problems = a.failures + b.failures + compare(a, b)
                self.assertEqual(problems, [], "\n".join(problems))

    def test_deviations_are_documented(self):
        """docs/ng-compat.md lists every entry of DEVIATIONS (by its pattern)."""
        doc = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../docs/ng-compat.md")
        with open(doc) as f:
            text = f.read().replace("\\|", "|")  # "|" is escaped in Markdown tables
        for kind, side, pattern, _ in DEVIATIONS:
            self.assertIn("`%s`" % pattern, text, "docs/ng-compat.md misses %s %s" % (kind, side))


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


if __name__ == "__main__":
    unittest.main()
