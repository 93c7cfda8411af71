"""Shared pieces of the end-to-end tests: the real karl-dp process, network
namespaces with veth pairs and a bridge to Karl's TAP port, HTTP helpers.

Network rule: traffic only goes to loopback or to hosts in namespaces made here,
addressed from 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32. Everything made
is removed again; only processes started here are killed, by PID.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

from ng_client import BencodeError, NgClient, NgError, bdecode, netns_socket

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
        may have left: its DPDK runtime directory (this test's own file prefix), and the
        folder of its config and log."""
        if self.proc.poll() is None:
            self.stop(signal.SIGTERM, timeout=10)
        self.log.close()
        shutil.rmtree(self.runtime_dir(), ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)


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


# ---------------------------------------------------------------- SIP: Kamailio, SIPp, captures

KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
TCPDUMP = shutil.which("tcpdump") or "/usr/bin/tcpdump"


class Veth:
    """One more veth pair for a Netns (Netns makes the first one): the namespace end
    gets `addresses` and comes up; the root end (veth_root) is up, ready for bridging."""

    def __init__(self, ns, veth_root, veth_ns, addresses):
        self.veth_root, self.veth_ns = veth_root, veth_ns
        sh("ip", "link", "add", veth_root, "type", "veth", "peer", "name", veth_ns)
        sh("ip", "link", "set", veth_ns, "netns", ns.name)
        for a in addresses:
            ns.run("ip", "addr", "add", a, "dev", veth_ns)
        ns.run("ip", "link", "set", veth_ns, "up")
        sh("ip", "link", "set", veth_root, "up")

    def close(self):
        sh("ip", "link", "del", self.veth_root, check=False)


class Rtp:
    """RTP packets (RFC 3550 §5.1): build and parse fixed headers (no CSRC, no extension
    when built; both skipped when parsed)."""

    @staticmethod
    def build(seq, ts, ssrc, payload, pt=0, marker=False):
        return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF,
                           ts & 0xFFFFFFFF, ssrc) + payload

    @staticmethod
    def header_len(packet):
        """Fixed header + CSRCs + header extension; raises ValueError on a non-RTP."""
        if len(packet) < 12 or packet[0] >> 6 != 2:
            raise ValueError("not RTP: %r" % packet[:12])
        n = 12 + 4 * (packet[0] & 0x0F)
        if packet[0] & 0x10:
            if len(packet) < n + 4:
                raise ValueError("truncated RTP header extension")
            n += 4 + 4 * struct.unpack("!H", packet[n + 2:n + 4])[0]
        if n > len(packet):
            raise ValueError("RTP header longer than the packet")
        return n

    @staticmethod
    def parse(packet):
        """-> {"pt", "marker", "seq", "ts", "ssrc", "payload"}"""
        n = Rtp.header_len(packet)
        _, b1, seq, ts, ssrc = struct.unpack("!BBHII", packet[:12])
        return {"pt": b1 & 0x7F, "marker": bool(b1 & 0x80), "seq": seq, "ts": ts,
                "ssrc": ssrc, "payload": packet[n:]}


