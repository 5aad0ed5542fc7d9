#!/usr/bin/env bash
# tools/claims_study.py end to end on the claims study's CI twin
# (configs/timebalance_claims_r3d18tiny_synth_ci.pbtxt) with a 2-class
# SynthActions: the learning curve, the budget it picks (recomputed here from
# the stage results), TimeBalance and the fixed-0.5 ablation reusing the
# teachers, the table, a rerun that trains nothing, and bad arguments.
set -uo pipefail
source "$TEST_SRCDIR/timebalance/tests/testlib.sh"
CONFIG="$ROOT/configs/timebalance_claims_r3d18tiny_synth_ci.pbtxt"
STUDY="$ROOT/tools/claims_study.py"
tb_workdir claims
tb_synth data 2 6 2 3

study() {
  /usr/bin/python3 "$STUDY" --config="$CONFIG" --data=data --out=out --budgets=2,3 \
    --curve_seeds=0 --seeds=0,1 --jobs=2 --bin="$BIN" "$@"
}
study >study.txt 2>&1
rc=$?
cat study.txt
[ "$rc" -eq 0 ] || { echo "FAIL: the study exited $rc"; tail -30 out/logs/*.log; exit 1; }

# The budget: the smallest one whose fine-tuned SSL teacher beats the
# supervised baseline (seed 0 only here), else the largest.
want=$(/usr/bin/python3 - <<'PY'
import json
top1 = lambda d, s: json.load(open(f"out/{d}/stages/{s}/results.json"))["test"]["top1"]
sup = top1("supervised_s0", "supervised")
pick = 3
for b in (2, 3):
    if max(top1(f"b{b}_s0", "finetune_invariant"), top1(f"b{b}_s0", "finetune_distinctive")) > sup:
        pick = b
        break
print(pick)
PY
)
grep -q "^Claims at $want pretraining steps" out/claims.md \
  || fail "claims budget is not $want: $(grep '^Claims at' out/claims.md)"
for b in 2 3; do
  grep -q "^| $b | " out/claims.md || fail "learning-curve row for budget $b missing"
done
for row in "supervised (random init)" "invariant teacher" "distinctive teacher" \
    "TimeBalance student, temporal-similarity mixing" "student with fixed 0.5 mixing" \
    "student beats supervised" "temporal-similarity mixing beats fixed 0.5 mixing"; do
  grep -qF "| $row |" out/claims.md || fail "claims.md lacks the row '$row'"
done
[ "$(grep -c '^| [A-Za-z]* | [+-][0-9.]* ± ' out/claims.md)" -eq 2 ] \
  || fail "per-class table does not have 2 classes"
# The student's number in the table is the one of the run's results.json.
student=$(/usr/bin/python3 -c "
import json
v = [100 * json.load(open(f'out/b${want}_s{s}/results.json'))['student']['top1'] for s in (0, 1)]
print(f'{sum(v) / 2:.1f}')")
grep -qF "| TimeBalance student, temporal-similarity mixing | $student ± " out/claims.md \
  || fail "student mean $student not in the table"
grep -q 'temporal_similarity' "out/b${want}_s0/results.json" || fail "full run not temporal-similarity"
grep -q 'fixed_weight { weight: 0.5 }' "out/b${want}_s0_fixed/results.json" \
  || fail "ablation run is not fixed 0.5 mixing"
# The ablation reused the teachers and the baseline, and reran score and student.
log="out/logs/b${want}_s0_fixed.log"
for s in pretrain_invariant pretrain_distinctive finetune_invariant finetune_distinctive supervised; do
  grep -q "stage $s: up to date" "$log" || fail "ablation did not reuse $s"
done
for s in score distill; do
  grep -q "stage $s: running" "$log" || fail "ablation did not rerun $s"
done

# A rerun trains nothing and writes the same table.
cp out/claims.md first.md
before=$(cat out/logs/*.log | grep -c ': running (')
study >rerun.txt 2>&1 || fail "rerun exited $?: $(tail -5 rerun.txt)"
after=$(cat out/logs/*.log | grep -c ': running (')
[ "$before" -eq "$after" ] || fail "the rerun ran $((after - before)) stages"
cmp -s first.md out/claims.md || fail "the rerun's table differs"

# Bad arguments: exit 2, naming the flag.
study --budgets=2,x >bad.txt 2>&1; rc=$?
[ "$rc" -eq 2 ] && grep -q -- '--budgets' bad.txt || fail "--budgets=2,x: exit $rc: $(cat bad.txt)"
study --curve_seeds=5 >bad.txt 2>&1; rc=$?
[ "$rc" -eq 2 ] && grep -q -- '--curve_seeds' bad.txt || fail "--curve_seeds=5: exit $rc: $(cat bad.txt)"

tb_finish "claims study test"
