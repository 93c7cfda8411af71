#!/usr/bin/env python3
"""ng call setup rate: Karl beside rtpengine, measured the same way in the same run.

Starts rtpengine (Debian's rtpengine-daemon binary, userspace only: --table=-1, media
sockets on 127.0.0.1, ng on a free loopback UDP port, --num-threads=2 = its default on
this 2-core machine, --log-level=6 = its default) and karl-dp (one net_null port, so no
TAP or kernel interface is made; ng on a free loopback UDP port; RTP ports 30000-39999),
checks that each answers ng ping, runs build/tests/bench/karl-ng-bench against both in
alternating rounds for every --window, prints sessions/s and the ratio Karl/rtpengine,
and stops both by PID. By default (--mode pinned) each control plane gets the same CPU:
rtpengine and the client run on CPU 0 (taskset), karl-dp's control-plane thread is its
main lcore, CPU 0, and its worker polls CPU 1, which neither rtpengine nor the client
use. --mode paused leaves everything unpinned and SIGSTOPs karl-dp during rtpengine's
rounds (rtpengine then has both cores, Karl's control plane one shared with the
client); --mode concurrent leaves both running unpinned.

  scripts/bench-ng.py                           # both, windows 1 and 32, pinned
  scripts/bench-ng.py --only rtpengine          # until karl-dp answers offers
  scripts/bench-ng.py --calls 5000 --rounds 7 --windows 1,32,128 --json out.json

Exit status: 0 when every run completed without an error; 1 when a target did not
answer ping, a request failed or was not answered; 2 on bad usage.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

KARL_CONFIG = """\
ports:
  - name: bench0
    device: net_null0
    addresses: ["203.0.113.1/24", "2001:db8:b::1/64"]
rtp:
  port_min: 30000
  port_max: 39999
ops:
  port: {ops_port}
api:
  enabled: false
ng:
  enabled: true
  listen: "127.0.0.1:{ng_port}"
log:
  level: {log_level}
"""


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ng_ping(port, timeout=0.3):
    """True when 127.0.0.1:port answers an ng ping with pong."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        cookie = b"bench-ng-ping-%d" % os.getpid()
        s.sendto(cookie + b" d7:command4:pinge", ("127.0.0.1", port))
        deadline = time.time() + timeout
        while time.time() < deadline:
            data, _ = s.recvfrom(4096)
            if data.startswith(cookie + b" "):
                return b"4:pong" in data
    except OSError:
        return False
    finally:
        s.close()
    return False


class Process:
    """A started server: its Popen (the PID is the server's own), log and temp dir."""

    def __init__(self, name, cmd, env=None):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="karl-bench-ng-%s-" % name)
        self.log_path = os.path.join(self.dir, "%s.log" % name)
        self.log = open(self.log_path, "w")
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def output(self, last=40):
        self.log.flush()
        with open(self.log_path) as f:
            return "".join(f.readlines()[-last:])

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """SIGTERM by PID, SIGKILL after 10 s; removes the temp dir."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_ping(proc, port, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not proc.alive():
            raise RuntimeError("%s exited with %d:\n%s" % (proc.name, proc.proc.returncode,
                                                          proc.output()))
        if ng_ping(port):
            return
        time.sleep(0.1)
    raise RuntimeError("%s does not answer ng ping on 127.0.0.1:%d after %d s:\n%s" %
                       (proc.name, port, seconds, proc.output()))


def pin_prefix(args):
    """--mode pinned: rtpengine and the client run on CPU 0 only, the CPU of karl-dp's
    control-plane thread (its main lcore); Karl's worker polls CPU 1."""
    return ["taskset", "-c", "0"] if args.mode == "pinned" else []


def start_rtpengine(args):
    port = free_port(socket.SOCK_DGRAM)
    cmd = pin_prefix(args) + [args.rtpengine, "--config-file=none", "--foreground", "--log-stderr", "--table=-1",
           "--interface=127.0.0.1", "--listen-ng=127.0.0.1:%d" % port,
           "--port-min=40000", "--port-max=49999", "--delete-delay=0", "--timeout=60",
           "--num-threads=%d" % args.rtpengine_threads,
           "--log-level=%d" % args.rtpengine_log_level]
    p = Process("rtpengine", cmd)
    p.port = port
    try:
        wait_ping(p, port, 20)
    except Exception:
        p.stop()
        raise
    return p


