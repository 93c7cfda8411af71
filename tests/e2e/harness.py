"""Shared pieces of the end-to-end tests: the real karl-dp process, network
namespaces with veth pairs and a bridge to Karl's TAP port, HTTP helpers.

Network rule: traffic only goes to loopback or to hosts in namespaces made here,
addressed from 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32. Everything made
is removed again; only processes started here are killed, by PID.
"""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from ng_client import NgClient, NgError

BUILD_DIR = os.environ.get("KARL_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
KARL_DP = os.path.join(BUILD_DIR, "controlplane", "karl-dp")
RUNTIME_ROOT = "/var/run/dpdk"


def sh(*cmd, check=True, **kw):
    """Runs a command (list of args); raises with its output when it fails."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if check and p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), p.returncode, p.stdout))
    return p


def free_tcp_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def link_exists(name):
    return sh("ip", "link", "show", name, check=False).returncode == 0


def http_get(url, timeout=3):
    """Returns (status, headers, body text); HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def parse_metrics(text):
    """Prometheus text format -> {'name{labels}': float}; raises on a malformed line."""
    out = {}
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = line_re.match(line)
        if not m:
            raise ValueError("malformed metrics line: %r" % line)
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


class Netns:
    """A network namespace with one veth; its root-side end is returned for bridging."""

    def __init__(self, name, veth_root, veth_ns, addresses):
        self.name, self.veth_root, self.veth_ns = name, veth_root, veth_ns
        sh("ip", "netns", "add", name)
        sh("ip", "link", "add", veth_root, "type", "veth", "peer", "name", veth_ns)
        sh("ip", "link", "set", veth_ns, "netns", name)
        sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        for a in addresses:
            sh("ip", "netns", "exec", name, "ip", "addr", "add", a, "dev", veth_ns)
        sh("ip", "netns", "exec", name, "ip", "link", "set", veth_ns, "up")
        sh("ip", "link", "set", veth_root, "up")

    def run(self, *cmd, check=True, timeout=30):
        return sh("ip", "netns", "exec", self.name, *cmd, check=check, timeout=timeout)

    def close(self):
        sh("ip", "link", "del", self.veth_root, check=False)
        sh("ip", "netns", "del", self.name, check=False)


class Bridge:
    def __init__(self, name):
        self.name = name
        sh("ip", "link", "add", name, "type", "bridge")
        sh("ip", "link", "set", name, "up")

    def add(self, iface):
        sh("ip", "link", "set", iface, "master", self.name)
        sh("ip", "link", "set", iface, "up")

    def add_tap(self, iface, kernel_mac="02:00:00:00:ee:01"):
        """Bridges Karl's TAP port. net_tap gives the kernel side of the TAP the same
        MAC as the DPDK port; a bridge would take frames for that MAC as its own and
        never forward them to Karl, so the kernel side gets another MAC first."""
        sh("ip", "link", "set", iface, "address", kernel_mac)
        self.add(iface)

    def close(self):
        sh("ip", "link", "del", self.name, check=False)


class KarlProcess:
    """The real karl-dp binary with EAL args for a TAP port and a config file."""

    def __init__(self, config_text, tap_iface, metrics_port, env=None, extra_eal=(), lcores="0-1"):
        self.dir = tempfile.mkdtemp(prefix="karl-e2e-")
        self.config_path = os.path.join(self.dir, "karl.yaml")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.config_sha256 = hashlib.sha256(config_text.encode()).hexdigest()
        self.tap_iface = tap_iface
        self.metrics_port = metrics_port
        self.file_prefix = "karl-e2e-%d-%d" % (os.getpid(), metrics_port)
        self.log_path = os.path.join(self.dir, "karl.log")
        e = dict(os.environ)
        e["KARL_METRICS_PORT"] = str(metrics_port)
        e.update(env or {})
        self.cmd = [KARL_DP, "-l", lcores, "--no-huge", "-m", "512", "--no-pci",
                    "--file-prefix", self.file_prefix,
                    "--vdev", "net_tap0,iface=%s" % tap_iface, *extra_eal,
                    "--", "--config", self.config_path]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, env=e)

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.metrics_port

    def output(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("karl-dp exited with %d:\n%s" % (self.proc.returncode, self.output()))
            try:
                status, _, _ = http_get(self.base + "/ready", timeout=1)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("karl-dp not ready after %ds:\n%s" % (timeout, self.output()))

    def get_json(self, path):
        status, _, body = http_get(self.base + path)
        return status, json.loads(body)

    def metrics(self):
        status, headers, body = http_get(self.base + "/metrics")
        assert status == 200, body
        return parse_metrics(body), headers

    def runtime_dir(self):
        return os.path.join(RUNTIME_ROOT, self.file_prefix)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signals the process (by PID) and returns (exit code, seconds it took)."""
        if self.proc.poll() is not None:
            return self.proc.returncode, 0.0
        t0 = time.time()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        return rc, time.time() - t0

    def close(self):
        """Stops the process (SIGTERM, then SIGKILL after 10 s) and removes what it
        may have left: its DPDK runtime directory (this test's own file prefix)."""
        if self.proc.poll() is None:
            self.stop(signal.SIGTERM, timeout=10)
        self.log.close()
        shutil.rmtree(self.runtime_dir(), ignore_errors=True)


def run_karl_once(args, env=None, timeout=30):
    """Runs karl-dp to completion (for bad-input cases); returns CompletedProcess."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([KARL_DP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=e, timeout=timeout)


def http_json(method, url, body=None, token=None, timeout=5):
    """Returns (status, parsed JSON body or None, headers)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read().decode()
            return r.status, (json.loads(text) if text else None), dict(r.headers)
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = {"raw": text}
        return e.code, parsed, dict(e.headers)


PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "udp_peer.py")


def peer(ns, *args, timeout=60):
    """Runs udp_peer.py in a namespace to completion; returns its stdout."""
    return ns.run("python3", PEER, *[str(a) for a in args], timeout=timeout).stdout


def peer_bg(ns, *args):
    """Starts udp_peer.py in a namespace in the background; returns the Popen."""
    return subprocess.Popen(["ip", "netns", "exec", ns.name, "python3", PEER, *[str(a) for a in args]],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


# ---------------------------------------------------------------- SRTP peers, rtpengine

SRTP_PEER = os.path.join(BUILD_DIR, "tests", "e2e", "karl-srtp-peer")
RTPENGINE = shutil.which("rtpengine") or "/usr/bin/rtpengine"

SRTP_SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AES_256_CM_HMAC_SHA1_80",
               "AES_256_CM_HMAC_SHA1_32", "AEAD_AES_128_GCM", "AEAD_AES_256_GCM")


def endpoint(addr, port):
    """ADDR:PORT as karl-srtp-peer takes it ([v6]:port for IPv6)."""
    return "[%s]:%d" % (addr, port) if ":" in addr else "%s:%d" % (addr, port)


def gen_key(suite):
    """A fresh inline: key for `suite` from karl-srtp-peer --gen-key."""
    return sh(SRTP_PEER, "--gen-key", suite).stdout.strip()


def srtp_peer_bg(ns, *args):
    """Starts karl-srtp-peer in a namespace; finish it with srtp_peer_result()."""
    return subprocess.Popen(["ip", "netns", "exec", ns.name, SRTP_PEER, *[str(a) for a in args]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def srtp_peer_result(proc, timeout=60):
    """Waits for a karl-srtp-peer (its own --timeout bounds it; this kills it by PID if
    it overstays) and returns its JSON line as a dict."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError("karl-srtp-peer overstayed %ds: %s %s" % (timeout, out, err))
    if proc.returncode != 0:
        raise RuntimeError("karl-srtp-peer failed (%d): %s %s" % (proc.returncode, out, err))
    return json.loads(out.strip().splitlines()[-1])


def srtp_peer(ns, *args, timeout=60):
    """Runs karl-srtp-peer in a namespace to completion; returns its JSON result."""
    return srtp_peer_result(srtp_peer_bg(ns, *args), timeout)


def netns_of(ns):
    return ns if isinstance(ns, str) else ns.name


class Rtpengine:
    """rtpengine (Debian's rtpengine-daemon binary) in a test namespace, userspace only
    (--table=-1: no kernel module, no iptables), in the foreground, logging to a temp
    file, with --config-file=none so /etc/rtpengine is not read. Its ng socket listens on
    127.0.0.1:ng_port inside the namespace; ng() returns a client whose socket is made
    in that namespace. interfaces: rtpengine --interface values ("[NAME/]ADDR"); media
    ports come from port_min..port_max."""

    def __init__(self, ns, interfaces, ng_port=2223, port_min=35000, port_max=35999,
                 extra_args=()):
        self.netns = netns_of(ns)
        self.ng_port = ng_port
        self.dir = tempfile.mkdtemp(prefix="karl-rtpengine-")
        self.log_path = os.path.join(self.dir, "rtpengine.log")
        self.cmd = ["ip", "netns", "exec", self.netns, RTPENGINE,
                    "--config-file=none", "--foreground", "--log-stderr", "--table=-1",
                    *["--interface=%s" % i for i in interfaces],
                    "--listen-ng=127.0.0.1:%d" % ng_port,
                    "--port-min=%d" % port_min, "--port-max=%d" % port_max,
                    # One media thread: with more, rtpengine may forward packets of
                    # one stream out of order, which the tests would count.
                    "--num-threads=1", "--delete-delay=0", "--timeout=60",
                    "--log-level=6", *extra_args]
        self.log = open(self.log_path, "w")
        # ip netns exec execs the command in place: this PID is rtpengine's own.
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self._ng = None

    def output(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def ng(self):
        if self._ng is None:
            self._ng = NgClient("127.0.0.1", self.ng_port, netns=self.netns, timeout=1.0,
                                retries=2)
        return self._ng

    def wait_ready(self, timeout=20):
        """Until ping answers pong (bounded by `timeout` seconds)."""
        deadline = time.time() + timeout
        with NgClient("127.0.0.1", self.ng_port, netns=self.netns, timeout=0.3,
                      retries=0) as probe:
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError("rtpengine exited with %d:\n%s" %
                                       (self.proc.returncode, self.output()))
                try:
                    if probe.ping():
                        return
                except (NgError, OSError):
                    pass
                time.sleep(0.1)
        raise RuntimeError("rtpengine did not answer ping within %ds:\n%s" %
                           (timeout, self.output()))

    def request(self, message):
        return self.ng().request(message)

    def close(self):
        """SIGTERM by PID, SIGKILL after 10 s; removes its temp directory."""
        if self._ng is not None:
            self._ng.close()
            self._ng = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def make_sdp(addr, port, proto="RTP/AVP", cryptos=(), session_id=1):
    """A one-stream audio SDP (PCMU) at addr:port; cryptos: (tag, suite, key) for
    a=crypto lines (RFC 4568 §9.1)."""
    ip = "IP6" if ":" in addr else "IP4"
    lines = ["v=0", "o=- %d 1 IN %s %s" % (session_id, ip, addr), "s=karl-e2e",
             "c=IN %s %s" % (ip, addr), "t=0 0", "m=audio %d %s 0" % (port, proto),
             "a=rtpmap:0 PCMU/8000", "a=sendrecv"]
    lines += ["a=crypto:%d %s %s" % c for c in cryptos]
    return "\r\n".join(lines) + "\r\n"


def parse_sdp(sdp):
    """The first audio stream of an SDP: {"address", "port", "proto", "rtcp_port",
    "cryptos": [(tag, suite, key params)]}. Media-level c= overrides session-level."""
    out = {"address": None, "port": None, "proto": None, "rtcp_port": None, "cryptos": []}
    in_media = False
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            if in_media:
                break  # only the first stream
            _, port, proto = line[2:].split()[:3]
            out["port"], out["proto"], in_media = int(port), proto, True
        elif line.startswith("c="):
            addr = line.split()[2]
            if in_media or out["address"] is None:
                out["address"] = addr
        elif in_media and line.startswith("a=rtcp:"):
            out["rtcp_port"] = int(line[len("a=rtcp:"):].split()[0])
        elif in_media and line.startswith("a=crypto:"):
            tag, suite, params = line[len("a=crypto:"):].split()[:3]
            out["cryptos"].append((int(tag), suite, params))
    if out["rtcp_port"] is None and out["port"] is not None:
        out["rtcp_port"] = out["port"] + 1
    return out


def wait_ipv6_ready(ns, timeout=10):
    """Until no IPv6 address in namespace `ns` is tentative (duplicate address
    detection done, RFC 4862 §5.4), so that binding to it works; bounded by timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not ns.run("ip", "-6", "addr", "show", "tentative").stdout.strip():
            return
        time.sleep(0.1)
    raise RuntimeError("IPv6 addresses in %s still tentative after %ds:\n%s" %
                       (ns.name, timeout, ns.run("ip", "-6", "addr").stdout))
