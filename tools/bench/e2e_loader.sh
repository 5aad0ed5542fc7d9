#!/usr/bin/env bash
# e2e_loader.sh: end-to-end training throughput with data loading, C++ vs PyTorch (a
# benchmark that prints numbers, not a test).
#
# For each GOP it writes a UCF101-like dataset once (tools/bench/make_ucf_like.sh: 24
# train videos in 4 classes, 320x240, 25 fps, 7 s, MPEG-4 part 2 with a keyframe every GOP
# frames), then, per round, runs on it one after the other (order alternating per round):
#   (a) the C++ trainer, bazel-bin/tools/timebalance with
#       configs/supervised_r3d18tiny_8x4_synth_10pct.pbtxt overridden to every train video
#       labeled, 8 frames at stride 4, decode short side 128, 112 crops, batch 8, 2 loader
#       workers, --num_threads=2, --steps steps, log_every = --warmup (so the first logged
#       window is the warm-up), a checkpoint only at the end, a 1-clip evaluation and
#       seed = the round;
#   (b) tools/bench/peer_train_loader.py with the same settings: a DataLoader with 2
#       worker processes decoding every frame with cv2.VideoCapture (the official
#       TimeBalance/TCLR way), same model (parameter count checked), Adam, schedule, seed.
# Both report clips/s over the steps after the first --warmup steps (wall time, waiting
# for data included) and the share of that time the trainer waited for data. The C++
# numbers come from the run's metrics.jsonl (its windows after the first: seconds =
# clips / clips_per_s; data_wait_s summed), the peer's from its PEER_TRAIN_LOADER line.
# The C++ reader seeks and decodes only the frames a clip needs, so its cost grows with
# the GOP; the peer decodes whole videos whatever the GOP. Other differences, not what is
# being measured: C++ scales with FFmpeg's bicubic filter from YUV to RGB at the short side,
# the peer converts every frame to BGR at full size and resizes the kept frames with
# OpenCV's bilinear filter; the peer's crop, flip and normalisation use OpenCV and NumPy
# (faster than the official per-frame PIL transforms); C++ runs 2 loader threads in the
# trainer's process, the peer 2 worker processes (1 torch and 1 OpenCV thread each;
# OpenCV's FFmpeg backend picks its own decoder threads); both prefetch 4 batches; the
# peer's sampler shuffles epochs back to back without restarting workers; random streams
# differ, so the clips differ.
#
# Prints per-round rows and the medians over rounds:
#   | GOP | model | C++ clips/s | peer clips/s | ratio | C++ data wait % | peer data wait % |
# plus the decode / augment ms per clip both loaders report.
#
#   tools/bench/e2e_loader.sh [--gop=12,250] [--steps=150] [--warmup=20] [--rounds=2]
#       [--r3d18_full [--full_steps=30 --full_warmup=5]] [--work=DIR] [--keep]
#
# Needs bazel-bin/tools/timebalance (bazel build -c opt //tools:timebalance), ffmpeg and
# Debian's /usr/bin/python3 with python3-torch and python3-opencv. --r3d18_full adds rows
# for the full-width R3D-18 (33M parameters, --full_steps steps). Run it on an otherwise
# idle machine: both sides use every core (2 trainer threads + 2 loader workers), and
# anything else running changes the numbers. The defaults should take roughly 10-20 minutes
# on a 2-core machine (an estimate from the configs' speeds, not a measured run).
set -euo pipefail
cd "$(dirname "$0")/../.."
gops=12,250
steps=150
warmup=20
rounds=2
full=0
full_steps=30
full_warmup=5
work=""
keep=0
for arg in "$@"; do
  case "$arg" in
    --gop=*) gops="${arg#*=}" ;;
    --steps=*) steps="${arg#*=}" ;;
    --warmup=*) warmup="${arg#*=}" ;;
    --rounds=*) rounds="${arg#*=}" ;;
    --r3d18_full) full=1 ;;
    --full_steps=*) full_steps="${arg#*=}" ;;
    --full_warmup=*) full_warmup="${arg#*=}" ;;
    --work=*) work="${arg#*=}" ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "e2e_loader.sh: unknown flag $arg (see --help)" >&2; exit 2 ;;
  esac
done
if ((steps <= warmup)) || ((full && full_steps <= full_warmup)); then
  echo "e2e_loader.sh: --steps must exceed --warmup (and --full_steps --full_warmup)" >&2
  exit 2
