"""karl-dp boots, serves /ready and stops cleanly on every kind of virtual port the
issue names besides net_tap (tested in test_foundation): net_ring, net_null,
net_pcap and net_af_packet on a veth whose peer is in a test namespace."""
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import KARL_DP, Netns, free_tcp_port, http_get

CONFIG = """\
ports:
  - name: p0
    device: %s
    addresses: ["203.0.113.1/24"]
"""


class VdevBootTest(unittest.TestCase):
    def boot(self, device, vdev_args):
        tmp = tempfile.mkdtemp(prefix="karl-vdev-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cfg = os.path.join(tmp, "karl.yaml")
        with open(cfg, "w") as f:
            f.write(CONFIG % device)
        port = free_tcp_port()
        prefix = "karl-vdev-%d-%d" % (os.getpid(), port)
        env = dict(os.environ, KARL_METRICS_PORT=str(port))
        log = open(os.path.join(tmp, "log"), "w+")
        proc = subprocess.Popen([KARL_DP, "-l", "0-1", "--no-huge", "-m", "512", "--no-pci",
                                 "--file-prefix", prefix, "--vdev", vdev_args, "--",
                                 "--config", cfg], stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline, ready = time.time() + 20, False
            while time.time() < deadline and proc.poll() is None:
                try:
                    if http_get("http://127.0.0.1:%d/ready" % port, timeout=1)[0] == 200:
                        ready = True
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            log.seek(0)
            self.assertTrue(ready, "not ready on %s:\n%s" % (vdev_args, log.read()))
            status, _, body = http_get("http://127.0.0.1:%d/status" % port)
            self.assertEqual(status, 200)
            self.assertIn('"device":"%s"' % device, body.replace(" ", ""))
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=10), 0)
            self.assertFalse(os.path.exists("/var/run/dpdk/" + prefix))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()

    def test_net_ring(self):
        self.boot("net_ring0", "net_ring0")

    def test_net_null(self):
        self.boot("net_null0", "net_null0")

    def test_net_pcap(self):
        tmp = tempfile.mkdtemp(prefix="karl-pcap-")
        self.addCleanup(shutil.rmtree, tmp, True)
        rx = os.path.join(tmp, "rx.pcap")
        # An empty pcap file (global header only, Ethernet link type).
        with open(rx, "wb") as f:
            f.write(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
        self.boot("net_pcap0", "net_pcap0,rx_pcap=%s,tx_pcap=%s" % (rx, os.path.join(tmp, "tx.pcap")))

    def test_net_af_packet_on_veth(self):
        tag = "%d" % (os.getpid() % 100000)
        ns = Netns("karl-afp-" + tag, "ka" + tag + "a", "ka" + tag + "b", ["203.0.113.2/24"])
        try:
            self.boot("net_af_packet0", "net_af_packet0,iface=%s" % ns.veth_root)
        finally:
            ns.close()


if __name__ == "__main__":
    unittest.main()
