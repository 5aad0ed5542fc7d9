#!/usr/bin/env bash
# End-to-end checks of the main binary as a user runs it: bad input gives a
# one-line error naming the culprit and the documented exit code, and a run
# interrupted with SIGINT resumes from its checkpoint with the step count
# continuing.
set -uo pipefail

BIN="$TEST_SRCDIR/timebalance/tools/timebalance"
CONFIGS="$TEST_SRCDIR/timebalance/configs"
GEN="$TEST_SRCDIR/timebalance/datasets/synthetic/make_synthetic"
WORK="$TEST_TMPDIR/cli"
mkdir -p "$WORK"
cd "$WORK"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect_error CODE NEEDLE -- command...: runs the command, checks exit code,
# that stderr has exactly one line, and that it mentions NEEDLE.
expect_error() {
  local code="$1" needle="$2"; shift 3
  "$@" >out.txt 2>err.txt
  local rc=$?
  [ "$rc" -eq "$code" ] || fail "$* exited $rc, want $code: $(cat err.txt)"
  local lines; lines=$(grep -vc '^$' err.txt)
  [ "$lines" -eq 1 ] || fail "$* printed $lines stderr lines, want 1: $(cat err.txt)"
  grep -qF -- "$needle" err.txt || fail "$* error lacks '$needle': $(cat err.txt)"
}

"$GEN" --out=data --classes=4 --train_per_class=3 --test_per_class=1 --seed=1 \
  --min_frames=24 --max_frames=32 --min_short_side=64 --max_short_side=72 >gen.txt 2>&1 \
  || { cat gen.txt; exit 1; }
# The same options again: nothing is rewritten.
stamp=$(stat -c %Y.%s data/trainlist01.txt)
"$GEN" --out=data --classes=4 --train_per_class=3 --test_per_class=1 --seed=1 \
  --min_frames=24 --max_frames=32 --min_short_side=64 --max_short_side=72 >gen2.txt 2>&1 \
  || fail "regenerating with the same options failed: $(cat gen2.txt)"
grep -q "up to date" gen2.txt || fail "same options not reported up to date: $(cat gen2.txt)"
[ "$(stat -c %Y.%s data/trainlist01.txt)" = "$stamp" ] || fail "an up-to-date dataset was rewritten"
# Other options into the same folder: refused, naming the option; --overwrite replaces.
cp -r data data_other
expect_error 2 "background_pool: the folder has 8, these options give 3" -- "$GEN" \
  --out=data_other --classes=4 --train_per_class=3 --test_per_class=1 --seed=1 \
  --min_frames=24 --max_frames=32 --min_short_side=64 --max_short_side=72 --background_pool=3
"$GEN" --out=data_other --classes=2 --train_per_class=1 --test_per_class=1 --seed=1 \
  --min_frames=24 --max_frames=32 --min_short_side=64 --max_short_side=72 --overwrite \
  >gen3.txt 2>&1 || fail "--overwrite failed: $(cat gen3.txt)"
[ "$(ls data_other | wc -l)" -eq 6 ] || fail "--overwrite left old files: $(ls data_other)"
grep -q "^background_pool=8$" data/synth_actions.txt || fail "synth_actions.txt lacks the pool size"

cat > exp.pbtxt <<'PB'
name: "cli"
dataset {
  ucf101 { root: "data" }
  clip { num_frames: 4 stride: 2 decode_short_side: 48 crop_size: 32 }
  loader { num_workers: 1 }
}
backbone { r3d18 { width_multiplier: 0.0625 } }
trainer { supervised {} labeled_batch_size: 2 }
optimizer { adam { lr: 0.001 } }
schedule { steps: 400 checkpoint_every: 2 log_every: 2 cosine {} }
evaluation { num_clips: 2 batch_size: 4 }
PB

# Bad configs: unknown field, out-of-range value, missing file -> exit 2.
expect_error 2 "learning_rate" -- "$BIN" --config=exp.pbtxt --run_dir=r0 \
  --override='learning_rate: 1'
expect_error 2 "dataset.labeled_fraction" -- "$BIN" --config=exp.pbtxt --run_dir=r0 \
  --override='dataset { labeled_fraction: 2 }'
