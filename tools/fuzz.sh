#!/usr/bin/env bash
# Builds the libFuzzer targets (--config=fuzz: clang-14, ASan + UBSan) and
# runs each on its corpus (docs/RELIABILITY.md, "Fuzzing").
#   tools/fuzz.sh [--seconds=N] [--build_only] [target...]
# Targets (default: all): config_loader checkpoint manifest listing
# video_reader. Each runs N seconds (default 30) under nice -n 19 with
# -timeout=10 (an input that takes longer is a finding) and
# -rss_limit_mb=2048, on a work corpus in $TB_FUZZ_WORK/<target>/corpus
# (default ~/.cache/timebalance-fuzz) seeded with the target's corpus and
# regression folders in the repository, which are never written. Findings
# (crash-*, leak-*, timeout-*, oom-*) go to $TB_FUZZ_WORK/<target>/; a
# finding fails the run. Prints one line of libFuzzer's final statistics per
# target and, last, "N passed, N failed" (targets).
# The build uses its own Bazel output base ($TB_FUZZ_OUTPUT_BASE, default
# ~/.cache/bazel_fuzz): --config=fuzz switches the compiler, which would
# otherwise invalidate the normal build's analysis.
source "$(dirname "${BASH_SOURCE[0]}")/bazel_env.sh"
# The build and the fuzzers yield the CPU to everything else on the machine.
renice -n 19 -p $$ >/dev/null

seconds=30
build_only=0
targets=()
for arg in "$@"; do
  case "$arg" in
    --seconds=*) seconds="${arg#--seconds=}" ;;
    --build_only) build_only=1 ;;
    -*) echo "tools/fuzz.sh: unknown flag $arg" >&2; exit 2 ;;
    *) targets+=("$arg") ;;
  esac
done
ALL=(config_loader checkpoint manifest listing video_reader)
[ ${#targets[@]} -eq 0 ] && targets=("${ALL[@]}")

# target -> package; extra read-only seed folders.
package_of() {
  case "$1" in
    config_loader) echo configs/fuzz ;;
    checkpoint) echo core/fuzz ;;
    manifest|listing|video_reader) echo datasets/fuzz ;;
    *) echo "tools/fuzz.sh: unknown target $1 (want: ${ALL[*]})" >&2; return 1 ;;
  esac
}
extra_seeds_of() {
  case "$1" in
    # The shipped experiment configs (they name no run_dir: the fuzzer adds
    # "#override" fragments to get past validation).
    config_loader) echo configs ;;
    *) ;;
  esac
}

labels=()
for t in "${targets[@]}"; do labels+=("//$(package_of "$t"):${t}_fuzzer"); done

output_base="${TB_FUZZ_OUTPUT_BASE:-$HOME/.cache/bazel_fuzz}"
work="${TB_FUZZ_WORK:-$HOME/.cache/timebalance-fuzz}"
start=$(date +%s)
bz --output_base="$output_base" build --config=fuzz "${labels[@]}"
bin_dir="$(bz --output_base="$output_base" info --config=fuzz bazel-bin 2>/dev/null)"
echo "tools/fuzz.sh: built ${#labels[@]} fuzzers in $(( $(date +%s) - start )) s"
if [ "$build_only" -eq 1 ]; then exit 0; fi

passed=0
failed=0
for t in "${targets[@]}"; do
  pkg="$(package_of "$t")"
  dir="$work/$t"
  mkdir -p "$dir/corpus"
  seeds=("$ROOT/$pkg/corpus/$t")
  [ -d "$ROOT/$pkg/regressions/$t" ] && seeds+=("$ROOT/$pkg/regressions/$t")
  for s in $(extra_seeds_of "$t"); do seeds+=("$ROOT/$s"); done
  dict=()
  [ -f "$ROOT/$pkg/$t.dict" ] && dict=(-dict="$ROOT/$pkg/$t.dict")
  log="$dir/last_run.log"
  set +e
  "$bin_dir/$pkg/${t}_fuzzer" "${dict[@]}" -max_total_time="$seconds" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/" \
    "$dir/corpus" "${seeds[@]}" > "$log" 2>&1
  rc=$?
  set -e
  done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)"
  cov="$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<< "$done_line")"
  ft="$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<< "$done_line")"
  stat() { sed -nE "s/^stat::$1: *([0-9]+).*/\1/p" "$log" | tail -1 || true; }
  files=$(find "$dir/corpus" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1)); verdict=ok
  else
    failed=$((failed + 1)); verdict="FAILED (exit $rc; $log)"
    grep -E "^(==[0-9]+==ERROR|SUMMARY|.*fuzz target invariant|artifact_prefix|Test unit written)" \
      "$log" | head -8 >&2 || true
  fi
  echo "fuzz $t: ${seconds} s, $(stat number_of_executed_units) runs," \
       "$(stat average_exec_per_sec) exec/s, cov $cov, ft $ft, corpus $files files" \
       "(+$(stat new_units_added)), peak rss $(stat peak_rss_mb) MB: $verdict"
done
bazel --output_base="$output_base" shutdown >/dev/null 2>&1 || true
echo "tools/fuzz.sh: ${#targets[@]} targets, $(( $(date +%s) - start )) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
