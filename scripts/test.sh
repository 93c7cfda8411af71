#!/usr/bin/env bash
# Sets up, builds and runs every test suite. Last line: "N passed, N failed".
#   scripts/test.sh             everything (unit, dataplane, end-to-end)
#   KARL_TEST_ONLY=unit         only suites whose name starts with this
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${KARL_BUILD_DIR:-build}
RESULTS="$BUILD_DIR/test-results"

if ! scripts/setup.sh; then
  echo "setup/build failed"
  echo "0 passed, 1 failed"
  exit 1
fi
rm -rf "$RESULTS" && mkdir -p "$RESULTS"

# name | command (gtest binaries write JSON; the e2e runner writes the same shape)
SUITES=(
  "unit-common|$BUILD_DIR/common/common_unit_test --gtest_output=json:$RESULTS/unit-common.json"
  "unit-controlplane|$BUILD_DIR/controlplane/controlplane_unit_test --gtest_output=json:$RESULTS/unit-controlplane.json"
  "dataplane|$BUILD_DIR/tests/dataplane/dataplane_test --gtest_output=json:$RESULTS/dataplane.json"
  "e2e|python3 tests/e2e/run.py --build-dir $BUILD_DIR --json $RESULTS/e2e.json"
)

for entry in "${SUITES[@]}"; do
  name=${entry%%|*}
  cmd=${entry#*|}
  if [ -n "${KARL_TEST_ONLY:-}" ] && [[ $name != ${KARL_TEST_ONLY}* ]]; then continue; fi
  echo "=== suite $name"
  start=$(date +%s)
  timeout --kill-after=10 900 $cmd > "$RESULTS/$name.log" 2>&1
  rc=$?
  echo "$rc" > "$RESULTS/$name.rc"
  tail -n 25 "$RESULTS/$name.log"
  echo "=== suite $name exit $rc in $(( $(date +%s) - start ))s"
done

python3 tests/summarize.py "$RESULTS"
