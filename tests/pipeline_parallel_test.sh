#!/usr/bin/env bash
# timebalance.parallel_stages end to end (train/pipeline.h,
# train/stage_launcher.h) on the CI pipeline config with a 2-class
# SynthActions:
#  1. parallel_stages 2 on 2 threads: each stage in a child process as soon
#     as its inputs have finished and its threads fit, with the planned
#     thread count (2 / 2 = 1; the final stages distill and supervised 2,
#     alone) recorded in its resolved config, a log per stage, results.json
#     at the end, and never a stage started before its inputs finished;
#  2. a rerun skips every stage and starts no child;
#  3. the same plan run one stage at a time in one process (the thread counts
#     set per stage by hand) gives bit-identical models: the plan, not the
#     scheduling, decides the numbers;
#  4. SIGTERM to the parent stops the children, which checkpoint; --resume
#     finishes with the same models as an uninterrupted run;
#  5. SIGKILL of the parent leaves no child behind.
set -uo pipefail
source "$TEST_SRCDIR/timebalance/tests/testlib.sh"
CONFIG="$ROOT/configs/timebalance_r3d18tiny_synth_ci.pbtxt"
tb_workdir parallel
WORK="$PWD"
tb_synth data 2 6 2 5
DATA="dataset { ucf101 { root: \"$WORK/data\" } clip { decode_short_side: 40 crop_size: 32 } }"
STAGES="pretrain_invariant pretrain_distinctive supervised score finetune_invariant finetune_distinctive distill"

shas() {  # the model_sha256 of every training stage of run $1
  for s in $STAGES; do
    [ "$s" = score ] && continue
    printf '%s ' "$(grep -o '"model_sha256": *"[0-9a-f]*"' "$1/stages/$s/results.json" | grep -o '[0-9a-f]\{64\}')"
  done
}

# 1. The parallel run.
"$BIN" --config="$CONFIG" --run_dir=par --num_threads=2 \
  --override="$DATA timebalance { parallel_stages: 2 }" >par.txt 2>&1
