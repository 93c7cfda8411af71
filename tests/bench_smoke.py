#!/usr/bin/env python3
"""Runs every benchmark once with small parameters, so a benchmark that no longer builds,
starts or completes is a test failure instead of a surprise at measuring time.

Not a timed test: no figure is compared with a threshold. What is checked is what each
benchmark checks itself (karl-bench exits non-zero when the worker did not forward every
packet it was given, bench-ng.py when a request failed or went unanswered) and that each
prints every figure it promises (docs/performance.md), as a positive rate.

  tests/bench_smoke.py --build-dir build --json out.json

Writes a GoogleTest-shaped report (one case per benchmark) and exits 1 when any failed.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SUITES = ("AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM")
OPS = ("protect", "unprotect", "re-key")
RATE = r"\s+([0-9.]+) Mpps"


def run(cmd, timeout):
    start = time.monotonic()
    p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, time.monotonic() - start


def positive(out, pattern, what, errors):
    m = re.search(pattern, out, re.M)
    if m is None:
        errors.append("missing: %s" % what)
    elif float(m.group(1)) <= 0:
        errors.append("not positive: %s = %s" % (what, m.group(1)))


def karl_bench(build):
    rc, out, secs = run([os.path.join(build, "tests/bench/karl-bench"), "--rounds", "1",
                         "--packets", "1024", "--sessions", "100"], 300)
    errors = [] if rc == 0 else ["exit code %d" % rc]
    positive(out, r"^reference io-fwd \(ring->null\)" + RATE, "io-fwd reference", errors)
    positive(out, r"^reference touch-fwd \(4 lines\)" + RATE, "touch-fwd reference", errors)
    positive(out, r"^karl drop \(no session\)" + RATE, "karl drop", errors)
    positive(out, r"^karl forward" + RATE, "karl forward", errors)
    positive(out, r"^\s+([0-9.]+)x touch-fwd", "karl forward / touch-fwd", errors)
    for suite in SUITES:
        positive(out, r"^engine alone .* protect %s ([0-9.]+) Mpps" % suite,
                 "engine alone %s" % suite, errors)
        positive(out, r"^engine alone .* protect %s .* raw cryptodev on the main lcore "
                 r"before the run ([0-9.]+) Mpps" % suite,
                 "raw cryptodev on the main lcore %s" % suite, errors)
        for op in OPS:
            positive(out, r"^karl %s %s" % (op, suite) + RATE, "karl %s %s" % (op, suite),
                     errors)
            positive(out, r"^karl %s %s .* raw cryptodev \(([0-9.]+)\)" % (op, suite),
                     "raw cryptodev beside %s %s" % (op, suite), errors)
            positive(out, r"^karl %s %s .* raw ipsec-mb \(([0-9.]+)\)" % (op, suite),
                     "raw ipsec-mb beside %s %s" % (op, suite), errors)
        positive(out, r"^karl re-key / protect %s: ([0-9.]+)" % suite,
                 "re-key / protect %s" % suite, errors)
    positive(out, r"^karl forward, ICE streams" + RATE, "karl forward, ICE streams", errors)
    for what, pattern in (("ICE checks answered", r"^ICE checks answered .*: ([0-9.]+) checks/s"),
                          ("ICE codec reference", r"the STUN codec alone \(([0-9.]+)/s\)"),
                          ("ICE HMAC reference", r"two HMAC-SHA1 \(([0-9.]+)/s\)")):
        positive(out, pattern, what, errors)
    return errors, out, secs


def crypto_bench(build):
    rc, out, secs = run([os.path.join(build, "tests/bench/karl-crypto-bench"), "--seconds",
                         "0.05", "--streams", "100"], 300)
    errors = [] if rc == 0 else ["exit code %d" % rc]
    for suite in SUITES:
        start = out.find("\n" + suite + "\n")
        if start < 0:
            errors.append("missing: section %s" % suite)
            continue
        nxt = min([i for i in (out.find("\n" + s + "\n", start + 1) for s in SUITES) if i > start]
                  or [len(out)])
        section = out[start:nxt]
        positive(section, r"^\s+reference libsrtp2 protect" + RATE, suite + " libsrtp2", errors)
        positive(section, r"^\s+reference raw cryptodev" + RATE, suite + " raw cryptodev", errors)
        positive(section, r"^\s+reference raw ipsec-mb \(direct\)" + RATE, suite + " raw ipsec-mb",
                 errors)
        positive(section, r"^\s+reference raw cpu-crypto" + RATE, suite + " raw cpu-crypto", errors)
        for engine in ("ipsec_mb", "openssl", "libsrtp"):
            for op in OPS:
                positive(section, r"^\s+karl %s %s" % (engine, op) + RATE,
                         "%s karl %s %s" % (suite, engine, op), errors)
    return errors, out, secs


def ng_bench(build):
    rc, out, secs = run([sys.executable, "scripts/bench-ng.py", "--build-dir", build,
                         "--calls", "100", "--rounds", "1", "--windows", "1,4"], 300)
    errors = [] if rc == 0 else ["exit code %d" % rc]
    for window in ("1", "4"):
        m = re.search(r"^window %s:\n(.*?)(?=^window |\Z)" % window, out, re.M | re.S)
        if m is None:
            errors.append("missing: window %s" % window)
            continue
        block = m.group(1)
        for target in ("rtpengine", "karl"):
            m2 = re.search(r"^\s+%s\s+(\d+) sessions/s.*errors (\d+)" % target, block, re.M)
            if m2 is None:
                errors.append("missing: window %s %s" % (window, target))
            elif int(m2.group(1)) <= 0 or int(m2.group(2)) != 0:
                errors.append("window %s %s: %s sessions/s, %s errors"
                              % (window, target, m2.group(1), m2.group(2)))
        positive(block, r"Karl/rtpengine: ([0-9.]+)x", "window %s ratio" % window, errors)
    return errors, out, secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    build = os.path.abspath(args.build_dir)
    cases = []
    for name, fn in (("KarlBench", karl_bench), ("KarlCryptoBench", crypto_bench),
                     ("BenchNg", ng_bench)):
        try:
            errors, out, secs = fn(build)
        except subprocess.TimeoutExpired as e:
            errors, out, secs = ["timed out after %s s" % e.timeout], e.output or "", e.timeout
        except OSError as e:  # the benchmark binary is missing or not executable
            errors, out, secs = ["cannot run: %s" % e], "", 0.0
        status = "ok" if not errors else "FAILED"
        print("%-16s %s in %.1f s" % (name, status, secs))
        for e in errors:
            print("  " + e)
        if errors:
            print(out[-4000:] if isinstance(out, str) else out)
        case = {"name": name, "result": "COMPLETED", "time": "%.3fs" % secs}
        if errors:
            case["failures"] = [{"failure": "; ".join(errors)}]
        cases.append(case)
    with open(args.json, "w") as f:
        json.dump({"testsuites": [{"name": "BenchSmoke", "testsuite": cases}]}, f)
    return 1 if any("failures" in c for c in cases) else 0


if __name__ == "__main__":
    sys.exit(main())
