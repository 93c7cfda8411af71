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

# The sanitizer build (ASan + UBSan) of the unit and dataplane tests, at -O1 with line
# tables (-g1) and assertions on: all the sanitizers need for their checks and for
# file:line in their reports, in a third of -O2 -g's compile time (on a 2-core Zen 3
# host the -O2 -g build took 20 of the run's 31 minutes; docs/decisions.md D28).
ASAN_DIR=${KARL_ASAN_BUILD_DIR:-build-asan}
ASAN_OPTS=(-Db_sanitize=address,undefined -Dbuildtype=plain -Doptimization=1 -Db_ndebug=false
  -Dcpp_args=-g1)
asan_build() {
  if [ ! -f "$ASAN_DIR/build.ninja" ]; then
    meson setup "$ASAN_DIR" "${ASAN_OPTS[@]}" >/dev/null
  else
    meson configure "$ASAN_DIR" "${ASAN_OPTS[@]}" >/dev/null
  fi
  ninja -C "$ASAN_DIR" common/common_unit_test controlplane/controlplane_unit_test \
    dataplane/dataplane_unit_test dataplane/srtp_unit_test dataplane/srtp_engine_test \
    tests/dataplane/dataplane_test \
    tests/dataplane/multiworker_test
}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# name | command (gtest binaries write JSON; the e2e runner writes the same shape)
SUITES=(
  "unit-common|$BUILD_DIR/common/common_unit_test --gtest_output=json:$RESULTS/unit-common.json"
  "unit-controlplane|$BUILD_DIR/controlplane/controlplane_unit_test --gtest_output=json:$RESULTS/unit-controlplane.json"
  "unit-dataplane|$BUILD_DIR/dataplane/dataplane_unit_test --gtest_output=json:$RESULTS/unit-dataplane.json"
  "unit-srtp|$BUILD_DIR/dataplane/srtp_unit_test --gtest_output=json:$RESULTS/unit-srtp.json"
  "srtp-engine|$BUILD_DIR/dataplane/srtp_engine_test --gtest_output=json:$RESULTS/srtp-engine.json"
  "dataplane|$BUILD_DIR/tests/dataplane/dataplane_test --gtest_output=json:$RESULTS/dataplane.json"
  "multiworker|$BUILD_DIR/tests/dataplane/multiworker_test --gtest_output=json:$RESULTS/multiworker.json"
  "e2e|python3 tests/e2e/run.py --build-dir $BUILD_DIR --json $RESULTS/e2e.json"
  "bench-smoke|python3 tests/bench_smoke.py --build-dir $BUILD_DIR --json $RESULTS/bench-smoke.json"
  "format|scripts/check-format.sh --json $RESULTS/format.json"
  "asan-build|asan_build"
  "asan-unit-common|$ASAN_DIR/common/common_unit_test --gtest_output=json:$RESULTS/asan-unit-common.json"
  "asan-unit-controlplane|$ASAN_DIR/controlplane/controlplane_unit_test --gtest_output=json:$RESULTS/asan-unit-controlplane.json"
  "asan-unit-dataplane|$ASAN_DIR/dataplane/dataplane_unit_test --gtest_output=json:$RESULTS/asan-unit-dataplane.json"
  "asan-unit-srtp|$ASAN_DIR/dataplane/srtp_unit_test --gtest_output=json:$RESULTS/asan-unit-srtp.json"
  "asan-srtp-engine|$ASAN_DIR/dataplane/srtp_engine_test --gtest_output=json:$RESULTS/asan-srtp-engine.json"
  "asan-multiworker|$ASAN_DIR/tests/dataplane/multiworker_test --gtest_output=json:$RESULTS/asan-multiworker.json"
  "asan-dataplane|$ASAN_DIR/tests/dataplane/dataplane_test --gtest_output=json:$RESULTS/asan-dataplane.json"
)

for entry in "${SUITES[@]}"; do
  name=${entry%%|*}
  cmd=${entry#*|}
  if [ -n "${KARL_TEST_ONLY:-}" ] && [[ $name != ${KARL_TEST_ONLY}* ]]; then continue; fi
  echo "=== suite $name"
  start=$(date +%s)
  if [ "$cmd" = asan_build ]; then
    asan_build > "$RESULTS/$name.log" 2>&1
  else
    timeout --kill-after=10 900 $cmd > "$RESULTS/$name.log" 2>&1
  fi
  rc=$?
  echo "$rc" > "$RESULTS/$name.rc"
  tail -n 25 "$RESULTS/$name.log"
  echo "=== suite $name exit $rc in $(( $(date +%s) - start ))s"
done

python3 tests/summarize.py "$RESULTS"
