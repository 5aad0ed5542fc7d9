#!/usr/bin/env bash
# Short kill drills (tools/kill_drill.py): a run killed with SIGKILL at
# random moments and resumed each time must end bit-identical to an
# uninterrupted run (results, per-class accuracy, model SHA-256) for
#   1. supervised training with dropout 0.2 (the dropout masks come from
#      LibTorch's generator, whose state the checkpoints carry);
#   2. self-supervised rho-MoCo (EMA key encoder and key queue);
#   3. the CI-sized TimeBalance pipeline, with kills across stage boundaries.
# 3 kills each, 1 LibTorch thread; docs/RELIABILITY.md reports the long drill.
set -uo pipefail
BIN="$TEST_SRCDIR/timebalance/tools/timebalance"
GEN="$TEST_SRCDIR/timebalance/datasets/synthetic/make_synthetic"
DRILL="$TEST_SRCDIR/timebalance/tools/kill_drill.py"
CONFIGS="$TEST_SRCDIR/timebalance/configs"
cd "$TEST_TMPDIR"
"$GEN" --out=data --classes=4 --train_per_class=4 --test_per_class=1 --seed=2 \
  --min_frames=40 --max_frames=48 --min_short_side=64 --max_short_side=72 >gen.txt 2>&1 \
  || { cat gen.txt; exit 1; }
DATA='dataset { ucf101 { root: "data" } clip { decode_short_side: 48 crop_size: 40 } }'
failures=0
drill() {
  local name="$1"; shift
  if /usr/bin/python3 "$DRILL" --kills=3 --seed=7 --min_delay=0.8 --work="drill_$name" -- \
      "$BIN" --run_dir={dir} --num_threads=1 "$@" > "$name.txt" 2>&1; then
    echo "$name: $(tail -1 "$name.txt")"
  else
    echo "FAIL $name:"; cat "$name.txt"; failures=$((failures + 1))
  fi
}
drill supervised --config="$CONFIGS/supervised_r3d18tiny_8x4_synth_ci.pbtxt" \
  --override="$DATA schedule { steps: 24 checkpoint_every: 3 }"
drill moco --config="$CONFIGS/ssl_invariant_r3d18tiny_8x2_synth_ci.pbtxt" \
  --override="$DATA trainer { ssl { objective { rho_moco { queue_size: 24 projection { out: 16 } } } } labeled_batch_size: 4 } schedule { steps: 16 checkpoint_every: 3 }"
STAGES='schedule { steps: 6 checkpoint_every: 2 }'
drill pipeline --config="$CONFIGS/timebalance_r3d18tiny_synth_ci.pbtxt" \
  --override="${DATA%\}} labeled_fraction: 0.25 } timebalance { pretrain_invariant { $STAGES } pretrain_distinctive { $STAGES } finetune { $STAGES } distill { $STAGES } supervised_baseline { $STAGES } }"
# The drill must see a difference when there is one: a reference and a
# "drill" that differ in one step count are reported NOT IDENTICAL.
mkdir -p neg && cp -r drill_supervised/reference neg/reference && cp -r drill_supervised/reference neg/drill
sed -i 's/"steps": 24/"steps": 23/' neg/drill/results.json
if /usr/bin/python3 - "$DRILL" neg <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("drill", sys.argv[1])
d = importlib.util.module_from_spec(spec); spec.loader.exec_module(d)
a, b = d.records(sys.argv[2] + "/reference"), d.records(sys.argv[2] + "/drill")
sys.exit(0 if a == b else 1)
PY
then echo "FAIL: the comparison did not see a changed step count"; failures=$((failures + 1)); fi
exit $failures