def start_karl(args):
    karl_dp = args.karl_dp or os.path.join(args.build_dir, "controlplane", "karl-dp")
    if not os.access(karl_dp, os.X_OK):
        raise RuntimeError("%s is not built (ninja -C %s)" % (karl_dp, args.build_dir))
    port = free_port(socket.SOCK_DGRAM)
    ops_port = free_port(socket.SOCK_STREAM)
    tmp = tempfile.mkdtemp(prefix="karl-bench-ng-cfg-")
    config = os.path.join(tmp, "karl.yaml")
    with open(config, "w") as f:
        f.write(KARL_CONFIG.format(ops_port=ops_port, ng_port=port, log_level=args.karl_log_level))
    prefix = "karl-bench-ng-%d" % os.getpid()
    env = dict(os.environ, KARL_METRICS_PORT=str(ops_port))
    cmd = [karl_dp, "-l", args.karl_lcores, "--no-huge", "-m", "512", "--no-pci",
           "--file-prefix", prefix, "--vdev", "net_null0,no-rx=1", "--", "--config", config]
    p = Process("karl-dp", cmd, env=env)
    p.port, p.config_dir, p.runtime_dir = port, tmp, os.path.join("/var/run/dpdk", prefix)
    try:
        deadline = time.time() + 30
        while True:
            if not p.alive():
                raise RuntimeError("karl-dp exited with %d:\n%s" % (p.proc.returncode, p.output()))
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/ready" % ops_port, timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("karl-dp not ready after 30 s:\n%s" % p.output())
            time.sleep(0.1)
        wait_ping(p, port, 5)
    except Exception:
        stop_karl(p)
        raise
    return p


def stop_karl(p):
    if p.alive():
        os.kill(p.proc.pid, signal.SIGCONT)  # in case it was left paused
    p.stop()
    shutil.rmtree(p.config_dir, ignore_errors=True)
    shutil.rmtree(p.runtime_dir, ignore_errors=True)


def run_bench(bench, args, targets, window, rounds, warmup=None):
    """One karl-ng-bench run over `targets` (alternating rounds); its JSON result. Raises
    RuntimeError when it printed nothing (it could not start or a target did not answer
    ping); a run with errors returns with "ok": false."""
    cmd = pin_prefix(args) + [bench, "--calls", str(args.calls), "--window", str(window), "--rounds", str(rounds),
           "--json"]
    if warmup is not None:
        cmd += ["--warmup", str(warmup)]
    for t in targets:
        cmd += ["--target", t]
    # Bounded: a round gives up after 120 s, and so does this.
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=120 * (rounds + 1) * len(targets) + 60)
    sys.stderr.write(p.stderr)
    if not p.stdout.strip():
        raise RuntimeError("karl-ng-bench (window %d) failed with %d" % (window, p.returncode))
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["ok"] = res["ok"] and p.returncode == 0
    return res


def median(values):
    v = sorted(values)
    n = len(v)
    return 0.0 if n == 0 else (v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2)