fi
BIN=bazel-bin/tools/timebalance
PY=/usr/bin/python3
CONFIG=configs/supervised_r3d18tiny_8x4_synth_10pct.pbtxt
[ -x "$BIN" ] || { echo "e2e_loader.sh: $BIN not built (bazel build -c opt //tools:timebalance)" >&2; exit 2; }
$PY -c 'import torch, cv2' 2> /dev/null ||
  { echo "e2e_loader.sh: $PY lacks torch or cv2 (apt-get install python3-torch python3-opencv)" >&2; exit 2; }
if [ -z "$work" ]; then
  work=$(mktemp -d /tmp/e2e_loader.XXXXXX)
else
  mkdir -p "$work"
  [ -z "$(ls -A "$work")" ] || { echo "e2e_loader.sh: --work=$work is not empty" >&2; exit 2; }
fi
if ((!keep)); then trap 'rm -rf "$work"' EXIT; fi
results="$work/results.tsv"
: > "$results"

# Settings shared by both sides.
FRAMES=8 STRIDE=4 SHORT=128 CROP=112 BATCH=8 WORKERS=2 THREADS=2

echo "e2e_loader: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "e2e_loader: GOPs $gops, $steps steps ($warmup untimed), $rounds round(s), batch $BATCH," \
  "${FRAMES}x$STRIDE frames, short side $SHORT, crop $CROP, $WORKERS loader workers," \
  "$THREADS trainer threads; work dir $work"

IFS=, read -r -a gop_list <<< "$gops"
for gop in "${gop_list[@]}"; do
  tools/bench/make_ucf_like.sh "$work/data_g$gop" "$gop"
done

models=("0.125 $steps $warmup")
((full)) && models+=("1.0 $full_steps $full_warmup")

# run_cpp GOP WIDTH STEPS WARMUP ROUND -> appends a "cpp" row to results.tsv
run_cpp() {
  local gop=$1 width=$2 n=$3 w=$4 r=$5
  local dir="$work/cpp_g${gop}_w${width}_r$r"
  local lrw=$((n < 20 ? n : 20))  # the config's 20 lr warm-up steps, at most the run
  local ovr="dataset { ucf101 { root: \"$work/data_g$gop\" split: 1 } labeled_fraction: 1.0
    clip { num_frames: $FRAMES stride: $STRIDE decode_short_side: $SHORT crop_size: $CROP }
    loader { num_workers: $WORKERS } }
    backbone { r3d18 { width_multiplier: $width } }
    trainer { labeled_batch_size: $BATCH }
    schedule { steps: $n warmup_steps: $lrw log_every: $w checkpoint_every: $n }
    evaluation { num_clips: 1 batch_size: $BATCH } seed: $r"
  if ! "$BIN" --config="$CONFIG" --run_dir="$dir" --num_threads=$THREADS --override="$ovr" \
      > "$dir.log" 2>&1; then
    echo "e2e_loader.sh: the C++ run failed ($dir.log):" >&2
    tail -n 20 "$dir.log" >&2
    exit 1
  fi
  $PY - "$dir" "$dir.log" "$BATCH" "$gop" "$width" "$r" >> "$results" <<'EOF'
import json, re, sys
run, log, batch, gop, width, rnd = sys.argv[1:]
text = open(log).read()
m = re.search(r"(\d+) labeled / (\d+) train videos.*?(\d+) parameters", text)
if not m:
    sys.exit("e2e_loader.sh: no 'N parameters' line in " + log)
labeled, train, params = map(int, m.groups())
if labeled != train:
    sys.exit("e2e_loader.sh: %s: %d of %d train videos labeled" % (log, labeled, train))
rows = [json.loads(l) for l in open(run + "/metrics.jsonl") if l.strip()]
rows = [r for r in rows if "clips_per_s" in r]
if len(rows) < 2:
    sys.exit("e2e_loader.sh: %s/metrics.jsonl has %d windows, need the warm-up + 1" % (run, len(rows)))
clips = seconds = wait = decode = augment = 0.0
for prev, r in zip(rows, rows[1:]):  # every window after the first (the warm-up)
    c = (r["step"] - prev["step"]) * int(batch)
    clips += c
    seconds += c / r["clips_per_s"]
    wait += r["data_wait_s"]
    decode += c * r["decode_ms_per_clip"]
    augment += c * r["augment_ms_per_clip"]
print("\t".join(map(str, ["cpp", gop, width, rnd, clips / seconds, wait / seconds,
                          decode / clips, augment / clips, params, train])))
EOF
}

