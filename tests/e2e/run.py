#!/usr/bin/env python3
"""Runs the end-to-end tests (tests/e2e/test_*.py, unittest) against a build.

Writes results in GoogleTest's JSON shape so scripts/test.sh counts them with the
unit suites. Nothing is skipped: a missing tool or a failed setup is a failure.
Usage: run.py --build-dir build --json out.json [-k pattern]
"""
import argparse
import json
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


class RecordingResult(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.records = []  # (suite, name, result, message, seconds)
        self._started = {}

    def startTest(self, test):
        self._started[test.id()] = time.time()
        super().startTest(test)

    def _record(self, test, result, message=""):
        suite, _, name = test.id().rpartition(".")
        took = time.time() - self._started.get(test.id(), time.time())
        self.records.append((suite, name, result, message, took))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "PASSED")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "FAILED", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        # A setUpClass error reaches here as a _ErrorHolder without a real id.
        self._record(test, "FAILED", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "FAILED", "skipped, which the e2e suite does not allow: " + reason)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--json", required=True)
    ap.add_argument("-k", dest="pattern", default=None)
    args = ap.parse_args()
    os.environ["KARL_BUILD_DIR"] = os.path.abspath(args.build_dir)
    sys.path.insert(0, HERE)
    loader = unittest.TestLoader()
    if args.pattern:
        loader.testNamePatterns = ["*%s*" % args.pattern]
    suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    runner = unittest.TextTestRunner(resultclass=RecordingResult, verbosity=2, stream=sys.stdout)
    result = runner.run(suite)
    suites = {}
    for suite_name, name, res, msg, took in result.records:
        case = {"name": name, "status": "RUN", "result": "COMPLETED", "time": "%.3fs" % took}
        if res == "FAILED":
            case["failures"] = [{"failure": msg}]
        suites.setdefault(suite_name, []).append(case)
    out = {"testsuites": [{"name": k, "testsuite": v} for k, v in suites.items()]}
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    if result.testsRun == 0:
        print("no e2e test ran", file=sys.stderr)
        return 1
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
