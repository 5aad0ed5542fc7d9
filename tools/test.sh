#!/usr/bin/env bash
# Runs every test: installs missing packages, builds everything, runs
# `bazel test //...`, and prints "N passed, N failed" counted from Bazel's
# per-target results. A test target that did not build, timed out or
# failed counts as failed. Exits non-zero on any failure.
#   tools/test.sh [extra bazel test flags]
# Tests always run (--nocache_test_results): compiled objects come from the
# disk cache, test verdicts never do.
source "$(dirname "${BASH_SOURCE[0]}")/bazel_env.sh"

start=$(date +%s)
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
bz test //... --test_output=errors --test_summary=short --nocache_test_results "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

total=$(bz query 'tests(//...)' 2>/dev/null | grep -c '^//' || true)
passed=$(grep -cE '^//[^ ]+ +(\(cached\) )?PASSED' "$log" || true)
failed=$((total - passed))
grep -E '^//[^ ]+ +.*(FAILED|TIMEOUT|NO STATUS|INCOMPLETE|FLAKY)' "$log" >&2 || true

bazel shutdown >/dev/null 2>&1 || true
echo "tools/test.sh: $total test targets, bazel exit code $rc, $(( $(date +%s) - start )) s"
echo "$passed passed, $failed failed"
if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ]; then exit 1; fi
