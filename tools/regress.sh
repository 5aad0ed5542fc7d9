#!/usr/bin/env bash
# Runs a regression suite (default benchmarks/ci.pbtxt) and writes the HTML
# report of its history next to it; exits with //tools:regress's code
# (0 all passed, 1 a regression or an improvement beyond a band, 2 a bad
# suite or a missing metric).
#   tools/regress.sh [SUITE] [regress flags, e.g. --jobs=2 --update]
# Outputs: runs/regress/<suite>/ (data, runs, history.jsonl, report.html).
source "$(dirname "${BASH_SOURCE[0]}")/bazel_env.sh"

SUITE="${1:-benchmarks/ci.pbtxt}"
shift || true
OUT="runs/regress/$(basename "$SUITE" .pbtxt)"
start=$(date +%s)
bz build //tools:regress //tools:report
set +e
bazel-bin/tools/regress --suite="$SUITE" --out="$OUT" --jobs=2 "$@"
rc=$?
set -e
bazel-bin/tools/report "$OUT" --out="$OUT/report.html" --title="Regression suite $SUITE" || true
bazel shutdown >/dev/null 2>&1 || true
echo "tools/regress.sh: $SUITE in $(( $(date +%s) - start )) s, exit code $rc; report: $OUT/report.html"
exit $rc
