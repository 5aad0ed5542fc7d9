#!/usr/bin/env bash
# //tools:bench_step on the CI pipeline config at tiny shapes (1 thread, 1
# timed step: this checks what it prints, not how fast anything is):
#  1. --peer runs tools/bench/peer_step.py with the config's width (1/8):
#     the peer builds the same network (its parameter count is the C++
#     student's) and a ratio is printed;
#  2. --op_census counts one step's ATen calls: every model's forward makes
#     its 20 conv3d calls (stem, 16 in the blocks, 3 projection shortcuts) for
#     the student and the two teachers, 60 in all; FusedAdam replaces Adam's
#     per-parameter operations, so its step makes fewer top-level calls.
set -uo pipefail
source "$TEST_SRCDIR/timebalance/tests/testlib.sh"
tb_workdir bench_step
STEP="$ROOT/tools/bench_step"
ARGS=(--config="$ROOT/configs/timebalance_r3d18tiny_synth_ci.pbtxt" --num_classes=4
      --override='dataset { clip { crop_size: 32 decode_short_side: 40 } }'
      --precisions=fp32 --iters=1 --warmup=0 --threads=1)

# 1. The peer at the config's width.
"$STEP" "${ARGS[@]}" --peer="$ROOT/tools/bench/peer_step.py" > peer.txt 2>&1
rc=$?
[ "$rc" -eq 0 ] || { cat peer.txt; fail "bench_step --peer exited $rc"; }
cpp_params=$(grep -o '[0-9]* parameters each' peer.txt | head -1 | grep -o '^[0-9]*')
row=$(grep '^| fp32 ' peer.txt)
ratio=$(echo "$row" | awk -F'|' '{print $8}' | tr -d ' x')
[ -n "$cpp_params" ] || fail "no parameter count in: $(cat peer.txt)"
python3 -c "import sys; r = float('$ratio'); sys.exit(0 if r > 0 else 1)" 2>/dev/null \
  || fail "no positive ratio in the fp32 row: $row"

# The peer's own parameter count, from its standalone run at the same width.
/usr/bin/python3 "$ROOT/tools/bench/peer_step.py" --frames=4 --size=32 --labeled=2 \
  --unlabeled=2 --num_classes=4 --iters=1 --warmup=0 --threads=1 --precisions=fp32 \
  --width="$(grep -o 'width_multiplier: [0-9.e-]*' peer.txt | head -1 | awk '{print $2}')" \
  --tclr_temporal_layer4 > peer_alone.txt 2>&1 || { cat peer_alone.txt; fail "peer_step.py failed"; }
peer_params=$(grep -o '[0-9]* parameters each' peer_alone.txt | head -1 | grep -o '^[0-9]*')
[ "$cpp_params" = "$peer_params" ] \
  || fail "C++ student has $cpp_params parameters, the peer's $peer_params: $(head -2 peer_alone.txt)"

# 2. The census, with Adam and with FusedAdam.
census() {  # FILE -> "TOP CONV3D"
  local line
  line=$(grep 'op census of one step' "$1")
  echo "$(echo "$line" | grep -o '[0-9]* top-level' | grep -o '^[0-9]*') \
$(echo "$line" | grep -o 'aten::conv3d [0-9]*' | grep -o '[0-9]*$')"
}
"$STEP" "${ARGS[@]}" --op_census > adam.txt 2>&1 || { cat adam.txt; fail "--op_census exited $?"; }
"$STEP" "${ARGS[@]}" --op_census --fused_adam > fused.txt 2>&1 \
  || { cat fused.txt; fail "--op_census --fused_adam exited $?"; }
read -r adam_top _ <<< "$(census adam.txt)"
read -r fused_top fused_conv <<< "$(census fused.txt)"
[ -n "$adam_top" ] && [ -n "$fused_top" ] || fail "no census lines: $(cat adam.txt fused.txt)"
[ "${fused_conv:-}" = 60 ] || fail "expected 60 top-level conv3d calls (20 per model x 3), got '${fused_conv:-}': $(grep census fused.txt)"
[ "${fused_top:-0}" -lt "${adam_top:-0}" ] \
  || fail "FusedAdam's step makes $fused_top top-level calls, Adam's $adam_top: expected fewer"

tb_finish "bench_step test"