rc=$?
[ "$rc" -eq 0 ] || { cat par.txt; tail -20 par/logs/*.log; echo "FAIL: parallel run exited $rc"; exit 1; }
for s in $STAGES; do
  n=1; case $s in distill|supervised) n=2 ;; esac
  grep -q "stage $s: running in a child process ($n threads" par.txt \
    || fail "stage $s did not run in a child with $n threads: $(grep "stage $s" par.txt)"
  [ -s "par/logs/$s.log" ] || fail "no log for $s"
  [ "$s" = score ] && continue
  grep -q "^num_threads: $n\$" "par/stages/$s/config.pbtxt" \
    || fail "$s: resolved config lacks num_threads: $n"
done
# The 2-thread stages ran alone: nothing started or ran beside them.
for s in distill supervised; do
  start=$(grep -n "stage $s: running in a child" par.txt | cut -d: -f1)
  done_at=$(grep -n "stage $s: done in" par.txt | cut -d: -f1)
  [ -n "$start" ] && [ -n "$done_at" ] && [ "$((done_at - start))" -eq 1 ] \
    || fail "$s did not run alone: $(sed -n "${start:-1},${done_at:-1}p" par.txt)"
  before=$(head -n "$(( ${start:-1} - 1 ))" par.txt)
  [ "$(grep -c 'running in a child' <<<"$before")" -eq "$(grep -c ': done in' <<<"$before")" ] \
    || fail "$s started while another stage ran"
done
# Order: a stage starts only after its inputs are done.
line() { grep -n "$1" par.txt | head -1 | cut -d: -f1; }
before() {  # $1 must be done before $2 starts
  local done_at start_at
  done_at=$(line "stage $1: done in"); start_at=$(line "stage $2: running in a child")
  [ -n "$done_at" ] && [ -n "$start_at" ] && [ "$done_at" -lt "$start_at" ] \
    || fail "$2 started before $1 was done: $(grep -E "stage ($1|$2):" par.txt)"
}
before pretrain_invariant score; before pretrain_distinctive score
before pretrain_invariant finetune_invariant; before pretrain_distinctive finetune_distinctive
for s in score finetune_invariant finetune_distinctive pretrain_distinctive; do before $s distill; done
# At most 2 at a time: the third start comes after the first finish.
[ "$(sed -n '1,/: done in/p' par.txt | grep -c 'running in a child')" -le 2 ] \
  || fail "more than 2 stages started before the first finished: $(cat par.txt)"
[ -s par/results.json ] || fail "no results.json after the parallel run"
grep -q 'timebalance: student top1' par.txt || fail "no summary line"

# 2. A rerun: everything up to date, no child.
"$BIN" --config="$CONFIG" --run_dir=par --num_threads=2 \
  --override="$DATA timebalance { parallel_stages: 2 }" >rerun.txt 2>&1 || fail "rerun exited $?"
[ "$(grep -c 'up to date' rerun.txt)" -eq 7 ] || fail "rerun did not skip 7 stages: $(cat rerun.txt)"
grep -q 'child process' rerun.txt && fail "rerun started a child"

# 3. The same plan, one stage at a time in this process.
"$BIN" --config="$CONFIG" --run_dir=seq --num_threads=1 --override="$DATA timebalance {
  pretrain_invariant { num_threads: 1 } pretrain_distinctive { num_threads: 1 }
  supervised_baseline { num_threads: 2 } finetune { num_threads: 1 } distill { num_threads: 2 } }" \
  >seq.txt 2>&1 || { cat seq.txt; fail "sequential run exited $?"; }
grep -q 'child process' seq.txt && fail "the sequential run started a child"
par_shas=$(shas par)
[ "$par_shas" = "$(shas seq)" ] || fail "parallel and sequential models differ: $par_shas vs $(shas seq)"
for s in $STAGES; do
  cmp -s <(grep fingerprint "par/stages/$s/stage_done.pbtxt") \
         <(grep fingerprint "seq/stages/$s/stage_done.pbtxt") || fail "$s: fingerprints differ"
done

# 4. SIGTERM mid-run, then --resume.
LONG="$DATA timebalance { parallel_stages: 2 pretrain_invariant { schedule { steps: 40 } }
  pretrain_distinctive { schedule { steps: 40 } } }"
"$BIN" --config="$CONFIG" --run_dir=full --num_threads=2 --override="$LONG" >full.txt 2>&1 \
  || { cat full.txt; fail "uninterrupted long run exited $?"; }
"$BIN" --config="$CONFIG" --run_dir=term --num_threads=2 --override="$LONG" >term.txt 2>&1 &
tb_term_after_step $! term/logs/pretrain_invariant.log; rc=$?
[ "$rc" -eq 143 ] || fail "SIGTERM: parent exited $rc, want 143: $(tail -5 term.txt)"
sleep 1
pgrep -f "run_dir=term" >/dev/null && fail "children of the stopped run are still alive"
grep -q 'interrupted' term/logs/pretrain_invariant.log || fail "pretrain_invariant was not interrupted"
"$BIN" --config="$CONFIG" --run_dir=term --num_threads=2 --override="$LONG" --resume >resume.txt 2>&1 \
  || { cat resume.txt; fail "--resume exited $?"; }
[ "$(shas term)" = "$(shas full)" ] || fail "resumed models differ from the uninterrupted run's"

# 5. SIGKILL of the parent: no orphan.
"$BIN" --config="$CONFIG" --run_dir=killed --num_threads=2 --override="$LONG" >killed.txt 2>&1 &
parent=$!
for _ in $(seq 1 600); do
  [ -e killed/logs/pretrain_invariant.log ] && break
  sleep 0.1
done
kill -KILL "$parent"
wait "$parent" 2>/dev/null
for _ in $(seq 1 50); do
  pgrep -f "run_dir=killed" >/dev/null || break
  sleep 0.1
done
pgrep -f "run_dir=killed" >/dev/null && { pkill -KILL -f "run_dir=killed"; fail "a child outlived its SIGKILLed parent"; }

tb_finish "parallel pipeline test"
