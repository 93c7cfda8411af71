#!/usr/bin/env bash
# Checks that every C++ source is formatted by .clang-format (Google, 100 columns).
#   scripts/check-format.sh            list unformatted files, exit 1 if any
#   scripts/check-format.sh --fix      reformat them in place
#   scripts/check-format.sh --json F   also write the result as a test report
set -uo pipefail
cd "$(dirname "$0")/.."
fix=0 json=
while [ $# -gt 0 ]; do
  case "$1" in
    --fix) fix=1 ;;
    --json) json=$2; shift ;;
  esac
  shift
done
files=$(git ls-files --cached --others --exclude-standard '*.cc' '*.h' 2>/dev/null || find common dataplane controlplane tests -name '*.cc' -o -name '*.h')
bad=()
for f in $files; do
  if [ "$fix" = 1 ]; then clang-format -i "$f"; continue; fi
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then bad+=("$f"); fi
done
if [ -n "$json" ]; then
  python3 - "$json" "${bad[@]}" <<'PY'
import json, sys
out, bad = sys.argv[1], sys.argv[2:]
case = {"name": "clang_format", "status": "RUN", "result": "COMPLETED"}
if bad:
    case["failures"] = [{"failure": "not formatted (run scripts/check-format.sh --fix): " + ", ".join(bad)}]
json.dump({"testsuites": [{"name": "Format", "testsuite": [case]}]}, open(out, "w"))
PY
fi
if [ ${#bad[@]} -gt 0 ]; then
  printf 'not formatted: %s\n' "${bad[@]}"
  exit 1
fi
echo "format: all C++ sources formatted"
