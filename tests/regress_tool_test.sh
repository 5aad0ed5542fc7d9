#!/usr/bin/env bash
# //tools:regress as a user runs it, on a tiny suite of real runs: a suite
# without recorded values is refused; --update records them (comments and
# layout kept); a rerun reuses the finished runs and passes; an expected
# number moved by hand beyond its band fails (exit 1) with the entry named,
# and so does a changed checksum; a missing config or metric path is exit 2
# naming it; --jobs=2 shards a comparison's cells over child processes with
# the sequential run's values; the history file and the report of it are
# written.
set -uo pipefail

ROOT="$TEST_SRCDIR/timebalance"
REGRESS="$ROOT/tools/regress"
REPORT="$ROOT/tools/report"
WORK="$TEST_TMPDIR/regress"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

SMALL='dataset { clip { decode_short_side: 40 crop_size: 32 } loader { num_workers: 1 } } trainer { labeled_batch_size: 4 } schedule { steps: 4 warmup_steps: 1 log_every: 2 checkpoint_every: 2 } evaluation { num_clips: 1 }'
cat > suite.pbtxt <<EOF
# tiny suite of //tests:regress_tool_test
name: "tiny"
num_threads: 1
data { name: "d" classes: 4 train_per_class: 3 test_per_class: 1 seed: 3 smoke: true }
entries {
  name: "sup.top1"   # video top-1 in percent
  kind: DETERMINISTIC
  experiment { config: "configs/supervised_r3d18tiny_8x4_synth_ci.pbtxt" overrides: "$SMALL" data: "d" }
  seeds: [0]
  metric { json { path: "test.top1" } scale: 100 }
  tolerance { abs: 1 }
  expected { not_recorded: true }
}
entries {
  name: "sup.loss_ce.step4"
  kind: DETERMINISTIC
  experiment { config: "configs/supervised_r3d18tiny_8x4_synth_ci.pbtxt" overrides: "$SMALL" data: "d" }
  seeds: [0]
  metric { jsonl { step: 4 key: "loss_ce" } higher_is_better: false }
}
entries {
  name: "sup.model_sha256"
  kind: DETERMINISTIC
  experiment { config: "configs/supervised_r3d18tiny_8x4_synth_ci.pbtxt" overrides: "$SMALL" data: "d" }
  seeds: [0]
  metric { json { path: "model_sha256" } }
}
entries {
  name: "sup.top1.seeds"
  kind: STATISTICAL
  experiment { config: "configs/supervised_r3d18tiny_8x4_synth_ci.pbtxt" overrides: "$SMALL" data: "d" }
  seeds: [0, 1]
  metric { json { path: "test.top1" } scale: 100 }
  tolerance { abs: 30 std_multiplier: 2 }
}
entries {
  name: "perf.matmul"
  kind: PERFORMANCE
  performance {
    numerator { label: "matmul 64" calibration { op: MATMUL size: 64 iters: 5 } }
    denominator { label: "matmul 64 again" calibration { op: MATMUL size: 64 iters: 5 } }
    repeats: 3
  }
  # Two timings of one kernel: the ratio is about 1 on any machine.
  tolerance { rel: 0.9 }
}
EOF
cp suite.pbtxt suite.orig

run() {  # run NAME args...: stdout+stderr in NAME.txt, exit code in $rc
  local name="$1"; shift
  "$REGRESS" --root="$ROOT" --out="$WORK/out" "$@" >"$name.txt" 2>&1
  rc=$?
}

# 1. Nothing recorded: refused before anything runs, naming the entries.
run norecord --suite=suite.pbtxt
[ "$rc" -eq 2 ] || fail "unrecorded suite exited $rc, want 2: $(cat norecord.txt)"
grep -q "no recorded expected value yet (sup.top1, sup.loss_ce.step4" norecord.txt \
  || fail "unrecorded entries not named: $(cat norecord.txt)"
[ ! -d out/runs ] || fail "an unrecorded suite ran something"

