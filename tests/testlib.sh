# Sourced by the shell end-to-end tests (tests/*_test.sh) for what they all
# do first: the binaries' paths, a failure counter, a working directory in
# $TEST_TMPDIR and a small SynthActions dataset.
#
#   source "$TEST_SRCDIR/timebalance/tests/testlib.sh"
#   tb_workdir parallel                      # cd $TEST_TMPDIR/parallel
#   tb_synth data 2 6 2 5                    # out classes train/class test/class seed
#   ... fail "what went wrong" ...
#   tb_term_after_step $! run/logs/x.log; rc=$?   # a SIGTERM drill
#   tb_finish "parallel pipeline test"       # exit 1 when anything failed
ROOT="$TEST_SRCDIR/timebalance"
BIN="$ROOT/tools/timebalance"
GEN="$ROOT/datasets/synthetic/make_synthetic"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

tb_workdir() { mkdir -p "$TEST_TMPDIR/$1" && cd "$TEST_TMPDIR/$1" || exit 1; }

# tb_synth OUT CLASSES TRAIN_PER_CLASS TEST_PER_CLASS SEED [FLAG...]:
# videos of 40-48 frames, short side 64-72 (later flags override these).
# Exits the test, showing the generator's output, when it fails.
tb_synth() {
  local out=$1 classes=$2 train=$3 test=$4 seed=$5
  shift 5
  "$GEN" --out="$out" --classes="$classes" --train_per_class="$train" \
    --test_per_class="$test" --seed="$seed" --min_frames=40 --max_frames=48 \
    --min_short_side=64 --max_short_side=72 "$@" >"gen_$out.txt" 2>&1 \
    || { cat "gen_$out.txt"; echo "FAIL: make_synthetic --out=$out"; exit 1; }
}

# tb_term_after_step PID LOG: SIGTERM to PID once LOG shows a training step
# line (waiting up to 60 s), then waits for PID; returns its exit status.
tb_term_after_step() {
  local pid=$1 log=$2
  for _ in $(seq 1 600); do
    grep -q '^step' "$log" 2>/dev/null && break
    sleep 0.1
  done
  kill -TERM "$pid"
  wait "$pid"
}

# tb_finish NAME: exit 1 with the count when anything failed.
tb_finish() {
  [ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
  echo "$1: all checks passed"
}
