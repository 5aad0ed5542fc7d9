#!/usr/bin/env bash
# //tools:compare end to end on a tiny generated SynthActions tree: the CI
# comparison (every method and the TimeBalance pipeline, 3 steps each)
# writes a table with a number in every row; a second run reuses every
# cell; changing one method's config reruns that cell only; an unknown
# method name is a one-line usage error (exit 2). Sharding: --shard=0/2 and
# --shard=1/2 run in parallel into one folder, then --collect, give the
# unsharded run's tables (wall times aside); a cell whose lock another
# process holds is skipped, never run twice.
set -uo pipefail

BIN="$TEST_SRCDIR/timebalance/tools/compare"
GEN="$TEST_SRCDIR/timebalance/datasets/synthetic/make_synthetic"
FLOW="$TEST_SRCDIR/timebalance/tools/compute_flow"
CONFIG="$TEST_SRCDIR/timebalance/configs/compare/synth_ci.pbtxt"
WORK="$TEST_TMPDIR/compare"
mkdir -p "$WORK"
cd "$WORK"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

"$GEN" --out=data --classes=4 --train_per_class=4 --test_per_class=1 --seed=1 \
  --min_frames=24 --max_frames=32 --min_short_side=48 --max_short_side=56 >gen.txt 2>&1 \
  || { cat gen.txt; exit 1; }
# The TV-L1 flow of every video, for MvPL's flow view and MotionFit.
(cd data && find . -name '*.avi' | sed 's|^\./||' | sort) > videos.txt
"$FLOW" --videos=videos.txt --root=data --out=data/flow --threads=2 --short_side=48 \
  >flow.txt 2>&1 || { tail -5 flow.txt; exit 1; }

# The config's methods in matrix order. SD and MT+SD run in their teacher
# Supervised's group; every other method is a group of its own.
methods=(Supervised PseudoLabel MeanTeacher FixMatch TG-FixMatch MvPL CMPL S4L SD MT+SD TCL
  ActorCM MotionFit TACL VideoSemi MemDPC TimeBalance)