expect_error 2 "--learning_rate" -- "$BIN" --config=exp.pbtxt --learning_rate=3
expect_error 2 "nope.pbtxt" -- "$BIN" --config=nope.pbtxt --run_dir=r0
# A component option (checked by the component's registered Validate) and a
# bad option in the last stage of a pipeline fail when the config is loaded,
# before any stage runs or anything is written, naming the full field path.
expect_error 2 "config field trainer.supervised.label_smoothing = 1: must be in [0, 1)" -- \
  "$BIN" --config=exp.pbtxt --run_dir=r0 --override='trainer { supervised { label_smoothing: 1 } }'
expect_error 2 "config field timebalance.pretrain_distinctive.trainer.ssl.objective.tclr.temperature = -1: must be > 0" -- \
  "$BIN" --config="$CONFIGS/timebalance_r3d18tiny_synth_ci.pbtxt" --run_dir=tb_bad \
  --override='timebalance { pretrain_distinctive { trainer { ssl { objective { tclr { temperature: -1 } } } } } }'
[ ! -e tb_bad ] || fail "a rejected pipeline config wrote $(ls -R tb_bad)"
# Missing dataset folder and missing video -> exit 1 naming them.
expect_error 1 "missing_root" -- "$BIN" --config=exp.pbtxt --run_dir=r0 \
  --override='dataset { ucf101 { root: "missing_root" } }'
cp -r data data_broken
victim=$(head -1 data_broken/trainlist01.txt | cut -d' ' -f1)
rm "data_broken/$victim"
expect_error 1 "$(basename "$victim")" -- "$BIN" --config=exp.pbtxt --run_dir=r0 \
  --override='dataset { ucf101 { root: "data_broken" } }'
# The same missing video at run time (file checks off) is named by the loader.
expect_error 1 "$(basename "$victim")" -- "$BIN" --config=exp.pbtxt --run_dir=r1 \
  --override='dataset { ucf101 { root: "data_broken" } check_files: false labeled_fraction: 1 }'

# The shipped CI-sized config runs end to end on the tiny tree.
"$BIN" --config="$TEST_SRCDIR/timebalance/configs/supervised_r3d18tiny_8x4_synth_ci.pbtxt" \
  --run_dir=ci_run --override='dataset { ucf101 { root: "data" } }' >ci.txt 2>&1 \
  || fail "shipped CI config failed: $(tail -3 ci.txt)"
grep -q 'test: 4 videos x 2 clips' ci.txt || fail "CI config did not evaluate: $(tail -3 ci.txt)"

# bf16 autocast trains and evaluates too.
"$BIN" --config="$TEST_SRCDIR/timebalance/configs/supervised_r3d18tiny_8x4_synth_ci.pbtxt" \
  --run_dir=bf16_run --override='dataset { ucf101 { root: "data" } } precision: BF16' \
  >bf16.txt 2>&1 || fail "bf16 run failed: $(tail -3 bf16.txt)"
grep -q 'precision: BF16' bf16_run/config.pbtxt || fail "resolved config lacks precision"

# Interrupt with SIGINT once a checkpoint exists, then resume.
"$BIN" --config=exp.pbtxt --run_dir=run >run1.txt 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  ls run/checkpoints/ckpt_*.pt >/dev/null 2>&1 && break
  sleep 0.1
done
sleep 0.5
kill -INT "$pid"
wait "$pid"
rc=$?
[ "$rc" -eq 130 ] || fail "interrupted run exited $rc, want 130: $(tail -3 run1.txt)"
stopped=$(ls run/checkpoints | grep -E '^ckpt_[0-9]+\.pt$' | sed -E 's/ckpt_0*([0-9]+)\.pt/\1/' | sort -n | tail -1)
[ -n "$stopped" ] && [ "$stopped" -gt 0 ] || fail "no checkpoint after interrupt"
# Without --resume an existing run is not overwritten.
expect_error 1 "--resume" -- "$BIN" --config=exp.pbtxt --run_dir=run
"$BIN" --config=exp.pbtxt --run_dir=run --resume --override='schedule { steps: 12 }' \
  >run2.txt 2>&1 || fail "resumed run failed: $(tail -3 run2.txt)"
