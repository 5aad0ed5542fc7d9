#!/usr/bin/env bash
# //tools:compare end to end on a tiny generated SynthActions tree: the CI
# comparison (every method and the TimeBalance pipeline, 3 steps each)
# writes a table with a number in every row; a second run reuses every
# cell; changing one method's config reruns that cell only; an unknown
# method name is a one-line usage error (exit 2).
set -uo pipefail

BIN="$TEST_SRCDIR/timebalance/tools/compare"
GEN="$TEST_SRCDIR/timebalance/datasets/synthetic/make_synthetic"
CONFIG="$TEST_SRCDIR/timebalance/configs/compare/synth_ci.pbtxt"
WORK="$TEST_TMPDIR/compare"
mkdir -p "$WORK"
cd "$WORK"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

"$GEN" --out=data --classes=4 --train_per_class=4 --test_per_class=1 --seed=1 \
  --min_frames=24 --max_frames=32 --min_short_side=48 --max_short_side=56 >gen.txt 2>&1 \
  || { cat gen.txt; exit 1; }

"$BIN" --config="$CONFIG" --out=out --num_threads=2 >run1.txt 2>&1 || { tail -30 run1.txt; exit 1; }
grep -q "11 cells run, 0 reused" run1.txt || fail "first run: $(tail -3 run1.txt)"
for method in Supervised PseudoLabel MeanTeacher FixMatch TG-FixMatch MvPL CMPL S4L SD \
    MT+SD TimeBalance; do
  # "| <method> | r3d18 (width ...) | params | 4 | steps | 12.5 (1) | <time> |"
  grep -qE "^\| ${method//+/\\+} \| r3d18 \(width 0.0625\) \| [0-9.]+ \| 4 \| [0-9]+ \| [0-9.]+ \(1\) \| [0-9ms]+ \|$" \
    out/comparison.md || fail "no result row for $method: $(grep -F "| $method |" out/comparison.md)"
done
grep -q "Labeled lists" out/comparison.md || fail "table lacks the labeled-list hashes"
[ "$(wc -l < out/cells.csv)" -eq 12 ] || fail "cells.csv has $(wc -l < out/cells.csv) lines, want 12"
head -1 out/comparison.csv | grep -q "^method,backbone,params,frames,steps,top1_25_mean,top1_25_std,top1_25_n" \
  || fail "comparison.csv header: $(head -1 out/comparison.csv)"

"$BIN" --config="$CONFIG" --out=out --num_threads=2 >run2.txt 2>&1 || { tail -30 run2.txt; exit 1; }
grep -q "0 cells run, 11 reused" run2.txt || fail "second run did not reuse: $(tail -3 run2.txt)"

# A changed FixMatch threshold: only FixMatch runs again.
sed "s|trainer { fixmatch { schedule { warmup_steps: 1 } } }|trainer { fixmatch { schedule { warmup_steps: 1 } pseudo_label { threshold: 0.5 } } }|" \
  "$CONFIG" > changed.pbtxt
grep -q "threshold: 0.5" changed.pbtxt || fail "sed did not change the config"
"$BIN" --config=changed.pbtxt --out=out --num_threads=2 >run3.txt 2>&1 || { tail -30 run3.txt; exit 1; }
grep -q "1 cells run, 10 reused" run3.txt || fail "changed config: $(tail -3 run3.txt)"
grep -q "FixMatch, 25% labels, seed 0: running" run3.txt || fail "FixMatch was not rerun"

# Running one method (SD, whose teacher is the finished Supervised cell)
# reuses it and still writes every finished row into the table.
"$BIN" --config=changed.pbtxt --out=out --methods=SD >run4.txt 2>&1 || { tail -30 run4.txt; exit 1; }
grep -q "0 cells run, 1 reused" run4.txt || fail "--methods=SD: $(tail -3 run4.txt)"
rows=$(grep -cE '^\| [^|]+ \| r3d18 .* [0-9.]+ \(1\) \|' out/comparison.md)
[ "$rows" -eq 11 ] || fail "--methods=SD table has $rows result rows, want 11"

"$BIN" --config="$CONFIG" --out=out --methods=NoSuchMethod >out4.txt 2>err4.txt
rc=$?
[ "$rc" -eq 2 ] || fail "unknown method exited $rc, want 2"
grep -q "no method named \"NoSuchMethod\"" err4.txt || fail "unknown method error: $(cat err4.txt)"

if [ "$failures" -ne 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "compare_test: all checks passed"
