#!/usr/bin/env bash
# allocator_ab.sh: the tiny R3D-18's training speed under different allocators and
# optimizers, interleaved (a benchmark that prints numbers, not a test).
#
# Runs the supervised config (configs/supervised_r3d18tiny_8x4_synth_10pct.pbtxt) for
# --steps steps at 2 threads with a 2-clip evaluation once per variant per round, in the
# same order each round, under /usr/bin/time, and prints one line per run: wall, user and
# system seconds, peak RSS, minor page faults, and the run's last logged loss and test
# top-1 (every variant should give the same ones). Variants:
#   default   whatever the binary links (tcmalloc since third_party:tcmalloc)
#   jemalloc  Debian's libjemalloc2 preloaded (LD_PRELOAD; preloading puts it first)
#   tcmalloc  Debian's libtcmalloc-minimal4 preloaded
#   fused     optimizer { adam { fused: true } } with the default allocator
# Needs bazel-bin/tools/timebalance and the SynthActions data at data/synth_actions
# (bazel run //tools:make_synthetic -- --out=data/synth_actions --classes=10
#  --train_per_class=30 --test_per_class=10 --seed=0). To measure glibc's malloc, build
# the binary with --custom_malloc= (empty) and run the default variant.
#
#   tools/bench/allocator_ab.sh [--steps=300] [--rounds=2] [--variants=default,jemalloc,tcmalloc,fused]
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=300; rounds=2; variants=default,jemalloc,tcmalloc,fused
for arg in "$@"; do
  case "$arg" in
    --steps=*) steps="${arg#*=}" ;;
    --rounds=*) rounds="${arg#*=}" ;;
    --variants=*) variants="${arg#*=}" ;;
    *) echo "allocator_ab.sh: unknown flag $arg" >&2; exit 2 ;;
  esac
done
JE=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
TC=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
work=$(mktemp -d /tmp/allocator_ab.XXXXXX)
trap 'rm -rf "$work"' EXIT
for round in $(seq 1 "$rounds"); do
  for v in ${variants//,/ }; do
    pre=""; fused=false
    case $v in
      default) ;;
      jemalloc) pre=$JE ;;
      tcmalloc) pre=$TC ;;
      fused) fused=true ;;
      *) echo "allocator_ab.sh: unknown variant $v" >&2; exit 2 ;;
    esac
    if [ -n "$pre" ] && [ ! -f "$pre" ]; then echo "allocator_ab.sh: $pre missing" >&2; exit 1; fi
    d=$work/${v}_$round
    LD_PRELOAD=$pre /usr/bin/time -o "$d.time" \
      -f "wall %e s, user %U s, sys %S s, peak RSS %M KB, minor faults %R" \
      bazel-bin/tools/timebalance --config=configs/supervised_r3d18tiny_8x4_synth_10pct.pbtxt \
      --run_dir="$d" --num_threads=2 \
      --override="schedule { steps: $steps checkpoint_every: $steps log_every: 100 }
                  optimizer { adam { fused: $fused } } evaluation { num_clips: 2 }" \
      > "$d.log" 2>&1 || { echo "allocator_ab.sh: $v failed, see:" >&2; tail -n 5 "$d.log" >&2; exit 1; }
    loss=$(tail -n 1 "$d/metrics.jsonl" | grep -o '"loss_ce": [0-9.e+-]*' || true)
    top1=$(grep -o '"top1": [0-9.]*' "$d/results.json" | head -n 1)
    echo "round $round $v: $(cat "$d.time"); $loss, test $top1"
  done
done
