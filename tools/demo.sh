#!/usr/bin/env bash
# The demo: installs what is missing, builds, generates SynthActions, trains
# the supervised baseline with 100% and with 10% of the training labels,
# evaluates both on the test split and prints a table.
#   tools/demo.sh            (data in data/, runs in runs/demo_*)
# Environment: DEMO_STEPS (training steps per run), DEMO_THREADS.
source "$(dirname "${BASH_SOURCE[0]}")/bazel_env.sh"

DATA="${DEMO_DATA:-data/synth_actions}"
CONFIGS=configs/supervised_r3d18tiny_8x4_synth
STEPS_OVERRIDE=""
if [ -n "${DEMO_STEPS:-}" ]; then STEPS_OVERRIDE="schedule { steps: $DEMO_STEPS }"; fi

t0=$(date +%s)
bz build //tools:timebalance //tools:make_synthetic
BIN=bazel-bin/tools/timebalance
GEN=bazel-bin/datasets/synthetic/make_synthetic
t_build=$(( $(date +%s) - t0 ))

if [ ! -f "$DATA/testlist01.txt" ]; then
  "$GEN" --out="$DATA" --classes=10 --train_per_class=30 --test_per_class=10 --seed=0
fi
t_data=$(( $(date +%s) - t0 - t_build ))

run() {  # run NAME CONFIG_SUFFIX
  local dir="runs/demo_$1"
  rm -rf "$dir"
  local s; s=$(date +%s)
  "$BIN" --config="${CONFIGS}_$2.pbtxt" --run_dir="$dir" \
    ${DEMO_THREADS:+--num_threads=$DEMO_THREADS} \
    --override="dataset { ucf101 { root: \"$DATA\" } } $STEPS_OVERRIDE"
  echo $(( $(date +%s) - s )) > "$dir/wall_seconds"
}
run sup100 100pct
run sup10 10pct

field() { sed -E "s/.*\"$2\": ([0-9.]+).*/\1/" "$1"; }
echo
echo "SynthActions ($DATA), tiny R3D-18, supervised, test split (10 clips x centre crop):"
printf "| %-22s | %8s | %8s | %8s | %8s |\n" "labels" "videos" "top-1 %" "top-5 %" "wall s"
printf "|%s|%s|%s|%s|%s|\n" "------------------------" "----------" "----------" "----------" "----------"
for name in sup100 sup10; do
  r="runs/demo_$name/results.json"
  top1=$(sed -E 's/.*"test": \{[^}]*"top1": ([0-9.]+).*/\1/' "$r")
  top5=$(sed -E 's/.*"test": \{[^}]*"top5": ([0-9.]+).*/\1/' "$r")
  printf "| %-22s | %8s | %8.1f | %8.1f | %8s |\n" \
    "$(field "$r" labeled_fraction | awk '{printf "%g%%", $1*100}') ($name)" \
    "$(field "$r" labeled_videos)" "$(awk "BEGIN{print $top1*100}")" "$(awk "BEGIN{print $top5*100}")" \
    "$(cat "runs/demo_$name/wall_seconds")"
done
echo "build ${t_build} s, data ${t_data} s, total $(( $(date +%s) - t0 )) s"
bazel shutdown >/dev/null 2>&1 || true
