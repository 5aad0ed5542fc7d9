#!/usr/bin/env bash
# The demo: installs what is missing, builds, generates SynthActions, and runs
# the TimeBalance pipeline at 10% labels (configs/timebalance_r3d18tiny_synth_10pct.pbtxt:
# SSL pretraining of both teachers, temporal-similarity scores, teacher
# fine-tuning, student distillation, and the supervised baseline under the
# same config), then prints a table: supervised, invariant teacher,
# distinctive teacher and TimeBalance student, overall and per class family.
#   tools/demo.sh            (data in data/, the run in runs/demo_tb, its HTML
#                             report in runs/demo_tb/report.html)
# At the end it times the distillation step of the same config against the
# PyTorch peer (//tools:bench_step --peer=tools/bench/peer_step.py) and prints
# the ratio.
# The process keeps decoded videos in memory (loader.decoded_cache_mb): the
# 30 labeled videos are read 8000 times by each fine-tuning stage. Stages run
# one after another by default: on the 2-core CI machine two 1-thread stages
# at once are no faster than one 2-thread stage, and the 1-thread plan moves
# the numbers (docs/PERFORMANCE.md); DEMO_PARALLEL=2 runs two at a time.
# Environment: DEMO_THREADS (LibTorch threads), DEMO_PARALLEL (stages at once,
# default 1; J > 1 runs J at a time in child processes), DEMO_CACHE_MB
# (decoded-video cache per process, default 1024; 0 = off), DEMO_KEEP=1
# (keep the finished stages of an earlier demo run instead of starting over),
# DEMO_PEER_ITERS (timed steps per side of the peer comparison, default 20).
source "$(dirname "${BASH_SOURCE[0]}")/bazel_env.sh"

DATA="${DEMO_DATA:-data/synth_actions}"
CONFIG=configs/timebalance_r3d18tiny_synth_10pct.pbtxt
RUN=runs/demo_tb

t0=$(date +%s)
bz build //tools:timebalance //tools:make_synthetic //tools:report //tools:bench_step
BIN=bazel-bin/tools/timebalance
GEN=bazel-bin/datasets/synthetic/make_synthetic
t_build=$(( $(date +%s) - t0 ))

# Skipped when $DATA already holds this dataset; a SynthActions folder written
# with other options or by an older generator is replaced.
"$GEN" --out="$DATA" --classes=10 --train_per_class=30 --test_per_class=10 --seed=0 --overwrite
t_data=$(( $(date +%s) - t0 - t_build ))

if [ "${DEMO_KEEP:-0}" != 1 ]; then rm -rf "$RUN"; fi
"$BIN" --config="$CONFIG" --run_dir="$RUN" ${DEMO_THREADS:+--num_threads=$DEMO_THREADS} \
  --override="dataset { ucf101 { root: \"$DATA\" } loader { decoded_cache_mb: ${DEMO_CACHE_MB:-1024} } }
              timebalance { parallel_stages: ${DEMO_PARALLEL:-1} }"

echo
echo "SynthActions ($DATA), 10% labels, tiny R3D-18 (TCLR variant), test split (10 clips x centre crop per video):"
/usr/bin/python3 tools/demo_table.py "$DATA" "$RUN/results.json"
bazel-bin/tools/report "$RUN" --out="$RUN/report.html" --title="TimeBalance demo (SynthActions, 10% labels)"
t_pipeline=$(( $(date +%s) - t0 - t_build - t_data ))

# The distillation step of this config against the PyTorch peer
# (tools/bench/peer_step.py: the same tiny R3D-18, student + 2 frozen teachers,
# the same batch, random clips), side by side in this run.
echo
echo "TimeBalance student step at the demo's shapes, C++ vs PyTorch (tools/bench/peer_step.py), fp32:"
bazel-bin/tools/bench_step --config="$CONFIG" --num_classes=10 --precisions=fp32 \
  --iters="${DEMO_PEER_ITERS:-20}" --warmup=3 ${DEMO_THREADS:+--threads=$DEMO_THREADS} \
  --peer=tools/bench/peer_step.py | tail -1 |
  awk -F'|' '{printf "  C++ %s clips/s, peer %s clips/s: %s\n", $6, $7, $8}'
echo "build ${t_build} s, data ${t_data} s, pipeline ${t_pipeline} s, total $(( $(date +%s) - t0 )) s"
bazel shutdown >/dev/null 2>&1 || true
