"""End to end: ICE through the real karl-dp (ng `ICE: force` and rtpengine's default of
passing ICE on), with a real, independent full ICE agent (Debian's python3-aioice,
controlling) in the callee's namespace. Karl is ICE-lite (docs/decisions.md D25): it
announces one host candidate per component, answers the agent's connectivity checks on
the media ports and sends media to the pair the agent nominates.

Topology (as test_ng.py): ext0 (198.51.100.1, 2001:db8:a::1) faces namespace A (the
caller, 198.51.100.2), ext1 (203.0.113.1, 2001:db8:b::1) faces B (the callee,
203.0.113.2); ng on 127.0.0.1.
"""
import json
import os
import subprocess
import unittest

from harness import http_json, parse_sdp
from test_ng import NgClientMixin
from test_srtp import A4, A6, B4, B6, SrtpTopology

HERE = os.path.dirname(os.path.abspath(__file__))
ICE_PEER = os.path.join(HERE, "ice_peer.py")
# Debian's interpreter: python3-aioice is a Debian package (scripts/setup.sh).
DEBIAN_PYTHON = "/usr/bin/python3"
N = 200  # RTP packets each way

PEER_UFRAG, PEER_PWD = "Bq7x", "tH3kL9mN2pQ5rS8uV1wX4y"


def sdp_text(addr, port, extra=(), session_extra=(), version=1, rtcp_mux=False):
    ip = "IP6" if ":" in addr else "IP4"
    lines = ["v=0", "o=- 5150 %d IN %s %s" % (version, ip, addr), "s=karl-ice",
             "c=IN %s %s" % (ip, addr), "t=0 0"] + list(session_extra) + [
             "m=audio %d RTP/AVP 0 101" % port, "a=rtpmap:0 PCMU/8000",
             "a=rtpmap:101 telephone-event/8000", "a=sendrecv"]
    if rtcp_mux:
        lines.append("a=rtcp-mux")
    return "\r\n".join(lines + list(extra)) + "\r\n"


def ice_attrs(addr, port, ufrag=PEER_UFRAG, pwd=PEER_PWD, components=(1, 2)):
    out = ["a=ice-ufrag:" + ufrag, "a=ice-pwd:" + pwd]
    for c in components:
        out.append("a=candidate:1 %d UDP %d %s %d typ host" % (c, 2130706432 - c, addr,
                                                               port + c - 1))
    return out


def ice_of(sdp):
    """Karl's ICE in an SDP: {"lite", "ufrag", "pwd", "candidates": [fields]}."""
    lines = sdp.replace("\r\n", "\n").split("\n")
    first_m = next((i for i, l in enumerate(lines) if l.startswith("m=")), len(lines))
    get = lambda name: next((l.split(":", 1)[1] for l in lines if l.startswith("a=%s:" % name)),
                            None)
    return {"lite": "a=ice-lite" in lines[:first_m],
            "lite_in_media": "a=ice-lite" in lines[first_m:],
            "ufrag": get("ice-ufrag"), "pwd": get("ice-pwd"),
            "candidates": [l[len("a=candidate:"):].split() for l in lines
                           if l.startswith("a=candidate:")]}