class Pcap:
    """Classic pcap files (the libpcap format SIPp's play_pcap_audio reads and tcpdump -w
    writes): write IPv4/UDP datagrams over Ethernet; read UDP datagrams back."""

    LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2 = 1, 113, 276

    @staticmethod
    def _ipv4_checksum(header):
        s = sum(struct.unpack("!10H", header))
        s = (s >> 16) + (s & 0xFFFF)
        s += s >> 16
        return ~s & 0xFFFF

    @staticmethod
    def write(path, datagrams):
        """datagrams: [(time_s, src_addr, src_port, dst_addr, dst_port, payload)], IPv4.
        UDP checksums are left 0 (SIPp recomputes them for the ports it sends from)."""
        with open(path, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535,
                                Pcap.LINKTYPE_ETHERNET))
            for ident, (t, src, sport, dst, dport, payload) in enumerate(datagrams):
                udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
                ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0, 64,
                                 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
                ip = ip[:10] + struct.pack("!H", Pcap._ipv4_checksum(ip)) + ip[12:]
                frame = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + \
                    b"\x08\x00" + ip + udp
                sec = int(t)
                f.write(struct.pack("<IIII", sec, int(round((t - sec) * 1e6)), len(frame),
                                    len(frame)))
                f.write(frame)

    @staticmethod
    def read_udp(path):
        """UDP datagrams of a pcap file, in order: [{"t", "src", "sport", "dst", "dport",
        "payload"}] (IPv4, reassembled from fragments, and IPv6 without extension
        headers; Ethernet, Linux cooked v1/v2 link types). Other protocols are skipped."""
        with open(path, "rb") as f:
            data = f.read()
        if len(data) < 24:
            return []  # the capture stopped before writing its header
        magic = data[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            endian = "<"
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            endian = ">"
        else:
            raise ValueError("%s is not a classic pcap file" % path)
        nanos = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
        out, off = [], 24
        fragments = {}  # (src, dst, id) -> {offset: bytes}; RFC 791 §3.2 reassembly
        while off + 16 <= len(data):
            sec, frac, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
            frame = data[off + 16:off + 16 + incl]
            off += 16 + incl
            if linktype == Pcap.LINKTYPE_ETHERNET:
                ethertype, l3 = struct.unpack("!H", frame[12:14])[0], 14
                if ethertype == 0x8100:  # one VLAN tag
                    ethertype, l3 = struct.unpack("!H", frame[16:18])[0], 18
            elif linktype == Pcap.LINKTYPE_LINUX_SLL:
                ethertype, l3 = struct.unpack("!H", frame[14:16])[0], 16
            elif linktype == Pcap.LINKTYPE_LINUX_SLL2:
                ethertype, l3 = struct.unpack("!H", frame[0:2])[0], 20
            else:
                raise ValueError("%s: link type %d not supported" % (path, linktype))
            ip = frame[l3:]
            if ethertype == 0x0800 and len(ip) >= 20 and ip[9] == 17:
                ihl = 4 * (ip[0] & 0x0F)
                total = struct.unpack("!H", ip[2:4])[0]
                src, dst = socket.inet_ntop(socket.AF_INET, ip[12:16]), \
                    socket.inet_ntop(socket.AF_INET, ip[16:20])
                udp = ip[ihl:total]
                frag = struct.unpack("!H", ip[6:8])[0]
                if frag & 0x3FFF:  # a fragment: more follow (MF) or not the first
                    key = (src, dst, ip[4:6])
                    parts = fragments.setdefault(key, {})
                    parts[8 * (frag & 0x1FFF)] = udp
                    if not frag & 0x2000:
                        parts["end"] = 8 * (frag & 0x1FFF) + len(udp)
                    whole, at = b"", 0
                    while at in parts:
                        whole += parts[at]
                        at += len(parts[at])
                    if parts.get("end") != at:
                        continue  # not all there yet
                    del fragments[key]
                    udp = whole
            elif ethertype == 0x86DD and len(ip) >= 40 and ip[6] == 17:
                src, dst = socket.inet_ntop(socket.AF_INET6, ip[8:24]), \
                    socket.inet_ntop(socket.AF_INET6, ip[24:40])
                udp = ip[40:40 + struct.unpack("!H", ip[4:6])[0]]
            else:
                continue
            if len(udp) < 8:
                continue
            sport, dport, ulen = struct.unpack("!HHH", udp[:6])
            out.append({"t": sec + frac / (1e9 if nanos else 1e6), "src": src, "sport": sport,
                        "dst": dst, "dport": dport, "payload": udp[8:ulen]})
        return out


class Tcpdump:
    """tcpdump capturing `iface` in namespace `ns` (None: this process' namespace) to a
    pcap file, started and stopped (SIGINT, by PID) by the test. stop() returns the
    UDP datagrams captured (Pcap.read_udp)."""

    def __init__(self, ns, iface, path, bpf="udp", timeout=10):
        self.path = path
        # -Z root: Debian's tcpdump would otherwise drop to user tcpdump before writing.
        cmd = [TCPDUMP, "-i", iface, "-n", "-s", "0", "-U", "-Z", "root", "-w", path, bpf]
        if ns is not None:
            cmd = ["ip", "netns", "exec", netns_of(ns), *cmd]
        self.log_path = path + ".log"
        self.log = open(self.log_path, "w")
        # ip netns exec execs in place: this PID is tcpdump's own.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + timeout
        while "listening on" not in self.output():
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("tcpdump on %s did not start: %s" % (iface, self.output()))
            time.sleep(0.05)

    def output(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
        return Pcap.read_udp(self.path) if os.path.exists(self.path) else []

    close = stop


class NgRelay:
    """Relays ng datagrams unchanged between a UDP socket at `listen` (host, port) in
    namespace `listen_ns` and a media proxy's ng socket at `target`, in namespace
    `target_ns` (None: this process' namespace), and records each request and reply.
    It lets a Kamailio in its own namespace reach an ng socket on another namespace's
    loopback, and shows exactly what Kamailio's rtpengine module sent."""

    def __init__(self, listen_ns, listen, target, target_ns=None):
        self.down = netns_socket(netns_of(listen_ns), socket.AF_INET, socket.SOCK_DGRAM)
        self.down.bind(listen)
        self.up = netns_socket(netns_of(target_ns), socket.AF_INET, socket.SOCK_DGRAM) \
            if target_ns is not None else socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.up.connect(target)
        self.lock = threading.Lock()
        self.records = []  # {"t", "kind": "request"|"reply", "cookie", "raw", "message"}
        self._clients = {}  # cookie -> address the request came from
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _record(self, kind, data):
        cookie, _, body = data.partition(b" ")
        try:
            message = bdecode(body)
        except (BencodeError, RecursionError):
            message = None
        with self.lock:
            self.records.append({"t": time.time(), "kind": kind, "cookie": cookie.decode(
                errors="replace"), "raw": data, "message": message})
        return cookie

    def _run(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self.down, self.up], [], [], 0.1)
            for s in ready:
                try:
                    data, addr = s.recvfrom(65535)
                    if s is self.down:
                        self._clients[self._record("request", data)] = addr
                        self.up.send(data)
                    else:
                        client = self._clients.get(self._record("reply", data))
                        if client is not None:
                            self.down.sendto(data, client)
                except OSError:
                    pass  # e.g. ECONNREFUSED from an ICMP error: the client retries

    def requests(self, command=None, call_id=None):
        """Decoded requests, one per cookie (Kamailio resends a cookie on timeout),
        optionally only those of a command / call-id."""
        seen, out = set(), []
        with self.lock:
            for r in self.records:
                m = r["message"]
                if r["kind"] != "request" or r["cookie"] in seen or not isinstance(m, dict):
                    continue
                seen.add(r["cookie"])
                if command is not None and m.get("command") != command:
                    continue
                if call_id is not None and m.get("call-id") != call_id:
                    continue
                out.append(dict(m, _cookie=r["cookie"]))
        return out

    def reply_to(self, cookie):
        with self.lock:
            for r in self.records:
                if r["kind"] == "reply" and r["cookie"] == cookie:
                    return r["message"]
        return None

    def close(self):
        self._stop.set()
        self.thread.join(timeout=5)
        self.down.close()
        self.up.close()


def _kill_tree(proc, timeout=10):
    """SIGTERM to proc (by PID), SIGKILL after `timeout`; then SIGKILL to any of the
    children it had (listed before, by PID) that outlived it."""
    children = []
    try:
        with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid)) as f:
            children = [int(p) for p in f.read().split()]
    except OSError:
        pass
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    deadline = time.time() + 5
    for pid in children:
        while time.time() < deadline and os.path.exists("/proc/%d" % pid):
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def udp_listening(ns, addr, port):
    """True when a UDP socket is bound to addr:port in namespace `ns`."""
    out = sh("ip", "netns", "exec", netns_of(ns), "ss", "-Hnlu", check=False).stdout
    return any(line.split()[3] == "%s:%d" % (addr, port)
               for line in out.splitlines() if len(line.split()) >= 4)


