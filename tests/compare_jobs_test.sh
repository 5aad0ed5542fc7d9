#!/usr/bin/env bash
# //tools:compare --jobs end to end (train/compare.h, train/stage_launcher.h)
# on a 3-method comparison (Supervised, SD taking its teacher from
# Supervised, PseudoLabel; 25% labels, seeds 0 and 1: 6 cells of 3 steps)
# over a tiny generated SynthActions:
#  1. --jobs=2 --num_threads=2: every cell in a child process with 1 thread
#     (recorded in its resolved config), a log per cell, SD never started
#     before its teacher's cell finished, at most 2 cells at a time;
#  2. the same cells one after another in this process at --num_threads=1
#     give bit-identical models, losses and top-1 (the plan, not the
#     scheduling, decides the numbers), and the same tables;
#  3. a rerun with --jobs=2 starts no child and reuses every cell;
#  4. a cell locked by another process is "running elsewhere" (no child), and
#     the cell taking its teacher from it is skipped;
#  5. a failing cell's error names it and shows the end of its log (exit 1);
#  6. SIGTERM to the parent stops the children, which checkpoint (exit 143,
#     no child left); the rerun finishes with the models of an uninterrupted
#     run;
#  7. --jobs with --collect, and --jobs=0, are usage errors (exit 2).
set -uo pipefail
source "$TEST_SRCDIR/timebalance/tests/testlib.sh"
COMPARE="$ROOT/tools/compare"
tb_workdir compare_jobs
tb_synth data 4 4 1 1 --min_frames=24 --max_frames=32 --min_short_side=48 --max_short_side=56