class IceTest(NgClientMixin, SrtpTopology):
    TAG = "i"

    @classmethod
    def make_config(cls, text):
        if not os.access(DEBIAN_PYTHON, os.X_OK):
            raise RuntimeError("%s is missing (scripts/setup.sh installs python3-aioice)"
                               % DEBIAN_PYTHON)
        probe = subprocess.run([DEBIAN_PYTHON, "-c", "import aioice"], capture_output=True,
                               text=True)
        if probe.returncode != 0:
            raise RuntimeError("python3-aioice is not installed (scripts/setup.sh): %s"
                               % probe.stderr)
        return super().make_config(text)

    def counter(self, name):
        m, _ = self.karl.metrics()
        return m.get(name, 0)

    def session(self, call_id):
        status, page, _ = http_json("GET", self.api + "/sessions?state=active&call_id=" + call_id)
        self.assertEqual(status, 200, page)
        self.assertEqual(len(page["sessions"]), 1, page)
        return page["sessions"][0]

    def checks(self, bind, karl_addr, karl_port, karl_ice):
        remote = "[%s]:%d" % (karl_addr, karl_port) if ":" in karl_addr else \
            "%s:%d" % (karl_addr, karl_port)
        out = self.b.run(DEBIAN_PYTHON, ICE_PEER, "checks", "--bind", bind, "--remote", remote,
                         "--ufrag", PEER_UFRAG, "--remote-ufrag", karl_ice["ufrag"],
                         "--remote-pwd", karl_ice["pwd"], timeout=30).stdout
        return json.loads(out.strip().splitlines()[-1])

    # ------------------------------------------------------------------ tests

    def test_a_full_agent_checks_nominates_and_media_follows_the_nomination(self):
        answered0 = self.counter("karl_ice_checks_answered_total")
        nominated0 = self.counter("karl_ice_nominations_total")
        # The caller does no ICE; the callee gets ICE because the request forces it.
        r = self.offer("ice-force", sdp_text(A4, 40600), ICE="force")
        off, ice = parse_sdp(r["sdp"]), ice_of(r["sdp"])
        self.assertEqual(off["address"], "203.0.113.1")
        self.assertTrue(ice["lite"], r["sdp"])
        self.assertFalse(ice["lite_in_media"], r["sdp"])
        self.assertRegex(ice["ufrag"] or "", r"^[A-Za-z0-9+/]{8}$")
        self.assertRegex(ice["pwd"] or "", r"^[A-Za-z0-9+/]{24}$")
        # RFC 8839 §5.1: foundation component transport priority address port typ host.
        self.assertEqual([c[1:] for c in ice["candidates"]], [
            ["1", "UDP", "2130706431", "203.0.113.1", str(off["port"]), "typ", "host"],
            ["2", "UDP", "2130706430", "203.0.113.1", str(off["rtcp_port"]), "typ", "host"]])
        self.assertEqual(ice["candidates"][0][0], ice["candidates"][1][0], "one foundation")
        # The callee answers with ICE; its SDP's port (40700) is not where the agent will
        # be: media must follow the nominated pair, not the SDP.
        r = self.answer("ice-force", sdp_text(B4, 40700, ice_attrs(B4, 40700)))
        ans = ice_of(r["sdp"])
        self.assertEqual((ans["lite"], ans["ufrag"], ans["candidates"]), (False, None, []),
                         "the caller offered no ICE: its answer has none")
        karl_a = parse_sdp(r["sdp"])

        agent = subprocess.Popen(
            ["ip", "netns", "exec", self.b.name, DEBIAN_PYTHON, ICE_PEER, "agent",
             "--ufrag", PEER_UFRAG, "--pwd", PEER_PWD, "--remote-ufrag", ice["ufrag"],
             "--remote-pwd", ice["pwd"], "--components", "2", "--remote-lite",
             "--count", str(N), "--expect", str(N), "--timeout", "15"] +
            sum((["--candidate", " ".join(c)] for c in ice["candidates"]), []),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addCleanup(lambda: agent.poll() is None and (agent.kill(), agent.wait()))
        first = agent.stdout.readline()
        try:
            connected = json.loads(first)
        except ValueError:
            self.fail("ice_peer: %s%s" % (first, agent.stdout.read()))
        self.assertEqual(connected["event"], "connected",
                         "%s\n%s" % (connected, self.karl.output()[-3000:]))
        self.assertEqual(connected["remote"], ["203.0.113.1", off["port"]])
        local = connected["local"]
        self.assertEqual(local[0], B4)
        self.assertNotEqual(local[1], 40700)

        # Karl took the nominated pair as the callee's address, for RTP (and RTCP).
        leg = self.session("ice-force")["legs"][1]
        self.assertEqual(leg["peer"], {"address": B4, "port": local[1]}, leg)
        out = self.a.run(DEBIAN_PYTHON, ICE_PEER, "media", "--bind", A4, "--port", "40600",
                         "--remote", "%s:%d" % (karl_a["address"], karl_a["port"]),
                         "--count", str(N), "--expect", str(N), timeout=60).stdout
        got_a = json.loads(out.strip().splitlines()[-1])
        done = json.loads(agent.communicate(timeout=60)[0].strip().splitlines()[-1])
        ctx = "%s\n%s" % (done, self.karl.output()[-3000:])
        self.assertEqual(done["event"], "done", ctx)
        self.assertEqual(done["count"], N, "A -> Karl -> the nominated pair: " + ctx)
        self.assertTrue(done["in_order"] and done["intact"], ctx)
        self.assertEqual(got_a["count"], N, "the agent -> Karl -> A: %s" % got_a)
        self.assertTrue(got_a["in_order"] and got_a["intact"], got_a)
        self.assertEqual(got_a["sources"], ["198.51.100.1:%d" % karl_a["port"]], got_a)
        # Checks on both components were answered (STUN never reached A as media).
        self.assertGreaterEqual(self.counter("karl_ice_checks_answered_total") - answered0, 2)
        self.assertGreaterEqual(self.counter("karl_ice_nominations_total") - nominated0, 1)
        drops = self.session("ice-force")["legs"][1]["stats"]["rtp"]["drops"]
        self.assertEqual(drops, 0, "STUN counted as media drops")

    def test_b_only_authentic_checks_are_answered_on_both_families(self):
        for call_id, a_addr, b_addr, karl_b in (("ice-checks4", A4, B4, "203.0.113.1"),
                                                ("ice-checks6", A6, B6, "2001:db8:b::1")):
            with self.subTest(call=call_id):
                rejected0 = self.counter("karl_ice_checks_rejected_total")
                r = self.offer(call_id, sdp_text(a_addr, 40800), ICE="force")
                off, ice = parse_sdp(r["sdp"]), ice_of(r["sdp"])
                self.assertEqual(off["address"], karl_b)
                self.assertEqual(ice["candidates"][0][4:6], [karl_b, str(off["port"])])
                self.answer(call_id, sdp_text(b_addr, 40900, ice_attrs(b_addr, 40900)))
                got = self.checks(b_addr, karl_b, off["port"], ice)
                # RFC 5389 §10.1.2 / §7.3.1: refused with the error that says why, with a
                # FINGERPRINT and without MESSAGE-INTEGRITY (nothing to key it with).
                for case, code in (("wrong_password", 401), ("no_integrity", 400),
                                   ("unknown_attribute", 420)):
                    self.assertEqual(got[case], {"class": "error", "code": code,
                                                 "fingerprint": True, "integrity": False,
                                                 "transaction_matches": True},
                                     "%s: %s" % (case, got))
                self.assertIsNone(got["bad_fingerprint"], "not STUN: dropped %s" % got)
                good = got["good"]
                self.assertIsNotNone(good, "no answer to a valid check: %s\n%s"
                                     % (got, self.karl.output()[-3000:]))
                self.assertEqual(good["class"], "success", good)
                self.assertTrue(good["transaction_matches"], good)
                self.assertEqual(good["xor_mapped"], got["local"], good)
                self.assertTrue(good["integrity"] and good["fingerprint"], good)
                self.assertGreaterEqual(
                    self.counter("karl_ice_checks_rejected_total") - rejected0, 4)
                # A check without USE-CANDIDATE moves nothing.
                self.assertEqual(self.session(call_id)["legs"][1]["peer"],
                                 {"address": b_addr, "port": 40900})

    def test_c_default_passes_ice_on_keeps_credentials_and_follows_a_restart(self):
        caller_ice = ice_attrs(A4, 41000, ufrag="Cal1", pwd="callerpasswordcallerpw1",
                               components=(1,))
        # No ICE flag: the caller speaks ICE, so the callee is offered Karl's ICE too.
        r = self.offer("ice-default", sdp_text(A4, 41000, caller_ice, rtcp_mux=True))
        to_b = ice_of(r["sdp"])
        self.assertTrue(to_b["lite"] and to_b["ufrag"], r["sdp"])
        self.assertNotIn(A4, r["sdp"], "the caller's candidates stay hidden")
        r = self.answer("ice-default", sdp_text(B4, 41100, rtcp_mux=True))
        to_a = ice_of(r["sdp"])
        self.assertTrue(to_a["lite"] and to_a["ufrag"], r["sdp"])
        self.assertNotEqual(to_a["ufrag"], to_b["ufrag"], "one set of credentials per side")
        self.assertEqual([c[1] for c in to_a["candidates"]], ["1"],
                         "rtcp-mux answered: no component 2")
        # A re-offer with the same ICE credentials is no restart: Karl's stay.
        r = self.offer("ice-default", sdp_text(A4, 41000, caller_ice, version=2, rtcp_mux=True))
        self.assertEqual(ice_of(r["sdp"])["ufrag"], to_b["ufrag"])
        r = self.answer("ice-default", sdp_text(B4, 41100, version=2, rtcp_mux=True))
        self.assertEqual((ice_of(r["sdp"])["ufrag"], ice_of(r["sdp"])["pwd"]),
                         (to_a["ufrag"], to_a["pwd"]))
        # The caller restarts ICE (new ufrag): Karl's answer to it carries new credentials,
        # and checks with the old ones are no longer answered.
        restart = ice_attrs(A4, 41000, ufrag="Cal2", pwd="callerpasswordcallerpw2",
                            components=(1,))
        self.offer("ice-default", sdp_text(A4, 41000, restart, version=3, rtcp_mux=True))
        r = self.answer("ice-default", sdp_text(B4, 41100, version=3, rtcp_mux=True))
        new_a = ice_of(r["sdp"])
        self.assertNotEqual(new_a["ufrag"], to_a["ufrag"])
        self.assertNotEqual(new_a["pwd"], to_a["pwd"])
        # A value rtpengine does not know is reported and the default applies.
        r = self.offer("ice-default", sdp_text(A4, 41000, restart, version=3, rtcp_mux=True),
                       ICE="sometimes")
        self.assertIn("ICE 'sometimes' not understood", r.get("warning", ""), r)
        self.assertEqual(ice_of(r["sdp"])["ufrag"], to_b["ufrag"])
        # ICE=remove toward the callee turns Karl's ICE off on that leg: a check that
        # would have been answered is not.
        r = self.offer("ice-default", sdp_text(A4, 41000, restart, version=4, rtcp_mux=True),
                       ICE="remove")
        self.assertEqual(ice_of(r["sdp"])["ufrag"], None)
        karl_b = parse_sdp(r["sdp"])
        got = self.checks(B4, karl_b["address"], karl_b["port"], to_b)
        self.assertIsNone(got["good"], got)


    def test_d_rest_sessions_take_ice_credentials_and_turn_them_off(self):
        creds = {"ufrag": "RestUfrg", "pwd": "restpasswordrestpassword"}
        body = {"call_id": "ice-rest", "legs": [
            {"peer": {"address": A4, "port": 41200}, "interface": "ext0"},
            {"interface": "ext1", "ice": creds}]}
        status, s, _ = http_json("POST", self.api + "/sessions", body)
        self.assertEqual(status, 201, s)
        self.addCleanup(http_json, "DELETE", self.api + "/sessions/" + s["id"])
        self.assertEqual(s["legs"][1]["ice"], creds)
        self.assertIsNone(s["legs"][0]["ice"])
        local = s["legs"][1]["local"]
        got = self.checks(B4, local["address"], local["port"], creds)
        self.assertIsNotNone(got["good"], got)
        self.assertEqual(got["good"]["xor_mapped"], got["local"], got)
        status, s, _ = http_json("PATCH", self.api + "/sessions/" + s["id"],
                                 {"legs": [None, {"ice": False}]})
        self.assertEqual(status, 200, s)
        self.assertIsNone(s["legs"][1]["ice"])
        got = self.checks(B4, local["address"], local["port"], creds)
        self.assertIsNone(got["good"], got)


if __name__ == "__main__":
    unittest.main()