class Kamailio:
    """Kamailio (Debian's kamailio) in namespace `ns` with the config text given, in the
    foreground (-DD -E, logging to a temp file), its pid file and runtime directory in
    that temp directory. The config is checked with `kamailio -c` first: a config it
    rejects raises with kamailio's output. close() stops it by PID (and its children)."""

    def __init__(self, ns, cfg_text, shm_mb=32, pkg_mb=4):
        self.netns = netns_of(ns)
        self.dir = tempfile.mkdtemp(prefix="karl-kamailio-")
        self.cfg_path = os.path.join(self.dir, "kamailio.cfg")
        with open(self.cfg_path, "w") as f:
            f.write(cfg_text)
        base = [KAMAILIO, "-f", self.cfg_path, "-Y", self.dir, "-w", self.dir,
                "-P", os.path.join(self.dir, "kamailio.pid"), "-m", str(shm_mb),
                "-M", str(pkg_mb)]
        check = sh("ip", "netns", "exec", self.netns, *base, "-c", check=False, timeout=30)
        if check.returncode != 0:
            raise RuntimeError("kamailio -c rejects %s (%d):\n%s" %
                               (self.cfg_path, check.returncode, check.stdout))
        self.log_path = os.path.join(self.dir, "kamailio.log")
        self.log = open(self.log_path, "w")
        # ip netns exec execs in place: this PID is kamailio's main process.
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.netns, *base, "-DD", "-E"],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def output(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def wait_listening(self, addresses, port=5060, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("kamailio exited with %d:\n%s" %
                                   (self.proc.returncode, self.output()[-5000:]))
            if all(udp_listening(self.netns, a, port) for a in addresses):
                return
            time.sleep(0.1)
        raise RuntimeError("kamailio not listening on %s:%d after %ds:\n%s" %
                           (addresses, port, timeout, self.output()[-5000:]))

    def close(self):
        _kill_tree(self.proc)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Sipp:
    """One SIPp (Debian's sip-tester) run of one call (-m 1) in namespace `ns`: the
    scenario and `files` (e.g. the pcaps it plays, by name) are copied into a temp dir
    that SIPp runs in; SIP messages are logged (-trace_msg). SIPp's own -timeout bounds
    the run; result() also kills it by PID if it overstays."""

    def __init__(self, ns, scenario, args, files=(), timeout=30):
        self.netns = netns_of(ns)
        self.dir = tempfile.mkdtemp(prefix="karl-sipp-")
        for f in (scenario, *files):
            shutil.copy(f, self.dir)
        self.scenario = os.path.join(self.dir, os.path.basename(scenario))
        self.messages_path = os.path.join(self.dir, "messages.log")
        self.errors_path = os.path.join(self.dir, "errors.log")
        self.log_path = os.path.join(self.dir, "sipp.out")
        self.timeout = timeout
        self.cmd = ["ip", "netns", "exec", self.netns, SIPP, "-sf", self.scenario,
                    *[str(a) for a in args], "-m", "1", "-nostdin",
                    "-trace_msg", "-message_file", self.messages_path,
                    "-trace_err", "-error_file", self.errors_path,
                    "-timeout", "%ds" % timeout, "-timeout_error"]
        self.log = open(self.log_path, "w")
        # ip netns exec execs in place: this PID is SIPp's own.
        self.proc = subprocess.Popen(self.cmd, cwd=self.dir, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_listening(self, addr, port=5060, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sipp exited with %d:\n%s" % (self.proc.returncode,
                                                                 self.report()))
            if udp_listening(self.netns, addr, port):
                return
            time.sleep(0.05)
        raise RuntimeError("sipp not listening on %s:%d after %ds" % (addr, port, timeout))

    def result(self, timeout=None):
        """Waits for the end of the call (at most `timeout` s, default SIPp's own timeout
        and 10 s more; then kills it by PID); returns SIPp's exit code (0: passed)."""
        try:
            return self.proc.wait(timeout=self.timeout + 10 if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return self.proc.returncode

    def report(self):
        """SIPp's output, error log and message log, for a failure message."""
        out = []
        for name, path in (("output", self.log_path), ("errors", self.errors_path),
                           ("messages", self.messages_path)):
            try:
                with open(path, errors="replace") as f:
                    text = f.read()
            except OSError:
                continue
            # SIPp's screens are long and repeat: keep their ends.
            out.append("--- sipp %s:\n%s" % (name, text[-6000:]))
        return "\n".join(out)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class SrtpContext:
    """SRTP (RFC 3711) for one stream direction with AES_CM_128_HMAC_SHA1_80/_32 keyed by
    an SDES inline key (RFC 4568 §6.1; key derivation rate 0, no MKI), in Python (the
    cryptography package's AES): for the tests to make SRTP that SIPp plays from a pcap
    and to decrypt what a media proxy sends. One context per direction and SSRC."""

    TAG_OCTETS = {"AES_CM_128_HMAC_SHA1_80": 10, "AES_CM_128_HMAC_SHA1_32": 4}

    def __init__(self, suite, inline):
        if suite not in self.TAG_OCTETS:
            raise ValueError("suite %s not supported here" % suite)
        self.tag_octets = self.TAG_OCTETS[suite]
        b64 = inline[len("inline:"):].split("|")[0] if inline.startswith("inline:") else inline
        material = base64.b64decode(b64 + "=" * (-len(b64) % 4))
        if len(material) != 30:
            raise ValueError("%s needs 30 octets of key||salt, got %d" % (suite, len(material)))
        master_key, master_salt = material[:16], material[16:]
        # RFC 3711 §4.3.1/§4.3.3: x = (label || r) XOR master_salt, r = 0; AES-CM PRF.
        self.k_e = self._prf(master_key, master_salt, 0, 16)
        self.k_a = self._prf(master_key, master_salt, 1, 20)
        self.k_s = self._prf(master_key, master_salt, 2, 14)
        self.roc, self.s_l = 0, None

    @staticmethod
    def _aes_ctr(key, iv, data):
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
        return enc.update(data) + enc.finalize()

    @classmethod
    def _prf(cls, key, salt, label, n):
        x = int.from_bytes(salt, "big") ^ (label << 48)
        return cls._aes_ctr(key, (x << 16).to_bytes(16, "big"), b"\0" * n)

    def _crypt(self, ssrc, index, data):
        # RFC 3711 §4.1.1: IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16)
        iv = (int.from_bytes(self.k_s, "big") << 16) ^ (ssrc << 64) ^ (index << 16)
        return self._aes_ctr(self.k_e, iv.to_bytes(16, "big"), data)

    def _tag(self, authenticated, roc):
        return hmac.new(self.k_a, authenticated + struct.pack("!I", roc),
                        hashlib.sha1).digest()[:self.tag_octets]

    def protect(self, packet):
        """RTP -> SRTP, for a sender sending in sequence order."""
        n = Rtp.header_len(packet)
        seq, ssrc = struct.unpack("!H", packet[2:4])[0], struct.unpack("!I", packet[8:12])[0]
        if self.s_l is not None and seq < self.s_l and self.s_l - seq > 0x8000:
            self.roc = (self.roc + 1) & 0xFFFFFFFF  # the sequence number wrapped
        self.s_l = seq
        out = packet[:n] + self._crypt(ssrc, (self.roc << 16) | seq, packet[n:])
        return out + self._tag(out, self.roc)

    def unprotect(self, packet):
        """SRTP -> RTP; raises ValueError when authentication fails."""
        if len(packet) < 12 + self.tag_octets:
            raise ValueError("SRTP packet too short")
        body, tag = packet[:-self.tag_octets], packet[-self.tag_octets:]
        n = Rtp.header_len(body)
        seq, ssrc = struct.unpack("!H", body[2:4])[0], struct.unpack("!I", body[8:12])[0]
        # RFC 3711 §3.3.1 / Appendix A: the packet's ROC guess v
        if self.s_l is None:
            v = self.roc
        elif self.s_l < 0x8000:
            v = (self.roc - 1) if seq - self.s_l > 0x8000 else self.roc
        else:
            v = (self.roc + 1) if self.s_l - 0x8000 > seq else self.roc
        v &= 0xFFFFFFFF
        if not hmac.compare_digest(self._tag(body, v), tag):
            raise ValueError("SRTP authentication failed (seq %d)" % seq)
        plain = body[:n] + self._crypt(ssrc, (v << 16) | seq, body[n:])
        if self.s_l is None or v == ((self.roc + 1) & 0xFFFFFFFF) or \
                (v == self.roc and seq > self.s_l):
            self.roc, self.s_l = v, seq
        return plain
