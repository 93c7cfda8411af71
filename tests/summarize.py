#!/usr/bin/env python3
"""Sums the test results of every suite in a results directory.

Each suite leaves NAME.rc (exit code) and, when it ran, NAME.json in GoogleTest's
JSON shape ({"testsuites": [{"testsuite": [{"name", "result", "failures"}]}]}).
A suite that exited non-zero without reporting a failed test counts as one failure
(it crashed or could not start), so nothing is lost silently. Prints the failed
tests, then the closing line "N passed, N failed" and exits 1 when any failed.
"""
import json
import os
import sys

results = sys.argv[1]
passed = failed = skipped = 0
failures = []
for rc_file in sorted(f for f in os.listdir(results) if f.endswith(".rc")):
    name = rc_file[:-3]
    rc = int(open(os.path.join(results, rc_file)).read().strip() or "1")
    suite_failed = 0
    path = os.path.join(results, name + ".json")
    if os.path.exists(path):
        try:
            data = json.load(open(path))
        except ValueError:
            data = {"testsuites": []}
        for suite in data.get("testsuites", []):
            for case in suite.get("testsuite", []):
                full = "%s: %s.%s" % (name, suite.get("name"), case.get("name"))
                if case.get("result") == "SKIPPED" or case.get("status") == "NOTRUN":
                    skipped += 1
                elif case.get("failures"):
                    suite_failed += 1
                    failures.append(full)
                else:
                    passed += 1
    if rc != 0 and suite_failed == 0:
        suite_failed = 1
        failures.append("%s: suite exited with code %d (see %s.log)" % (name, rc, name))
    failed += suite_failed
for f in failures:
    print("FAILED", f)
line = "%d passed, %d failed" % (passed, failed)
if skipped:
    line += ", %d skipped" % skipped
print(line)
sys.exit(1 if failed else 0)