# 2. --update records every value; the rest of the file is unchanged.
run update --suite=suite.pbtxt --update
[ "$rc" -eq 0 ] || fail "--update exited $rc: $(cat update.txt)"
grep -q "rewrote 5 expected values" update.txt || fail "no rewrite line: $(cat update.txt)"
grep -q '# tiny suite of //tests:regress_tool_test' suite.pbtxt || fail "comment lost"
grep -q 'name: "sup.top1"   # video top-1 in percent' suite.pbtxt || fail "trailing comment lost"
grep -q 'not_recorded' suite.pbtxt && fail "not_recorded left after --update"
grep -q 'text: "[0-9a-f]\{64\}"' suite.pbtxt || fail "no checksum recorded: $(cat suite.pbtxt)"
grep -q 'per_seed' suite.pbtxt || fail "no per-seed values recorded"
grep -q 'source: "regress --update"' suite.pbtxt || fail "no provenance"

# 3. A rerun at the same code reuses the runs and passes.
run pass --suite=suite.pbtxt
[ "$rc" -eq 0 ] || fail "rerun exited $rc: $(cat pass.txt)"
grep -q "^5 passed, 0 failed$" pass.txt || fail "no closing line: $(cat pass.txt)"
grep -q "0 cells run, 2 reused" pass.txt || fail "finished runs not reused: $(cat pass.txt)"

# 4. An expected number edited by hand beyond its band: exit 1, entry named.
/usr/bin/python3 - <<'PY'
import re
text = open("suite.pbtxt").read()
start = text.index('name: "sup.top1"')
m = re.compile(r"value: ([-0-9.e+]+)").search(text, start)
text = text[:m.start(1)] + repr(float(m.group(1)) + 10) + text[m.end(1):]
open("suite.pbtxt", "w").write(text)
PY
run moved --suite=suite.pbtxt
[ "$rc" -eq 1 ] || fail "moved expected value exited $rc, want 1: $(cat moved.txt)"
grep -E "^sup\.top1 .*FAIL regression" moved.txt >/dev/null \
  || fail "moved entry not reported as a regression: $(cat moved.txt)"
grep -q "^4 passed, 1 failed$" moved.txt || fail "closing line: $(cat moved.txt)"
# ... and 20 points below the measurement: an improvement, which fails too.
/usr/bin/python3 - <<'PY'
import re
text = open("suite.pbtxt").read()
start = text.index('name: "sup.top1"')
m = re.compile(r"value: ([-0-9.e+]+)").search(text, start)
text = text[:m.start(1)] + repr(float(m.group(1)) - 20) + text[m.end(1):]
open("suite.pbtxt", "w").write(text)
PY
run improved --suite=suite.pbtxt
[ "$rc" -eq 1 ] || fail "improvement exited $rc, want 1: $(cat improved.txt)"
grep -q "FAIL improvement beyond the band" improved.txt || fail "$(cat improved.txt)"

# 5. A changed checksum fails as "changed".
sed -i 's/text: "\([0-9a-f]\)/text: "0\1/' suite.pbtxt
run changed --suite=suite.pbtxt --entries=sup.model_sha256
[ "$rc" -eq 1 ] || fail "changed checksum exited $rc, want 1: $(cat changed.txt)"
grep -q "FAIL changed" changed.txt || fail "$(cat changed.txt)"

# 6. --update puts the measured values back; then everything passes again.
run update2 --suite=suite.pbtxt --update
[ "$rc" -eq 0 ] || fail "second --update exited $rc: $(cat update2.txt)"
run pass2 --suite=suite.pbtxt
[ "$rc" -eq 0 ] || fail "after --update exited $rc: $(cat pass2.txt)"

