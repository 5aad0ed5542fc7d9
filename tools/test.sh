#!/usr/bin/env bash
# Runs every test: installs missing packages, builds everything, runs
# `bazel test //...`, and prints "N passed, N failed" counted from Bazel's
# per-target results. A test target that did not build, timed out or
# failed counts as failed. Exits non-zero on any failure.
#   tools/test.sh [extra bazel test flags]
# Tests always run (--nocache_test_results): compiled objects come from the
# disk cache, test verdicts never do.
#
# With --sanitize it runs the sanitizer passes instead (docs/RELIABILITY.md,
# "Sanitizers"), each printing its own "<pass>: N passed, N failed" line, and
# last the total "N passed, N failed":
#   tools/test.sh --sanitize[=asan|tsan|asan,tsan] [target patterns] [bazel flags]
#   asan  --config=asan (ASan + LeakSanitizer + UBSan) on the given target
#         patterns, default //...
#   tsan  --config=tsan on the threaded tests (TSAN_TESTS below)
# They build in an output base of their own ($TB_SANITIZER_OUTPUT_BASE,
# default ~/.cache/bazel_sanitizers), so the normal build's outputs and
# Bazel server are left alone; the disk cache is shared.
source "$(dirname "${BASH_SOURCE[0]}")/bazel_env.sh"

# The tests whose code runs on several threads: the ordered prefetcher, the
# clip loader and its views (video and stored-flow), the evaluators (they
# prefetch through OrderedPrefetcher), the flow batch writer, the indexer
# (manifest_test), the SynthActions writer, the event writer, the slow-video
# monitor, the RNG's thread-independence test, and the distributed code
# (ranks on threads of one process: Gloo collectives, the gradient
# synchroniser's autograd hooks and asynchronous all-reduces, the heartbeat).
TSAN_TESTS=(
  //core:ordered_prefetcher_test
  //core:rng_test
  //core:event_writer_test
  //datasets:clip_loader_test
  //datasets:views_test
  //datasets:flow_view_test
  //datasets:flow_file_test
  //datasets:slow_video_monitor_test
  //datasets/formats:manifest_test
  //datasets/synthetic:synth_actions_test
  //eval:multi_clip_evaluator_test
  //eval:representation_test
  //tests:compute_flow_test
  //train:distributed_test
)

start=$(date +%s)
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

# run_tests NAME "STARTUP FLAGS" "QUERY" ARGS...: runs `bazel test ARGS`,
# sets $passed and $failed (test targets of QUERY that did not pass) and
# returns Bazel's exit code.
run_tests() {
  local name="$1" startup="$2" query="$3"
  shift 3
  local rc total
  set +e
  # shellcheck disable=SC2086  # startup is a list of flags
  bz $startup test --test_output=errors --test_summary=short --nocache_test_results "$@" \
    2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  # shellcheck disable=SC2086
  total=$(bz $startup query "$query" 2>/dev/null | grep -c '^//' || true)
  passed=$(grep -cE '^//[^ ]+ +(\(cached\) )?PASSED' "$log" || true)
  failed=$((total - passed))
  grep -E '^//[^ ]+ +.*(FAILED|TIMEOUT|NO STATUS|INCOMPLETE|FLAKY)' "$log" >&2 || true
  echo "tools/test.sh: $name: $total test targets, bazel exit code $rc, $(( $(date +%s) - start )) s"
  return "$rc"
}

if [[ "${1:-}" != --sanitize* ]]; then
  set +e
  run_tests "all" "" 'tests(//...)' //... "$@"
  rc=$?
  set -e
  bazel shutdown >/dev/null 2>&1 || true
  echo "$passed passed, $failed failed"
  if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ]; then exit 1; fi
  exit 0
fi

passes="${1#--sanitize}"
passes="${passes#=}"
passes="${passes:-asan,tsan}"
shift
patterns=()
flags=()
for arg in "$@"; do
  if [[ "$arg" == //* || "$arg" == -//* ]]; then patterns+=("$arg"); else flags+=("$arg"); fi
done
[ ${#patterns[@]} -eq 0 ] && patterns=(//...)
output_base="${TB_SANITIZER_OUTPUT_BASE:-$HOME/.cache/bazel_sanitizers}"
startup="--output_base=$output_base"

all_passed=0
all_failed=0
status=0
summary=()
for pass in ${passes//,/ }; do
  pass_start=$(date +%s)
  case "$pass" in
    asan)
      name="asan+ubsan"
      query="${patterns[0]}"
      for p in "${patterns[@]:1}"; do
        if [[ "$p" == -* ]]; then query+=" - ${p#-}"; else query+=" + $p"; fi
      done
      query="tests($query)"
      set +e
      run_tests "$name" "$startup" "$query" --config=asan --keep_going "${flags[@]}" -- \
        "${patterns[@]}"
      rc=$?
      set -e
      ;;
    tsan)
      name="tsan"
      query="tests(set(${TSAN_TESTS[*]}))"
      set +e
      run_tests "$name" "$startup" "$query" --config=tsan --keep_going "${flags[@]}" -- \
        "${TSAN_TESTS[@]}"
      rc=$?
      set -e
      ;;
    *)
      echo "tools/test.sh: unknown sanitizer pass '$pass' (want asan, tsan)" >&2
      exit 2
      ;;
  esac
  if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ]; then status=1; fi
  all_passed=$((all_passed + passed))
  all_failed=$((all_failed + failed))
  summary+=("$name: $passed passed, $failed failed ($(( $(date +%s) - pass_start )) s)")
done
bazel "$startup" shutdown >/dev/null 2>&1 || true
printf '%s\n' "${summary[@]}"
echo "$all_passed passed, $all_failed failed"
exit "$status"