grep -q "resumed from .* at step $stopped" run2.txt || fail "no resume message: $(cat run2.txt)"
if [ "$stopped" -lt 12 ]; then
  grep -q "trained steps $stopped\.\.12" run2.txt || fail "step count did not continue"
  first_logged=$(grep -oE '^step [0-9]+' run2.txt | head -1 | cut -d' ' -f2)
  [ "$first_logged" -gt "$stopped" ] || fail "first logged step $first_logged <= $stopped"
fi
grep -q '"top1"' run/results.json || fail "no results.json"
grep -q 'num_classes: 4' run/config.pbtxt || fail "resolved config lacks num_classes"

# Every run writes TensorBoard events next to metrics.jsonl.
ls run/events.out.tfevents.* >/dev/null 2>&1 || fail "no TensorBoard event file in run/"

# Non-finite loss: an absurd learning rate makes the loss NaN or infinite
# after the first update; the run stops before updating the model, exit 1,
# naming the step and the term; the last good checkpoint is kept.
"$BIN" --config=exp.pbtxt --run_dir=nan_run --override='optimizer { adam { lr: 1e30 } } schedule { steps: 8 checkpoint_every: 1 }' \
  >nan.txt 2>nan_err.txt
rc=$?
[ "$rc" -eq 1 ] || fail "a NaN run exited $rc, want 1: $(tail -3 nan_err.txt)"
grep -qE "timebalance: error: step [0-9]+: the loss is (-?nan|-?inf)" nan_err.txt \
  || fail "NaN error lacks the step: $(cat nan_err.txt)"
grep -qE "(non-finite terms: .*loss_ce|gradients)" nan_err.txt || fail "NaN error lacks the term: $(cat nan_err.txt)"
grep -q "Last good checkpoint: nan_run/checkpoints/ckpt_" nan_err.txt \
  || fail "NaN error lacks the last good checkpoint: $(cat nan_err.txt)"
# ...or tolerates a few such steps when asked, counting them.
"$BIN" --config=exp.pbtxt --run_dir=nan_skip --override='optimizer { adam { lr: 1e30 } } schedule { steps: 6 log_every: 6 } trainer { skip_nonfinite_steps: 10 }' \
  >nan_skip.txt 2>&1 || fail "skip_nonfinite_steps run failed: $(tail -3 nan_skip.txt)"
grep -q '"nonfinite_steps": [1-9]' nan_skip/metrics.jsonl || fail "skipped steps not counted: $(cat nan_skip/metrics.jsonl)"

# Storage fault: a file-size limit makes the next checkpoint write fail
# (EFBIG); the run exits 1 naming the file, and the previous checkpoint still
# loads: a resume without the limit continues from it.
"$BIN" --config=exp.pbtxt --run_dir=full --override='schedule { steps: 2 checkpoint_every: 2 }' >full1.txt 2>&1 \
  || fail "first leg failed: $(tail -3 full1.txt)"
(trap '' XFSZ; ulimit -f 64; exec "$BIN" --config=exp.pbtxt --run_dir=full --resume \
  --override='schedule { steps: 4 checkpoint_every: 2 }') >full2.txt 2>full2_err.txt
rc=$?
[ "$rc" -eq 1 ] || fail "a full disk exited $rc, want 1: $(cat full2_err.txt)"
grep -q "ckpt_00000004.pt" full2_err.txt || fail "the write error does not name the checkpoint: $(cat full2_err.txt)"
"$BIN" --config=exp.pbtxt --run_dir=full --resume --override='schedule { steps: 4 checkpoint_every: 2 }' \
  >full3.txt 2>&1 || fail "resume after the storage fault failed: $(tail -3 full3.txt)"
grep -q "resumed from full/checkpoints/ckpt_00000002.pt at step 2" full3.txt \
  || fail "did not resume from the last good checkpoint: $(cat full3.txt)"

# Two processes on one run directory: the second is refused, naming the first.
"$BIN" --config=exp.pbtxt --run_dir=busy --override="schedule { steps: 100000 }" >busy1.txt 2>&1 &
pid=$!
for _ in $(seq 1 300); do [ -s busy/lock ] && break; sleep 0.1; done
expect_error 1 "run directory busy is in use by pid $pid on host" -- \
  "$BIN" --config=exp.pbtxt --run_dir=busy --resume
kill -9 "$pid"; wait "$pid" 2>/dev/null

if [ "$failures" -ne 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "all CLI checks passed"