# 6b. Deterministic values of another machine kind are not compared here:
# skipped with a message, not failed; --update adds this kind's values and
# keeps the other kind's.
sed 's/machine_kind: "[^"]*"/machine_kind: "pdp11 NONE, LibTorch 0"/' suite.pbtxt > kind.pbtxt
run kind --suite=kind.pbtxt
[ "$rc" -eq 0 ] || fail "other machine kind exited $rc, want 0: $(cat kind.txt)"
grep -q "SKIP recorded on pdp11 NONE, LibTorch 0 only" kind.txt || fail "no skip line: $(cat kind.txt)"
grep -q "^1 passed, 0 failed, 4 skipped" kind.txt || fail "closing line: $(cat kind.txt)"
run kind_update --suite=kind.pbtxt --update
[ "$rc" -eq 0 ] || fail "--update on a new machine kind exited $rc: $(cat kind_update.txt)"
grep -q "other_machines" kind.pbtxt || fail "the other kind's values were dropped"
run kind_pass --suite=kind.pbtxt
grep -q "^5 passed, 0 failed$" kind_pass.txt || fail "after adding this kind: $(cat kind_pass.txt)"

# 7. A config that no longer exists, a metric path that is missing: exit 2.
sed 's#configs/supervised_r3d18tiny_8x4_synth_ci.pbtxt#configs/gone.pbtxt#' suite.pbtxt > gone.pbtxt
run gone --suite=gone.pbtxt
[ "$rc" -eq 2 ] || fail "missing config exited $rc, want 2: $(cat gone.txt)"
grep -q 'entry "sup.top1": config configs/gone.pbtxt does not exist' gone.txt || fail "$(cat gone.txt)"
sed 's#path: "test.top1"#path: "test.top9"#' suite.pbtxt > path.pbtxt
run path --suite=path.pbtxt --entries=sup.top1
[ "$rc" -eq 2 ] || fail "missing metric path exited $rc, want 2: $(cat path.txt)"
grep -q 'metric path test.top9' path.txt || fail "$(cat path.txt)"

# 7b. --jobs=2 on one comparison group splits its cells into shards run by
# child processes; the values equal a sequential run's exactly.
cat > cmp.pbtxt <<EOF
name: "tiny_cmp"
num_threads: 1
data { name: "d" classes: 4 train_per_class: 3 test_per_class: 1 seed: 3 smoke: true }
entries {
  name: "sup.cell"
  kind: DETERMINISTIC
  comparison { config: "configs/compare/synth_ci.pbtxt" data: "d" method: "Supervised" labeled_fraction: 0.25 }
  seeds: [0]
  metric { cell: "top1" scale: 100 }
}
entries {
  name: "fixmatch.cell"
  kind: DETERMINISTIC
  comparison { config: "configs/compare/synth_ci.pbtxt" data: "d" method: "FixMatch" labeled_fraction: 0.25 }
  seeds: [0]
  metric { cell: "top5" scale: 100 }
}
EOF
"$REGRESS" --root="$ROOT" --out="$WORK/out_par" --suite=cmp.pbtxt --update --jobs=2 >par.txt 2>&1
rc=$?
[ "$rc" -eq 0 ] || fail "--jobs=2 comparison exited $rc: $(cat par.txt)"
grep -q "(shard 1/2)" par.txt && grep -q "(shard 2/2)" par.txt \
  || fail "the comparison group was not split into shards: $(cat par.txt)"
"$REGRESS" --root="$ROOT" --out="$WORK/out_seq" --suite=cmp.pbtxt --jobs=1 >seq.txt 2>&1
rc=$?
[ "$rc" -eq 0 ] || fail "sequential rerun differs from the sharded one (exit $rc): $(cat seq.txt)"
grep -q "^2 passed, 0 failed$" seq.txt || fail "closing line: $(cat seq.txt)"
grep -q "shard" seq.txt && fail "--jobs=1 ran shards: $(cat seq.txt)"

# 8. The history (one line per entry and invocation) and its report.
lines=$(wc -l < out/history.jsonl)
[ "$lines" -ge 20 ] || fail "history.jsonl has $lines lines"
"$REPORT" out --out=report.html >report.txt 2>&1 || fail "report failed: $(cat report.txt)"
grep -q "sup.top1.seeds" report.html || fail "report lacks an entry"

[ "$failures" -eq 0 ] && echo "PASS" || { echo "$failures failure(s)"; exit 1; }
