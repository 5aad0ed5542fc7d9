#!/usr/bin/env bash
# bench_distributed.sh: data-parallel scaling on this machine (a benchmark
# that prints numbers, not a test; docs/DISTRIBUTED.md quotes its output).
#
#   1. Training throughput of the CI supervised config (tiny R3D-18 on a
#      generated SynthActions tree) as 1 process x 1 thread, 1 process x N
#      threads and N ranks x 1 thread (Gloo over loopback): median clips/s of
#      the logged steps after the first, from each run's metrics.jsonl.
#   2. The gradient-averaging cost per step for full-width R3D-18
#      (//tools:bench_allreduce on N ranks).
#
#   bazel build -c opt //tools:timebalance //tools:bench_allreduce //datasets/synthetic:make_synthetic
#   tools/bench_distributed.sh [--ranks=2] [--steps=60] [--work=/tmp/bench_dist]
# Never run it next to a build or a test run: they share the cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=2
steps=60
work=/tmp/bench_dist
for arg in "$@"; do
  case "$arg" in
    --ranks=*) ranks="${arg#*=}" ;;
    --steps=*) steps="${arg#*=}" ;;
    --work=*) work="${arg#*=}" ;;
    *) echo "bench_distributed.sh: unknown flag $arg" >&2; exit 2 ;;
  esac
done
BIN=bazel-bin/tools/timebalance
for b in "$BIN" bazel-bin/tools/bench_allreduce bazel-bin/datasets/synthetic/make_synthetic; do
  [ -x "$b" ] || { echo "bench_distributed.sh: $b not built (see the header)" >&2; exit 2; }
done
PY=/usr/bin/python3
CONFIG=configs/supervised_r3d18tiny_8x4_synth_ci.pbtxt
rm -rf "$work" && mkdir -p "$work"
bazel-bin/datasets/synthetic/make_synthetic --out="$work/data" --classes=4 --train_per_class=8 \
  --test_per_class=2 --seed=5 --min_frames=40 --max_frames=48 --min_short_side=64 \
  --max_short_side=72 > "$work/gen.log" 2>&1
OVR="dataset { ucf101 { root: \"$work/data\" } clip { decode_short_side: 48 crop_size: 40 } } schedule { steps: $steps log_every: 1 checkpoint_every: 1000 } evaluation { num_clips: 1 }"
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
median_cps() {  # median clips/s over the logged steps after the first
  $PY - "$1/metrics.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cps = [r["clips_per_s"] for r in rows if "clips_per_s" in r][1:]
print(f"{statistics.median(cps):.1f}")
EOF
}

echo "bench_distributed: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "training: $CONFIG, $steps steps, global batch as configured"
"$BIN" --config="$CONFIG" --run_dir="$work/p1t1" --num_threads=1 --override="$OVR" > "$work/p1t1.log" 2>&1
one=$(median_cps "$work/p1t1")
echo "  1 process x 1 thread          $one clips/s"
"$BIN" --config="$CONFIG" --run_dir="$work/p1tn" --num_threads="$ranks" --override="$OVR" > "$work/p1tn.log" 2>&1
threads=$(median_cps "$work/p1tn")
echo "  1 process x $ranks threads         $threads clips/s ($($PY -c "print(f'{$threads/$one:.2f}')") x)"
ranks_run() {  # ranks_run DIR EXTRA_OVERRIDE
  local port pids=() p
  port=$(free_port)
  for ((r = 0; r < ranks; r++)); do
    RANK=$r WORLD_SIZE=$ranks MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$BIN" --config="$CONFIG" \
      --run_dir="$work/$1" --num_threads=1 --override="$OVR $2" > "$work/$1.rank$r.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
}
ranks_run pn ""
dist=$(median_cps "$work/pn")
echo "  $ranks ranks x 1 thread (Gloo)     $dist clips/s ($($PY -c "print(f'{$dist/$one:.2f}')") x)"
ranks_run pn_nosync "distributed { sync_batchnorm: false }"
nosync=$(median_cps "$work/pn_nosync")
echo "  same, sync_batchnorm: false    $nosync clips/s ($($PY -c "print(f'{$nosync/$one:.2f}')") x)"

echo "gradient averaging, full-width R3D-18:"
port=$(free_port)
pids=()
for ((r = 0; r < ranks; r++)); do
  RANK=$r WORLD_SIZE=$ranks MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    bazel-bin/tools/bench_allreduce --backbone='r3d18 {}' > "$work/allreduce.rank$r.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
sed 's/^/  /' "$work/allreduce.rank0.log" | grep -v "^  [IW][0-9]"