def measure_paused(bench, args, targets, window, karl_pid):
    """Rounds alternate between rtpengine and Karl as in karl-ng-bench, one karl-ng-bench
    run per round, and karl-dp is stopped (SIGSTOP) while rtpengine is measured: its
    worker polls a core at 100 %, which on this 2-core machine would otherwise leave
    rtpengine, its two threads and the client one core. rtpengine sleeps in epoll when
    idle, so it costs Karl's rounds nothing. Latency percentiles are the medians of the
    per-round ones."""
    per = {t.split("=")[0]: [] for t in targets}
    ratios = []
    for r in range(args.rounds):
        order = targets if r % 2 == 0 else list(reversed(targets))
        rate = {}
        for t in order:
            name = t.split("=")[0]
            paused = name == "rtpengine"
            if paused:
                os.kill(karl_pid, signal.SIGSTOP)
            try:
                res = run_bench(bench, args, [t], window, 1,
                                warmup=min(args.calls, 200) if r < 2 else 0)
            finally:
                if paused:
                    os.kill(karl_pid, signal.SIGCONT)
            one = res["targets"][0]
            one["ok"] = res["ok"]
            per[name].append(one)
            rate[name] = one["sessions_per_s"]
        ratios.append(rate["karl"] / rate["rtpengine"])
    out = {"calls": args.calls, "window": window, "rounds": args.rounds, "mode": "paused",
           "ok": all(o["ok"] for runs in per.values() for o in runs), "targets": []}
    for t in targets:
        name = t.split("=")[0]
        runs = per[name]
        out["targets"].append({
            "name": name, "address": t.split("=", 1)[1],
            "sessions_per_s": median([o["sessions_per_s"] for o in runs]),
            "rounds_sessions_per_s": [o["sessions_per_s"] for o in runs],
            "ratio_to_first": median(ratios) if name == "karl" else 1.0,
            "latency_us": {c: {q: median([o["latency_us"][c][q] for o in runs])
                               for q in ("p50", "p99")} for c in ("offer", "answer", "delete")},
            "errors": sum(o["errors"] for o in runs),
            "retransmits": sum(o["retransmits"] for o in runs)})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.environ.get("KARL_BUILD_DIR",
                                                          os.path.join(ROOT, "build")))
    ap.add_argument("--only", choices=("rtpengine", "karl"), default=None,
                    help="measure one of the two (default: both, rtpengine the reference)")
    ap.add_argument("--calls", type=int, default=3000, help="calls per round (default 3000)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per target (default 5)")
    ap.add_argument("--windows", default="1,32", help="calls in flight, a list (default 1,32)")
    ap.add_argument("--rtpengine", default=shutil.which("rtpengine") or "/usr/bin/rtpengine")
    ap.add_argument("--rtpengine-threads", type=int, default=2,
                    help="rtpengine --num-threads (default 2: its default, one per core here)")
    ap.add_argument("--rtpengine-log-level", type=int, default=6,
                    help="rtpengine --log-level (default 6, rtpengine's own default)")
    ap.add_argument("--karl-dp", default=None,
                    help="karl-dp binary (default: BUILD_DIR/controlplane/karl-dp)")
    ap.add_argument("--bench", default=None,
                    help="karl-ng-bench binary (default: BUILD_DIR/tests/bench/karl-ng-bench)")
    ap.add_argument("--karl-lcores", default="0-1", help="karl-dp EAL -l (default 0-1)")
    ap.add_argument("--karl-log-level", type=int, default=3,
                    help="karl-dp log.level (default 3, Karl's own default)")
    ap.add_argument("--mode", choices=("pinned", "paused", "concurrent"), default="pinned",
                    help="pinned (default): the same CPU for each control plane: rtpengine and "
                    "the client on CPU 0, karl-dp -l 0-1 (control plane on CPU 0, its worker "
                    "on CPU 1), one karl-ng-bench run alternating rounds; paused: unpinned, "
                    "karl-dp SIGSTOPped while rtpengine is measured (rtpengine gets both "
                    "cores, Karl's control plane shares one with the client); concurrent: "
                    "unpinned, both run throughout")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args()
    try:
        windows = [int(w) for w in args.windows.split(",")]
    except ValueError:
        ap.error("--windows: a comma-separated list of integers")
    bench = args.bench or os.path.join(args.build_dir, "tests", "bench", "karl-ng-bench")
    if not os.access(bench, os.X_OK):
        print("bench-ng: %s is not built (ninja -C %s tests/bench/karl-ng-bench)" %
              (bench, args.build_dir), file=sys.stderr)
        return 1

    started = []
    results = []
    rc = 0
    try:
        targets = []
        if args.only in (None, "rtpengine"):
            r = start_rtpengine(args)
            started.append((r, Process.stop))
            targets.append("rtpengine=127.0.0.1:%d" % r.port)
        if args.only in (None, "karl"):
            k = start_karl(args)
            started.append((k, stop_karl))
            targets.append("karl=127.0.0.1:%d" % k.port)
        print("bench-ng: rtpengine --num-threads=%d --log-level=%d; karl-dp -l %s log.level %d; "
              "%d calls x %d rounds per window; mode %s" %
              (args.rtpengine_threads, args.rtpengine_log_level, args.karl_lcores,
               args.karl_log_level, args.calls, args.rounds, args.mode), flush=True)
        karl_proc = next((p for p, _ in started if p.name == "karl-dp"), None)
        for w in windows:
            if args.mode == "paused" and karl_proc is not None and len(targets) == 2:
                res = measure_paused(bench, args, targets, w, karl_proc.proc.pid)
            else:
                res = run_bench(bench, args, targets, w, args.rounds)
            results.append(res)
            if not res["ok"]:
                rc = 1
            print("window %d:" % w)
            for t in res["targets"]:
                lat = t["latency_us"]
                print("  %-10s %9.0f sessions/s   p50/p99 us: offer %.0f/%.0f answer %.0f/%.0f "
                      "delete %.0f/%.0f   errors %d retransmits %d" %
                      (t["name"], t["sessions_per_s"], lat["offer"]["p50"], lat["offer"]["p99"],
                       lat["answer"]["p50"], lat["answer"]["p99"], lat["delete"]["p50"],
                       lat["delete"]["p99"], t["errors"], t["retransmits"]), flush=True)
            if len(res["targets"]) == 2:
                print("  Karl/rtpengine: %.2fx (median of per-round ratios; target >= 5x)" %
                      res["targets"][1]["ratio_to_first"], flush=True)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print("bench-ng: %s" % e, file=sys.stderr)
        rc = 1
    finally:
        for p, stop in reversed(started):
            stop(p)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"windows": results}, f, indent=1)
    return rc


if __name__ == "__main__":
    sys.exit(main())
