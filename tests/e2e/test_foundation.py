"""End to end: the real karl-dp on net_tap, a peer host in its own network
namespace bridged to Karl's TAP port, the ops endpoints over HTTP, shutdown."""
import os
import re
import signal
import time
import unittest

from harness import (Bridge, KarlProcess, Netns, free_tcp_port, http_get, link_exists,
                     run_karl_once, sh)

KARL_ADDR = "198.51.100.1"
PEER_ADDR = "198.51.100.2"
RTP_PORT = 30010
CONFIG = """\
# e2e test configuration
ports:
  - name: ext0
    device: net_tap0
    addresses: ["%s/24"]
rtp:
  port_min: 30000
  port_max: 30999
log:
  level: 3
""" % KARL_ADDR

SEND_UDP = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[3])):
    s.sendto(b"karl-e2e-%06d" % i + b"x" * 160, (sys.argv[1], int(sys.argv[2])))
"""


class FoundationTest(unittest.TestCase):
    """One karl-dp for the class; tests run in name order and the last stops it."""

    @classmethod
    def setUpClass(cls):
        tag = "%d" % (os.getpid() % 100000)
        cls.tap = "kt" + tag
        cls.bridge = cls.ns = cls.karl = None
        try:
            cls.karl = KarlProcess(CONFIG, cls.tap, free_tcp_port())
            cls.karl.wait_ready()
            cls.bridge = Bridge("kb" + tag)
            cls.ns = Netns("karl-peer-" + tag, "kv" + tag + "a", "kv" + tag + "b",
                           [PEER_ADDR + "/24"])
            cls.bridge.add(cls.ns.veth_root)
            cls.bridge.add_tap(cls.tap)
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.ns:
            cls.ns.close()
        if cls.bridge:
            cls.bridge.close()
        if cls.karl:
            cls.karl.close()

    def test_1_health_and_ready(self):
        status, _, body = http_get(self.karl.base + "/health")
        self.assertEqual(status, 200, body)
        status, _, body = http_get(self.karl.base + "/ready")
        self.assertEqual(status, 200, body)

    def test_2_status_describes_the_node(self):
        status, st = self.karl.get_json("/status")
        self.assertEqual(status, 200)
        self.assertRegex(st["version"], r"^\d+\.\d+\.\d+")
        self.assertEqual(st["config"]["path"], self.karl.config_path)
        self.assertEqual(st["config"]["sha256"], self.karl.config_sha256)
        self.assertEqual(len(st["workers"]), 1)
        self.assertLess(st["workers"][0]["heartbeat_age_ms"], 1000)
        self.assertFalse(st["workers"][0]["stuck"])
        self.assertEqual(len(st["ports"]), 1)
        port = st["ports"][0]
        self.assertEqual(port["name"], "ext0")
        self.assertTrue(port["link_up"])
        self.assertEqual(port["addresses"], [KARL_ADDR + "/24"])
        self.assertRegex(port["mac"], r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")

    def test_3_peer_pings_karl(self):
        # ARP resolution and ICMP echo both go through Karl's exception path.
        p = self.ns.run("ping", "-c", "3", "-i", "0.2", "-W", "2", KARL_ADDR, check=False)
        self.assertEqual(p.returncode, 0, p.stdout)
        status, st = self.karl.get_json("/status")
        self.assertGreaterEqual(st["workers"][0]["counters"]["exceptions"], 4)  # ARP + 3 echo

    def test_4_udp_from_peer_moves_counters(self):
        before, _ = self.karl.metrics()
        n = 500
        self.ns.run("python3", "-c", SEND_UDP, KARL_ADDR, str(RTP_PORT), str(n))
        want_udp = before["karl_dp_udp_packets_total"] + n
        deadline = time.time() + 10
        while time.time() < deadline:
            m, headers = self.karl.metrics()
            if m["karl_dp_udp_packets_total"] >= want_udp:
                break
            time.sleep(0.1)
        self.assertEqual(m["karl_dp_udp_packets_total"], want_udp)
        self.assertEqual(m['karl_dp_drops_total{reason="no_session"}'],
                         before['karl_dp_drops_total{reason="no_session"}'] + n)
        self.assertGreaterEqual(m["karl_dp_rx_packets_total"], before["karl_dp_rx_packets_total"] + n)
        self.assertGreaterEqual(m["karl_dp_rx_bytes_total"],
                                before["karl_dp_rx_bytes_total"] + n * (14 + 20 + 8 + 171))
        self.assertIn("text/plain", headers.get("Content-Type", ""))
        # Port counters are refreshed by the control plane every 200 ms.
        deadline = time.time() + 5
        while time.time() < deadline:
            m, _ = self.karl.metrics()
            if m['karl_port_rx_packets_total{port="ext0"}'] >= before['karl_port_rx_packets_total{port="ext0"}'] + n:
                break
            time.sleep(0.1)
        self.assertGreaterEqual(m['karl_port_rx_packets_total{port="ext0"}'],
                                before['karl_port_rx_packets_total{port="ext0"}'] + n)
        self.assertEqual(m['karl_port_link_up{port="ext0"}'], 1)
        self.assertEqual(m['karl_healthy'], 1)

    def test_5_every_drop_reason_is_exported(self):
        m, _ = self.karl.metrics()
        reasons = [k for k in m if k.startswith("karl_dp_drops_total{")]
        self.assertGreaterEqual(len(reasons), 10)
        with open(os.path.join(os.path.dirname(__file__), "../../docs/drops.md")) as f:
            doc = f.read()
        for k in reasons:
            label = re.search(r'reason="([a-z0-9_]+)"', k).group(1)
            self.assertIn("`%s`" % label, doc, "docs/drops.md does not document %s" % label)

    def test_6_link_down_makes_health_503(self):
        sh("ip", "link", "set", self.tap, "down")
        try:
            status, body = self._wait_health(503)
            self.assertEqual(status, 503, body)
            self.assertIn("ext0 link is down", body)
        finally:
            sh("ip", "link", "set", self.tap, "up")
        status, body = self._wait_health(200)
        self.assertEqual(status, 200, body)

    def _wait_health(self, want, timeout=5):
        deadline = time.time() + timeout
        while True:
            status, _, body = http_get(self.karl.base + "/health")
            if status == want or time.time() > deadline:
                return status, body
            time.sleep(0.1)

    def test_9_sigterm_exits_zero_and_cleans_up(self):
        rc, took = self.karl.stop(signal.SIGTERM)
        self.assertEqual(rc, 0, self.karl.output())
        self.assertLess(took, 2.0, "shutdown took %.2fs" % took)
        self.assertFalse(link_exists(self.tap), "TAP interface left behind")
        self.assertFalse(os.path.exists(self.karl.runtime_dir()), "DPDK runtime dir left behind")
        self.assertIn("karl-dp stopped", self.karl.output())


class BadInputTest(unittest.TestCase):
    """Each bad input: exit 1, a one-line error saying what and where, nothing left."""

    def setUp(self):
        self.tmp = __import__("tempfile").mkdtemp(prefix="karl-bad-")
        self.addCleanup(__import__("shutil").rmtree, self.tmp, True)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def eal(self, prefix, tap=None):
        args = ["-l", "0-1", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", prefix]
        if tap:
            args += ["--vdev", "net_tap0,iface=%s" % tap]
        return args

    def assertOneLineError(self, p, *needles):
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        lines = [l for l in p.stderr.splitlines() if l.startswith("karl-dp: error:")]
        self.assertEqual(len(lines), 1, p.stderr)
        for n in needles:
            self.assertIn(n, lines[0])

    def test_missing_config_file(self):
        p = run_karl_once(["--", "--config", "/nonexistent/karl.yaml"])
        self.assertOneLineError(p, "/nonexistent/karl.yaml")

    def test_invalid_yaml_names_file_and_line(self):
        path = self.write("bad.yaml", CONFIG + "rtp:\n  port_min: [oops\n")
        p = run_karl_once(["--", "--check-config", "--config", path])
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, re.escape(path) + r":\d+")

    def test_bad_value_names_key_and_line(self):
        path = self.write("range.yaml", CONFIG.replace("port_max: 30999", "port_max: 29000"))
        p = run_karl_once(["--", "--check-config", "--config", path])
        self.assertOneLineError(p, path + ":", "rtp.port_max")

    def test_check_config_valid_and_print_redacts_secrets(self):
        path = self.write("ok.yaml", CONFIG + "database:\n  enabled: true\n  password: hunter2secret\n")
        p = run_karl_once(["--", "--check-config", "--config", path])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("valid", p.stdout)
        p = run_karl_once(["--", "--check-config", "--print", "--config", path])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("hunter2secret", p.stdout)
        self.assertIn("port_min: 30000", p.stdout)
        self.assertIn("burst_size: 128", p.stdout)  # defaults are shown

    def test_env_config_path_and_bad_log_level(self):
        path = self.write("ok.yaml", CONFIG)
        p = run_karl_once(["--check-config"], env={"KARL_CONFIG_PATH": path})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(path, p.stdout)
        p = run_karl_once(["--check-config"], env={"KARL_CONFIG_PATH": path, "KARL_LOG_LEVEL": "9"})
        self.assertOneLineError(p, "KARL_LOG_LEVEL")

    def test_bad_eal_argument(self):
        prefix = "karl-bad-eal-%d" % os.getpid()
        path = self.write("ok.yaml", CONFIG)
        p = run_karl_once(["--no-such-eal-option", "--no-huge", "--file-prefix", prefix,
                           "--", "--config", path])
        self.assertOneLineError(p, "EAL")
        self.assertFalse(os.path.exists("/var/run/dpdk/" + prefix))

    def test_device_that_does_not_exist(self):
        tag = "%d" % (os.getpid() % 100000)
        prefix = "karl-bad-dev-%s" % tag
        tap = "kx" + tag
        path = self.write("dev.yaml", CONFIG.replace("device: net_tap0", "device: net_tap7"))
        p = run_karl_once(self.eal(prefix, tap) + ["--", "--config", path],
                          env={"KARL_METRICS_PORT": str(free_tcp_port())})
        self.assertOneLineError(p, "net_tap7", "ext0")
        self.assertFalse(link_exists(tap), "TAP interface left behind")
        self.assertFalse(os.path.exists("/var/run/dpdk/" + prefix), "runtime dir left behind")

    def test_ops_port_in_use(self):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        try:
            tag = "%d" % (os.getpid() % 100000)
            prefix = "karl-bad-port-%s" % tag
            tap = "ky" + tag
            path = self.write("ok.yaml", CONFIG)
            p = run_karl_once(self.eal(prefix, tap) + ["--", "--config", path],
                              env={"KARL_METRICS_PORT": str(port)})
            self.assertOneLineError(p, str(port))
            self.assertFalse(link_exists(tap), "TAP interface left behind")
            self.assertFalse(os.path.exists("/var/run/dpdk/" + prefix))
        finally:
            s.close()

    def test_version_and_help(self):
        p = run_karl_once(["--version"])
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout, r"^karl-dp \d+\.\d+\.\d+ \(DPDK 22\.11")
        p = run_karl_once(["--", "--help"])
        self.assertEqual(p.returncode, 0)
        self.assertIn("--check-config", p.stdout)
        p = run_karl_once(["--", "--bogus"])
        self.assertOneLineError(p, "--bogus")


if __name__ == "__main__":
    unittest.main()