# run_peer GOP WIDTH STEPS WARMUP ROUND -> appends a "peer" row to results.tsv
run_peer() {
  local gop=$1 width=$2 n=$3 w=$4 r=$5
  local log="$work/peer_g${gop}_w${width}_r$r.log"
  local lrw=$((n < 20 ? n : 20))
  if ! $PY tools/bench/peer_train_loader.py --root="$work/data_g$gop" --workers=$WORKERS \
      --frames=$FRAMES --stride=$STRIDE --short_side=$SHORT --crop=$CROP --batch=$BATCH \
      --threads=$THREADS --steps="$n" --warmup="$w" --width="$width" --lr_warmup=$lrw --seed="$r" > "$log" 2>&1; then
    echo "e2e_loader.sh: the peer failed ($log):" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  $PY - "$log" "$gop" "$width" "$r" >> "$results" <<'EOF'
import json, sys
log, gop, width, rnd = sys.argv[1:]
lines = [l for l in open(log) if l.startswith("PEER_TRAIN_LOADER ")]
if not lines:
    sys.exit("e2e_loader.sh: no PEER_TRAIN_LOADER line in " + log)
d = json.loads(lines[-1].split(" ", 1)[1])
print("\t".join(map(str, ["peer", gop, width, rnd, d["clips_per_s"], d["data_wait_share"],
                          d["decode_ms_per_clip"], d["augment_ms_per_clip"], d["parameters"],
                          d["train_videos"]])))
EOF
}

for ((r = 1; r <= rounds; r++)); do
  for gop in "${gop_list[@]}"; do
    for m in "${models[@]}"; do
      read -r width n w <<< "$m"
      echo "e2e_loader: round $r/$rounds, GOP $gop, width $width: C++ and peer, $n steps" >&2
      if ((r % 2)); then
        run_cpp "$gop" "$width" "$n" "$w" "$r"
        run_peer "$gop" "$width" "$n" "$w" "$r"
      else
        run_peer "$gop" "$width" "$n" "$w" "$r"
        run_cpp "$gop" "$width" "$n" "$w" "$r"
      fi
    done
  done
done

$PY - "$results" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
data = {}  # (gop, width) -> side -> list of (round, cps, wait, decode, augment, params, videos)
for side, gop, width, rnd, cps, wait, dec, aug, params, videos in rows:
    data.setdefault((int(gop), width), {}).setdefault(side, []).append(
        (int(rnd), float(cps), float(wait), float(dec), float(aug), int(params), int(videos)))

def model(width):
    return "R3D-18 x%s" % width

for key, sides in sorted(data.items()):
    pc, pp = {r[5] for r in sides["cpp"]}, {r[5] for r in sides["peer"]}
    note = "equal" if pc == pp else "DIFFER"
    print("GOP %d, %s: parameters C++ %s, peer %s (%s); train videos C++ %s, peer %s"
          % (key[0], model(key[1]), sorted(pc), sorted(pp), note,
             sorted({r[6] for r in sides["cpp"]}), sorted({r[6] for r in sides["peer"]})))

head = ("| GOP | model | C++ clips/s | peer clips/s | ratio | C++ data wait % | peer data wait % |\n"
        "|---|---|---|---|---|---|---|")
print("\nPer round:\n")
print("| round " + head.replace("\n|", "\n|---|"))
for key, sides in sorted(data.items()):
    for c, p in zip(sorted(sides["cpp"]), sorted(sides["peer"])):
        print("| %d | %d | %s | %.2f | %.2f | %.2fx | %.0f | %.0f |"
              % (c[0], key[0], model(key[1]), c[1], p[1], c[1] / p[1], 100 * c[2], 100 * p[2]))

print("\nMedians over rounds:\n")
print(head)
med = lambda xs: statistics.median(xs)
for key, sides in sorted(data.items()):
    c, p = sides["cpp"], sides["peer"]
    cc, pc = med([r[1] for r in c]), med([r[1] for r in p])
    print("| %d | %s | %.2f | %.2f | %.2fx | %.0f | %.0f |"
          % (key[0], model(key[1]), cc, pc, cc / pc, 100 * med([r[2] for r in c]),
             100 * med([r[2] for r in p])))

print("\nLoader worker time per clip (medians; wall ms inside the workers, which run beside the"
      " trainer):\n")
print("| GOP | model | C++ decode ms | peer decode ms | C++ augment ms | peer augment ms |\n"
      "|---|---|---|---|---|---|")
for key, sides in sorted(data.items()):
    c, p = sides["cpp"], sides["peer"]
    print("| %d | %s | %.1f | %.1f | %.1f | %.1f |"
          % (key[0], model(key[1]), med([r[3] for r in c]), med([r[3] for r in p]),
             med([r[4] for r in c]), med([r[4] for r in p])))
EOF
