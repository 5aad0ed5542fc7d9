#!/usr/bin/env bash
# make_ucf_like.sh: writes a small dataset that looks like UCF101 to a video
# loader, for tools/bench/e2e_loader.sh (a benchmark fixture, not a dataset to
# learn from).
#
# Each video: 320x240, 25 fps, 7 s (175 frames), MPEG-4 part 2 in AVI
# (ffmpeg's mpeg4 encoder, keyframe every GOP frames, no B-frames, -q:v 5;
# about 0.8 MB per video, roughly UCF101's bitrate), from ffmpeg's moving
# testsrc2 pattern, started at a per-video time offset and hue-rotated per
# video so that no two videos are alike. The GOP is what matters to a loader
# that seeks (a long GOP forces it to decode from far back); one that decodes
# every frame pays the same for any GOP.
#
# Layout (what datasets/ucf101.cc reads, like //datasets/synthetic:make_synthetic
# writes it): OUT/ClassK/v_ClassK_gXX_c01.avi for K = 1..N_CLASSES, and in OUT
# itself classInd.txt ("K ClassK"), trainlist01.txt ("ClassK/v_..._gXX_c01.avi
# K", PER_CLASS videos per class, g01..) and testlist01.txt (paths only, one
# more video per class).
#
#   tools/bench/make_ucf_like.sh OUT GOP [N_CLASSES=4] [PER_CLASS=6]
#
# OUT is replaced if it exists. Runs ffmpeg under nice -n 19, one video at a time.
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 4 ]; then
  echo "usage: $0 OUT GOP [N_CLASSES=4] [PER_CLASS=6]" >&2
  exit 2
fi
out=$1
gop=$2
classes=${3:-4}
per_class=${4:-6}
test_per_class=1
for v in "$gop" "$classes" "$per_class"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "$0: GOP, N_CLASSES and PER_CLASS must be positive integers" >&2; exit 2; }
done
command -v ffmpeg > /dev/null || { echo "$0: ffmpeg not found (apt-get install ffmpeg)" >&2; exit 2; }

rm -rf "$out"
mkdir -p "$out"
: > "$out/classInd.txt"
: > "$out/trainlist01.txt"
: > "$out/testlist01.txt"
n=0
for ((k = 1; k <= classes; k++)); do
  name="Class$k"
  mkdir -p "$out/$name"
  echo "$k $name" >> "$out/classInd.txt"
  for ((g = 1; g <= per_class + test_per_class; g++)); do
    rel=$(printf '%s/v_%s_g%02d_c01.avi' "$name" "$name" "$g")
    # Per-video start time (0..9.9 s into the pattern) and hue rotation.
    offset=$(( (n * 37) % 100 ))
    hue=$(( (n * 53) % 360 ))
    nice -n 19 ffmpeg -nostdin -v error -y \
      -ss "$((offset / 10)).$((offset % 10))" -f lavfi -i "testsrc2=size=320x240:rate=25" \
      -vf "hue=h=$hue" -frames:v 175 -r 25 \
      -c:v mpeg4 -g "$gop" -bf 0 -q:v 5 -pix_fmt yuv420p "$out/$rel"
    if ((g <= per_class)); then
      echo "$rel $k" >> "$out/trainlist01.txt"
    else
      echo "$rel" >> "$out/testlist01.txt"
    fi
    n=$((n + 1))
  done
done
echo "make_ucf_like: $out: $classes classes, $((classes * per_class)) train + $((classes * test_per_class)) test videos, GOP $gop, $(du -sh "$out" | cut -f1)"
