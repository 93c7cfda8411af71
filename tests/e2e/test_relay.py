"""End to end: media relayed by the real karl-dp between two peers in their own
network namespaces, sessions driven over the REST API.

Topology: Karl has two TAP ports, ext0 (198.51.100.1/24, 2001:db8:a::1/64) and ext1
(203.0.113.1/24, 2001:db8:b::1/64), each bridged to one peer namespace:
  A: 198.51.100.2/24, 2001:db8:a::2/64     B: 203.0.113.2/24, 2001:db8:b::2/64
"""
import json
import os
import time
import unittest

from harness import (Bridge, KarlProcess, Netns, free_tcp_port, http_json, peer, peer_bg, sh)

N = 2000  # RTP packets per direction per test

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
  media_timeout_s: 3
api:
  port: %d
ng:
  enabled: false
"""


class RelayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tag = "%d" % (os.getpid() % 100000)
        cls.made = []
        try:
            cls.api_port = free_tcp_port()
            cls.karl = KarlProcess(CONFIG % cls.api_port, "kr0" + tag, free_tcp_port(),
                                   extra_eal=["--vdev", "net_tap1,iface=kr1" + tag])
            cls.made.append(cls.karl)
            cls.karl.wait_ready()
            cls.api = "http://127.0.0.1:%d/v1" % cls.api_port
            cls.a = Netns("karl-ra-" + tag, "kra" + tag, "krb" + tag,
                          ["198.51.100.2/24", "2001:db8:a::2/64"])
            cls.made.append(cls.a)
            cls.b = Netns("karl-rb-" + tag, "krc" + tag, "krd" + tag,
                          ["203.0.113.2/24", "2001:db8:b::2/64"])
            cls.made.append(cls.b)
            for ns in (cls.a, cls.b):  # no DAD delay before the v6 addresses work
                ns.run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", check=False)
            cls.bra = Bridge("krx" + tag)
            cls.made.append(cls.bra)
            cls.bra.add(cls.a.veth_root)
            cls.bra.add_tap("kr0" + tag, "02:00:00:00:ee:01")
            cls.brb = Bridge("kry" + tag)
            cls.made.append(cls.brb)
            cls.brb.add(cls.b.veth_root)
            cls.brb.add_tap("kr1" + tag, "02:00:00:00:ee:02")
            time.sleep(1.5)  # IPv6 addresses leave tentative state
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for thing in reversed(cls.made):
            thing.close()

    def create(self, a_addr, a_port, b_addr, b_port, **extra):
        body = {"call_id": "relay-%d-%d" % (a_port, b_port), "from_tag": "ft", "legs": [
            {"peer": {"address": a_addr, "port": a_port}, "interface": "ext0"},
            {"peer": {"address": b_addr, "port": b_port}, "interface": "ext1"}]}
        body.update(extra)
        status, s, headers = http_json("POST", self.api + "/sessions", body)
        self.assertEqual(status, 201, s)
        self.assertEqual(headers.get("Location"), "/v1/sessions/" + s["id"])
        return s

    def relay_both_ways(self, s, a_addr, a_port, b_addr, b_port):
        """Waits until the path works both ways, then sends N packets each way."""
        l0, l1 = s["legs"][0]["local"], s["legs"][1]["local"]
        echo = peer_bg(self.b, "echo", b_addr, b_port, 10)
        out = peer(self.a, "probe", a_addr, a_port, l0["address"], l0["port"], 8)
        echo.kill()
        echo.wait()
        self.assertIn("ok", out, "no path through Karl: %s\n%s" % (out, self.karl.output()[-3000:]))
        # A -> B
        rx = peer_bg(self.b, "recv", b_addr, b_port, N, 20)
        time.sleep(0.3)
        peer(self.a, "send", a_addr, a_port, l0["address"], l0["port"], N)
        res = json.loads(rx.communicate(timeout=30)[0].strip().splitlines()[-1])
        self.assertEqual(res["count"], N, res)
        self.assertTrue(res["in_order"], res)
        self.assertTrue(res["intact"], res)
        self.assertEqual(res["sources"], [self.fmt(l1["address"], l1["port"])])
        # B -> A
        rx = peer_bg(self.a, "recv", a_addr, a_port, N, 20)
        time.sleep(0.3)
        peer(self.b, "send", b_addr, b_port, l1["address"], l1["port"], N, 0x1234)
        res = json.loads(rx.communicate(timeout=30)[0].strip().splitlines()[-1])
        self.assertEqual(res["count"], N, res)
        self.assertTrue(res["in_order"] and res["intact"], res)
        self.assertEqual(res["sources"], [self.fmt(l0["address"], l0["port"])])

    @staticmethod
    def fmt(addr, port):
        return "%s:%d" % (addr, port)

    def metric(self, name):
        m, _ = self.karl.metrics()
        return m.get(name, 0)

    def test_ipv4_relay_counts_and_delete(self):
        s = self.create("198.51.100.2", 40000, "203.0.113.2", 40002)
        self.assertEqual(s["state"], "active")
        self.assertEqual(s["legs"][0]["local"]["address"], "198.51.100.1")
        self.assertEqual(s["legs"][1]["local"]["address"], "203.0.113.1")
        self.assertEqual(s["legs"][0]["local"]["port"] % 2, 0)
        self.assertEqual(s["legs"][0]["local_rtcp_port"], s["legs"][0]["local"]["port"] + 1)
        self.relay_both_ways(s, "198.51.100.2", 40000, "203.0.113.2", 40002)

        status, got, _ = http_json("GET", self.api + "/sessions/" + s["id"])
        self.assertEqual(status, 200)
        rtp0, rtp1 = got["legs"][0]["stats"]["rtp"], got["legs"][1]["stats"]["rtp"]
        self.assertGreaterEqual(rtp0["packets"], N)  # plus probes
        self.assertGreaterEqual(rtp1["packets"], N)
        self.assertEqual(rtp0["ssrc"], 0x4B41524C)
        self.assertEqual(rtp1["ssrc"], 0x1234)
        # RFC 3550 A.1: the probes' SSRC changed to the media's; the new source's first
        # packet is its probation packet, so expected counts from the second one.
        self.assertEqual(rtp0["expected"], N - 1)
        self.assertEqual(rtp0["lost"], 0)
        self.assertGreaterEqual(rtp0["ssrc_changes"], 1)
        self.assertIsNotNone(rtp0["last_packet_age_s"])
        self.assertLess(rtp0["jitter_ms"], 50)
        self.assertTrue(got["legs"][0]["latched"])

        status, listed, _ = http_json("GET", self.api + "/sessions?call_id=" + s["call_id"])
        self.assertEqual(status, 200)
        self.assertEqual([x["id"] for x in listed["sessions"]], [s["id"]])

        status, final, _ = http_json("DELETE", self.api + "/sessions/" + s["id"])
        self.assertEqual(status, 200, final)
        self.assertEqual(final["state"], "ended")
        self.assertEqual(final["end_reason"], "deleted")
        self.assertGreaterEqual(final["legs"][0]["stats"]["rtp"]["packets"], N)
        status, _, _ = http_json("DELETE", self.api + "/sessions/" + s["id"])
        self.assertEqual(status, 404)

        # After delete the local port is closed: packets are dropped as no_session.
        before = self.metric('karl_dp_drops_total{reason="no_session"}')
        l0 = s["legs"][0]["local"]
        peer(self.a, "send", "198.51.100.2", 40000, l0["address"], l0["port"], 50)
        deadline = time.time() + 5
        while time.time() < deadline and self.metric('karl_dp_drops_total{reason="no_session"}') < before + 50:
            time.sleep(0.1)
        self.assertGreaterEqual(self.metric('karl_dp_drops_total{reason="no_session"}'), before + 50)

    def test_ipv4_to_ipv6_bridging(self):
        body = {"call_id": "bridge-v4-v6", "legs": [
            {"peer": {"address": "198.51.100.2", "port": 41000}, "interface": "ext0"},
            {"peer": {"address": "2001:db8:b::2", "port": 41002}, "interface": "ext1"}]}
        status, s, _ = http_json("POST", self.api + "/sessions", body)
        self.assertEqual(status, 201, s)
        self.assertEqual(s["legs"][1]["local"]["address"], "2001:db8:b::1")
        try:
            self.relay_both_ways(s, "198.51.100.2", 41000, "2001:db8:b::2", 41002)
        finally:
            http_json("DELETE", self.api + "/sessions/" + s["id"])

    def test_first_packets_wait_for_a_new_neighbor(self):
        """Media toward a next hop Karl has not resolved yet is held (like a kernel's
        neighbor queue) and sent once ARP answers: none of the first packets is lost.
        B only takes the address 203.0.113.9 after A has sent, so every packet has to
        wait for Karl's ARP retry."""
        s = self.create("198.51.100.2", 40910, "203.0.113.9", 40912)
        self.addCleanup(self.b.run, "ip", "addr", "del", "203.0.113.9/24", "dev",
                        self.b.veth_ns, check=False)
        held_before = self.metric("karl_neighbor_held_sent_total")
        l0 = s["legs"][0]["local"]
        n = 20
        peer(self.a, "send", "198.51.100.2", 40910, l0["address"], l0["port"], n, 0x77, 400)
        time.sleep(0.3)
        self.b.run("ip", "addr", "add", "203.0.113.9/24", "dev", self.b.veth_ns)
        rx = peer_bg(self.b, "recv", "203.0.113.9", 40912, n, 8)
        res = json.loads(rx.communicate(timeout=20)[0].strip().splitlines()[-1])
        self.assertEqual(res["count"], n, res)
        self.assertTrue(res["in_order"] and res["intact"], res)
        self.assertGreaterEqual(self.metric("karl_neighbor_held_sent_total") - held_before, n)
        status, got, _ = http_json("GET", self.api + "/sessions/" + s["id"])
        self.assertEqual(got["legs"][0]["stats"]["rtp"]["drops_by_reason"].get("no_neighbor", 0),
                         0, got["legs"][0]["stats"])
        http_json("DELETE", self.api + "/sessions/" + s["id"])

    def test_latching_without_given_peer(self):
        # Leg 0 has no peer: Karl learns it from A's first packet.
        body = {"call_id": "latch", "legs": [
            {"interface": "ext0"},
            {"peer": {"address": "203.0.113.2", "port": 42002}, "interface": "ext1"}]}
        status, s, _ = http_json("POST", self.api + "/sessions", body)
        self.assertEqual(status, 201, s)
        self.assertIsNone(s["legs"][0]["peer"])
        try:
            self.relay_both_ways(s, "198.51.100.2", 42000, "203.0.113.2", 42002)
            status, got, _ = http_json("GET", self.api + "/sessions/" + s["id"])
            self.assertEqual(got["legs"][0]["peer"], {"address": "198.51.100.2", "port": 42000})
            self.assertTrue(got["legs"][0]["latched"])
        finally:
            http_json("DELETE", self.api + "/sessions/" + s["id"])

    def test_strict_source_drops_other_sources(self):
        body = {"call_id": "strict", "legs": [
            {"peer": {"address": "198.51.100.2", "port": 43000}, "interface": "ext0",
             "strict_source": True},
            {"peer": {"address": "203.0.113.2", "port": 43002}, "interface": "ext1"}]}
        status, s, _ = http_json("POST", self.api + "/sessions", body)
        self.assertEqual(status, 201, s)
        try:
            self.relay_both_ways(s, "198.51.100.2", 43000, "203.0.113.2", 43002)
            l0 = s["legs"][0]["local"]
            before = self.metric('karl_dp_drops_total{reason="strict_source"}')
            peer(self.a, "send", "198.51.100.2", 43100, l0["address"], l0["port"], 20)
            deadline = time.time() + 5
            while time.time() < deadline and self.metric('karl_dp_drops_total{reason="strict_source"}') < before + 20:
                time.sleep(0.1)
            self.assertEqual(self.metric('karl_dp_drops_total{reason="strict_source"}'), before + 20)
            status, got, _ = http_json("GET", self.api + "/sessions/" + s["id"])
            self.assertEqual(got["legs"][0]["stats"]["rtp"]["drops_by_reason"].get("strict_source"), 20)
        finally:
            http_json("DELETE", self.api + "/sessions/" + s["id"])

    def test_media_timeout_ends_session(self):
        body = {"call_id": "timeout", "media_timeout_s": 1, "legs": [
            {"peer": {"address": "198.51.100.2", "port": 44000}, "interface": "ext0"},
            {"peer": {"address": "203.0.113.2", "port": 44002}, "interface": "ext1"}]}
        status, s, _ = http_json("POST", self.api + "/sessions", body)
        self.assertEqual(status, 201, s)
        deadline = time.time() + 6
        got = s
        while time.time() < deadline and got["state"] == "active":
            time.sleep(0.2)
            _, got, _ = http_json("GET", self.api + "/sessions/" + s["id"])
        self.assertEqual(got["state"], "ended")
        self.assertEqual(got["end_reason"], "timeout")

    def test_z_malformed_flood_is_counted_and_survived(self):
        def counters():
            _, st = self.karl.get_json("/status")
            w = st["workers"][0]["counters"]
            ports = [p["counters"] for p in st["ports"]]
            port = {k: sum(p[k] for p in ports) for k in ("rx_packets", "rx_missed")}
            return w["rx_packets"], sum(w["drops"].values()), w["exceptions"], w["tx_packets"], port
        def settled():
            # Stable for two samples, and the port counters (refreshed by the control
            # plane every 200 ms; on this 2-core machine the flood's softirq work can
            # starve it for a second) have caught up with the worker's.
            last = None
            deadline = time.time() + 20
            while time.time() < deadline:
                now = counters()
                if now == last and now[0] == now[4]["rx_packets"]:
                    break
                last = now
                time.sleep(0.5)
            return last
        rx0, drops0, exc0, tx0, port0 = settled()
        _, st = self.karl.get_json("/status")
        mac = [p for p in st["ports"] if p["name"] == "ext0"][0]["mac"]
        sent = int(self.a.run("python3", os.path.join(os.path.dirname(__file__), "flood.py"),
                              self.a.veth_ns, mac, "198.51.100.1", "198.51.100.2", "40000", "4",
                              "7", timeout=30).stdout.strip())
        self.assertGreater(sent, 1000)
        # Settle: the counters stop moving once the worker has seen everything.
        rx, drops, exc, tx, port = settled()
        # The kernel's bridge and TAP queue may lose some of a raw flood before it
        # reaches Karl; what the ports received, the worker saw.
        self.assertGreater(rx - rx0, sent // 2)
        self.assertEqual(rx - rx0, port["rx_packets"] - port0["rx_packets"])
        self.assertEqual(port["rx_missed"], port0["rx_missed"])
        # Every received frame was either dropped under a named reason or handed to the
        # control plane; no session exists for these, so nothing was relayed.
        self.assertEqual(rx - rx0, (drops - drops0) + (exc - exc0))
        status, _, _ = http_json("GET", "http://127.0.0.1:%d/health" % self.karl.metrics_port)
        self.assertEqual(status, 200)
        self.assertIsNone(self.karl.proc.poll(), "karl-dp died")

    def test_reset_stats_restarts_the_session_counters(self):
        s = self.create("198.51.100.2", 40920, "203.0.113.2", 40922)
        self.addCleanup(http_json, "DELETE", self.api + "/sessions/" + s["id"])
        self.relay_both_ways(s, "198.51.100.2", 40920, "203.0.113.2", 40922)
        url = self.api + "/sessions/" + s["id"]
        status, got, _ = http_json("GET", url)
        self.assertGreaterEqual(got["legs"][0]["stats"]["rtp"]["packets"], N)
        status, body, _ = http_json("PATCH", url, {"reset_stats": "yes"})
        self.assertEqual((status, body["error"]["field"]), (400, "reset_stats"), body)
        status, got, _ = http_json("PATCH", url, {"reset_stats": True})
        self.assertEqual(status, 200, got)
        for leg in got["legs"]:
            for kind in ("rtp", "rtcp"):
                st = leg["stats"][kind]
                self.assertEqual((st["packets"], st["bytes"], st["drops"], st["expected"],
                                  st["lost"]), (0, 0, 0, 0, 0), st)
        self.assertEqual(got["legs"][0]["stats"]["rtp"]["ssrc"], 0x4B41524C)  # still current
        rx = peer_bg(self.b, "recv", "203.0.113.2", 40922, 10, 20)
        time.sleep(0.3)
        l0 = s["legs"][0]["local"]
        peer(self.a, "send", "198.51.100.2", 40920, l0["address"], l0["port"], 10, 0x4B41524C)
        rx.communicate(timeout=30)
        status, got, _ = http_json("GET", url)
        self.assertEqual(got["legs"][0]["stats"]["rtp"]["packets"], 10, got["legs"][0]["stats"])
        self.assertEqual(got["legs"][1]["stats"]["rtp"]["packets"], 0)

    def test_rest_errors(self):
        status, body, _ = http_json("POST", self.api + "/sessions", {"call_id": "x", "legs": [{}]})
        self.assertEqual(status, 400)
        self.assertIn("legs", body["error"]["message"])
        status, body, _ = http_json("POST", self.api + "/sessions", {"call_id": "x", "legs": [
            {"interface": "nope"}, {"interface": "ext1"}]})
        self.assertEqual(status, 400, body)
        self.assertEqual(body["error"]["field"], "legs[0].interface")
        status, body, _ = http_json("GET", self.api + "/sessions/doesnotexist")
        self.assertEqual(status, 404)


if __name__ == "__main__":
    unittest.main()
