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

echo
echo "SynthActions ($DATA), tiny R3D-18, supervised, test split (10 clips x centre crop per video):"
/usr/bin/python3 tools/demo_table.py "$DATA" runs/demo_sup100 runs/demo_sup10
echo "build ${t_build} s, data ${t_data} s, total $(( $(date +%s) - t0 )) s"
bazel shutdown >/dev/null 2>&1 || true