n=${#methods[@]}
grep -c "^  name: \|^methods { name: " "$CONFIG" | grep -qx "$n" \
  || fail "synth_ci.pbtxt has $(grep -c "^  name: \|^methods { name: " "$CONFIG") methods, this test lists $n"
# Shards take groups round-robin: shard 0 the even groups.
shard0=0 group=0
for method in "${methods[@]}"; do
  case "$method" in SD | MT+SD) continue ;; esac
  size=1
  [ "$method" = Supervised ] && size=3
  [ $((group % 2)) -eq 0 ] && shard0=$((shard0 + size))
  group=$((group + 1))
done
shard1=$((n - shard0))

# One thread, as each shard below uses, so the shards' cells are bit-equal.
"$BIN" --config="$CONFIG" --out=out --num_threads=1 >run1.txt 2>&1 || { tail -30 run1.txt; exit 1; }
grep -q "$n cells run, 0 reused" run1.txt || fail "first run: $(tail -3 run1.txt)"
for method in "${methods[@]}"; do
  # "| <method> | r3d18 (width ...) | params | 4 | steps | 12.5 (1) | <time> |"
  grep -qE "^\| ${method//+/\\+} \| r3d18 \(width 0.0625\) \| [0-9.]+ \| 4 \| [0-9]+ \| [0-9.]+ \(1\) \| [0-9ms]+ \|$" \
    out/comparison.md || fail "no result row for $method: $(grep -F "| $method |" out/comparison.md)"
done
# MemDPC: its pretraining ran inside the cell and initialised the fine-tuning.
memdpc=$(ls -d out/cells/memdpc/f25_s0_* | head -1)
[ -f "$memdpc/pretrain/pretrain_done.pbtxt" ] || fail "MemDPC: no pretrain/pretrain_done.pbtxt in $memdpc"
grep -q "memdpc" "$memdpc/pretrain/config.pbtxt" || fail "MemDPC: the pretraining run is not MemDPC"
grep -qE "^init_checkpoint: \".*/pretrain/" "$memdpc/config.pbtxt" \
  || fail "MemDPC: the fine-tuning run's init_checkpoint is not the pretraining's: $(grep init_checkpoint "$memdpc/config.pbtxt")"
# MemDPC: its pretraining ran inside the cell and initialised the fine-tuning.
memdpc=$(ls -d out/cells/memdpc/f25_s0_* | head -1)
[ -f "$memdpc/pretrain/pretrain_done.pbtxt" ] || fail "MemDPC: no pretrain/pretrain_done.pbtxt in $memdpc"
grep -q "memdpc" "$memdpc/pretrain/config.pbtxt" || fail "MemDPC: the pretraining run is not MemDPC"
grep -qE "^init_checkpoint: \".*/pretrain/" "$memdpc/config.pbtxt" \
  || fail "MemDPC: the fine-tuning run's init_checkpoint is not the pretraining's: $(grep init_checkpoint "$memdpc/config.pbtxt")"
grep -q "Labeled lists" out/comparison.md || fail "table lacks the labeled-list hashes"
[ "$(wc -l < out/cells.csv)" -eq $((n + 1)) ] \
  || fail "cells.csv has $(wc -l < out/cells.csv) lines, want $((n + 1))"
head -1 out/comparison.csv | grep -q "^method,backbone,params,frames,steps,top1_25_mean,top1_25_std,top1_25_n" \
  || fail "comparison.csv header: $(head -1 out/comparison.csv)"

# Sharded: nothing finished yet -> --collect lists all cells, exit 1.
"$BIN" --config="$CONFIG" --out=sharded --collect >collect0.txt 2>collect0.err
rc=$?
[ "$rc" -eq 1 ] || fail "--collect on an empty folder exited $rc, want 1"
grep -q "$n cells not finished: Supervised, 25% labels, seed 0;" collect0.err \
  || fail "--collect did not list the missing cells: $(cat collect0.err)"
"$BIN" --config="$CONFIG" --out=sharded --shard=0/2 --num_threads=1 >shard0.txt 2>&1 &
pid0=$!
"$BIN" --config="$CONFIG" --out=sharded --shard=1/2 --num_threads=1 >shard1.txt 2>&1
rc1=$?
wait $pid0
rc0=$?
[ "$rc0" -eq 0 ] && [ "$rc1" -eq 0 ] || { tail -20 shard0.txt shard1.txt; fail "shards exited $rc0 / $rc1"; }
ran0=$(sed -n 's/.*compare: \([0-9]*\) cells run.*/\1/p' shard0.txt)
ran1=$(sed -n 's/.*compare: \([0-9]*\) cells run.*/\1/p' shard1.txt)
[ "$ran0/$ran1" = "$shard0/$shard1" ] || fail "shards ran $ran0 + $ran1 cells, want $shard0 + $shard1"
grep -q "SD, 25% labels, seed 0: running" shard0.txt || fail "SD did not run with its teacher's shard"
"$BIN" --config="$CONFIG" --out=sharded --collect >collect.txt 2>collect.err \
  || fail "--collect after both shards: $(cat collect.err)"
grep -q "compare: $n cells finished" collect.txt || fail "collect: $(tail -2 collect.txt)"
# The same tables: drop the wall-time columns (the last of comparison.csv,
# seconds in cells.csv) and the Markdown table's last column.
cut -d, -f1-8 out/comparison.csv > want.csv
cut -d, -f1-8 sharded/comparison.csv > got.csv
cmp -s want.csv got.csv || fail "sharded comparison.csv differs: $(diff want.csv got.csv)"
cut -d, -f1-5,7- out/cells.csv | sort > want_cells.csv
cut -d, -f1-5,7- sharded/cells.csv | sort > got_cells.csv
cmp -s want_cells.csv got_cells.csv || fail "sharded cells.csv differs: $(diff want_cells.csv got_cells.csv)"
sed -E 's/\| [^|]* \|$//' out/comparison.md > want.md
sed -E 's/\| [^|]* \|$//' sharded/comparison.md > got.md
cmp -s want.md got.md || fail "sharded comparison.md differs: $(diff want.md got.md)"

# A cell another process holds is skipped, not run twice.
cell=$(ls -d out/cells/supervised/f25_s0_* | head -1)
mkdir -p locked/cells/supervised
flock "locked/cells/supervised/$(basename "$cell").lock" sleep 60 &
holder=$!
sleep 0.5
"$BIN" --config="$CONFIG" --out=locked --methods=Supervised >lock.txt 2>&1 || fail "locked cell: $(tail -3 lock.txt)"
kill $holder 2>/dev/null; wait $holder 2>/dev/null
grep -q "running elsewhere" lock.txt || fail "a locked cell was not skipped: $(cat lock.txt)"
grep -q "0 cells run, 0 reused, 1 running elsewhere" lock.txt || fail "locked: $(tail -1 lock.txt)"
"$BIN" --config="$CONFIG" --out=out --shard=2/2 >bad.txt 2>bad.err
[ $? -eq 2 ] && grep -q "is not i/N" bad.err || fail "--shard=2/2: $(cat bad.err)"

"$BIN" --config="$CONFIG" --out=out --num_threads=2 >run2.txt 2>&1 || { tail -30 run2.txt; exit 1; }
grep -q "0 cells run, $n reused" run2.txt || fail "second run did not reuse: $(tail -3 run2.txt)"

# A changed FixMatch threshold: only FixMatch runs again.
sed "s|trainer { fixmatch { schedule { warmup_steps: 1 } } }|trainer { fixmatch { schedule { warmup_steps: 1 } pseudo_label { threshold: 0.5 } } }|" \
  "$CONFIG" > changed.pbtxt
grep -q "threshold: 0.5" changed.pbtxt || fail "sed did not change the config"
"$BIN" --config=changed.pbtxt --out=out --num_threads=2 >run3.txt 2>&1 || { tail -30 run3.txt; exit 1; }
grep -q "1 cells run, $((n - 1)) reused" run3.txt || fail "changed config: $(tail -3 run3.txt)"
grep -q "FixMatch, 25% labels, seed 0: running" run3.txt || fail "FixMatch was not rerun"

# Running one method (SD, whose teacher is the finished Supervised cell)
# reuses it and still writes every finished row into the table.
"$BIN" --config=changed.pbtxt --out=out --methods=SD >run4.txt 2>&1 || { tail -30 run4.txt; exit 1; }
grep -q "0 cells run, 1 reused" run4.txt || fail "--methods=SD: $(tail -3 run4.txt)"
rows=$(grep -cE '^\| [^|]+ \| r3d18 .* [0-9.]+ \(1\) \|' out/comparison.md)
[ "$rows" -eq "$n" ] || fail "--methods=SD table has $rows result rows, want $n"

"$BIN" --config="$CONFIG" --out=out --methods=NoSuchMethod >out4.txt 2>err4.txt
rc=$?
[ "$rc" -eq 2 ] || fail "unknown method exited $rc, want 2"
grep -q "no method named \"NoSuchMethod\"" err4.txt || fail "unknown method error: $(cat err4.txt)"

if [ "$failures" -ne 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "compare_test: all checks passed"