cat > jobs.pbtxt <<'EOF'
name: "compare --jobs test"
base {
  dataset {
    ucf101 { root: "data" split: 1 }
    clip { num_frames: 4 stride: 2 decode_short_side: 40 crop_size: 32 }
    augmentation { min_crop_scale: 0.5 max_crop_scale: 1.0 flip_probability: 0.5 }
    loader { num_workers: 1 prefetch_batches: 2 }
  }
  backbone { r3d18 { width_multiplier: 0.0625 } dropout: 0.2 }
  trainer { supervised {} labeled_batch_size: 2 unlabeled_batch_size: 2 }
  optimizer { adam { lr: 0.002 weight_decay: 1e-5 } }
  schedule { steps: 3 warmup_steps: 1 cosine {} checkpoint_every: 100 log_every: 50 }
  evaluation { num_clips: 2 crop_fraction: 0.8 batch_size: 20 }
  device: "cpu"
}
labeled_fractions: [0.25]
seeds: [0, 1]
methods { name: "Supervised" }
methods {
  name: "SD"
  override { trainer { self_distillation {} } }
  teacher_from: "Supervised"
}
methods {
  name: "PseudoLabel"
  override { trainer { pseudo_label { schedule { warmup_steps: 1 rampup_steps: 1 } } } }
}
EOF
CELLS="supervised_f25_s0 sd_f25_s0 pseudolabel_f25_s0 supervised_f25_s1 sd_f25_s1 pseudolabel_f25_s1"
celldir() {  # celldir OUT CELL: the cell's folder (cells/<slug>/f25_s<seed>_<fingerprint>)
  local slug=${2%_f25_s*} seed=${2##*_s}
  ls -d "$1/cells/$slug/f25_s${seed}_"* 2>/dev/null | head -1
}
numbers() {  # the model checksum, final losses and top-1 of every cell of run $1
  local c d
  for c in $CELLS; do
    d=$(celldir "$1" "$c")
    printf '%s %s %s %s\n' "$c" \
      "$(grep -o '"model_sha256": *"[0-9a-f]*"' "$d/results.json" | grep -o '[0-9a-f]\{64\}')" \
      "$(tail -1 "$d/metrics.jsonl" | grep -o '"loss_[a-z_]*": [-0-9.e]*' | tr '\n' ' ')" \
      "$(grep '^top1:' "$d/cell_done.pbtxt")"
  done
}
# The tables without wall times: the last column of comparison.md and
# comparison.csv, the seconds column of cells.csv.
tables() {
  sed -E 's/\| [^|]* \|$//' "$1/comparison.md"
  cut -d, -f1-8 "$1/comparison.csv"
  cut -d, -f1-5,7- "$1/cells.csv"
}

# 1. Two cells at a time, one thread each.
"$COMPARE" --config=jobs.pbtxt --out=par --jobs=2 --num_threads=2 >par.txt 2>&1
rc=$?
[ "$rc" -eq 0 ] || { cat par.txt; tail -n 20 par/logs/*.log; echo "FAIL: --jobs=2 exited $rc"; exit 1; }
grep -q "compare: 6 cells run, 0 reused, 0 running elsewhere" par.txt || fail "--jobs=2: $(tail -1 par.txt)"
for c in $CELLS; do
  grep -qF "cell $c: running in a child process (1 threads, log par/logs/$c.log)" par.txt \
    || fail "cell $c did not run in a child with 1 thread: $(grep "cell $c" par.txt)"
  grep -q ": running in par/cells/" "par/logs/$c.log" || fail "par/logs/$c.log does not show the cell"
  d=$(celldir par "$c")
  [ -f "$d/cell_done.pbtxt" ] || fail "$c: no cell_done.pbtxt"
  grep -q "^num_threads: 1\$" "$d/config.pbtxt" || fail "$c: resolved config lacks num_threads: 1"
done
line() { grep -nF "$1" par.txt | head -1 | cut -d: -f1; }
for s in 0 1; do
  done_at=$(line "cell supervised_f25_s$s: top-1")
  start_at=$(line "cell sd_f25_s$s: running in a child")
  [ -n "$done_at" ] && [ -n "$start_at" ] && [ "$done_at" -lt "$start_at" ] \
    || fail "sd_f25_s$s started before its teacher finished: $(grep -E "cell (supervised|sd)_f25_s$s:" par.txt)"
done
[ "$(sed -n '1,/: top-1 /p' par.txt | grep -c 'running in a child')" -le 2 ] \
  || fail "more than 2 cells started before the first finished: $(grep '^cell ' par.txt)"

# 2. The same plan one cell after another, in this process.
"$COMPARE" --config=jobs.pbtxt --out=seq --num_threads=1 >seq.txt 2>&1 || { cat seq.txt; fail "sequential run exited $?"; }
grep -q "compare: 6 cells run, 0 reused" seq.txt || fail "sequential: $(tail -1 seq.txt)"
grep -q "child process" seq.txt && fail "the sequential run started a child"
[ -d seq/logs ] && fail "the sequential run wrote child logs"
numbers par > par_numbers.txt
numbers seq > seq_numbers.txt
[ "$(grep -c ' [0-9a-f]\{64\} "loss_ce": [0-9.]* .*top1: ' par_numbers.txt)" -eq 6 ] \
  || fail "not every cell has a checksum, losses and top-1: $(cat par_numbers.txt)"
cmp -s par_numbers.txt seq_numbers.txt \
  || fail "--jobs=2 and sequential cells differ: $(diff par_numbers.txt seq_numbers.txt)"
tables par > par_tables.txt
tables seq > seq_tables.txt
cmp -s par_tables.txt seq_tables.txt || fail "the tables differ: $(diff par_tables.txt seq_tables.txt)"
grep -qE '^\| SD \| r3d18 .* \(2\) \|' par/comparison.md || fail "no SD row over 2 seeds: $(cat par/comparison.md)"

# 3. A rerun: every cell reused, no child.
"$COMPARE" --config=jobs.pbtxt --out=par --jobs=2 --num_threads=2 >rerun.txt 2>&1 || fail "rerun exited $?"
grep -q "compare: 0 cells run, 6 reused, 0 running elsewhere" rerun.txt || fail "rerun: $(tail -1 rerun.txt)"
grep -q "child process" rerun.txt && fail "the rerun started a child: $(grep 'child process' rerun.txt)"
tables par > rerun_tables.txt
cmp -s par_tables.txt rerun_tables.txt || fail "the rerun's tables differ: $(diff par_tables.txt rerun_tables.txt)"

# 4. A cell another process holds: running elsewhere; its SD cell waits.
mkdir -p locked/cells/supervised
flock "locked/cells/supervised/$(basename "$(celldir seq supervised_f25_s0)").lock" sleep 60 &
holder=$!
sleep 0.5
"$COMPARE" --config=jobs.pbtxt --out=locked --jobs=2 --num_threads=2 --methods=Supervised,SD --seeds=0 \
  >lock.txt 2>&1 || fail "locked: exited $?: $(tail -3 lock.txt)"
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
grep -q "Supervised, 25% labels, seed 0: running elsewhere" lock.txt || fail "the locked cell was not skipped: $(cat lock.txt)"
grep -q "SD, 25% labels, seed 0: skipped (teacher Supervised not finished)" lock.txt \
  || fail "SD was not skipped: $(cat lock.txt)"
grep -q "compare: 0 cells run, 0 reused, 1 running elsewhere" lock.txt || fail "locked: $(tail -1 lock.txt)"
grep -q "child process" lock.txt && fail "a child started for a locked cell"

# 5. A failing cell (its run directory cannot be created).
mkdir -p fail/cells/pseudolabel
touch "fail/cells/pseudolabel/$(basename "$(celldir seq pseudolabel_f25_s0)")"
"$COMPARE" --config=jobs.pbtxt --out=fail --jobs=2 --num_threads=2 --seeds=0 >fail.txt 2>fail.err
rc=$?
[ "$rc" -eq 1 ] || fail "a failing cell: exit $rc, want 1"
grep -q "compare: error: cell pseudolabel_f25_s0 (child process [0-9]*) exited with 1; the end of fail/logs/pseudolabel_f25_s0.log:" fail.err \
  || fail "the error does not name the cell and its log: $(cat fail.err)"
grep -q "cannot create run directory" fail.err || fail "the error lacks the log's tail: $(cat fail.err)"

# 6. SIGTERM mid-run, then the same command again; 150 steps per cell.
sed 's/schedule { steps: 3 warmup_steps: 1 cosine {} checkpoint_every: 100 log_every: 50 }/schedule { steps: 150 warmup_steps: 1 cosine {} checkpoint_every: 1000 log_every: 10 }/' \
  jobs.pbtxt > long.pbtxt
grep -q "steps: 150" long.pbtxt || fail "sed did not lengthen the schedule"
"$COMPARE" --config=long.pbtxt --out=full --num_threads=1 --methods=Supervised >full.txt 2>&1 \
  || { cat full.txt; fail "uninterrupted long run exited $?"; }
"$COMPARE" --config=long.pbtxt --out=term --jobs=2 --num_threads=2 --methods=Supervised >term.txt 2>term.err &
tb_term_after_step $! term/logs/supervised_f25_s0.log; rc=$?
[ "$rc" -eq 143 ] || fail "SIGTERM: parent exited $rc, want 143: $(cat term.err)"
grep -q "compare: interrupted; rerun the same command to continue" term.err || fail "SIGTERM: $(cat term.err)"
sleep 1
pgrep -f "out=term" >/dev/null && fail "children of the stopped run are still alive"
grep -q "interrupted: checkpoint written" term/logs/supervised_f25_s0.log \
  || fail "supervised_f25_s0 was not interrupted: $(tail -3 term/logs/supervised_f25_s0.log)"
"$COMPARE" --config=long.pbtxt --out=term --jobs=2 --num_threads=2 --methods=Supervised >resume.txt 2>&1 \
  || { cat resume.txt; fail "the rerun after SIGTERM exited $?"; }
grep -q "compare: 2 cells run" resume.txt || fail "rerun after SIGTERM: $(tail -1 resume.txt)"
grep -q "resumed from" term/logs/supervised_f25_s0.log || fail "supervised_f25_s0 did not resume"
CELLS="supervised_f25_s0 supervised_f25_s1"
[ "$(numbers term)" = "$(numbers full)" ] \
  || fail "the resumed cells differ from an uninterrupted run: $(diff <(numbers term) <(numbers full))"

# 7. Usage errors.
"$COMPARE" --config=jobs.pbtxt --out=par --collect --jobs=2 >collect.txt 2>collect.err
rc=$?
[ "$rc" -eq 2 ] && grep -q "takes no --shard, --methods, --fractions, --seeds or --jobs" collect.err \
  || fail "--collect --jobs=2: exit $rc: $(cat collect.err)"
"$COMPARE" --config=jobs.pbtxt --out=par --jobs=0 >zero.txt 2>zero.err
rc=$?
[ "$rc" -eq 2 ] && grep -q -- "--jobs=0: must be >= 1" zero.err || fail "--jobs=0: exit $rc: $(cat zero.err)"

tb_finish "compare --jobs test"
