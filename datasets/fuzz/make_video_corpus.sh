#!/usr/bin/env bash
# Regenerates the seed corpus of //datasets/fuzz:video_reader_fuzzer: tiny
# videos (32x24, 8 frames of lavfi testsrc2) of every codec the project reads,
# encoded like the test fixtures (video_reader_test, tools/bad_bytes_drill.py)
# but smaller so that the fuzzer runs fast. -bitexact: the same bytes on every
# machine with Debian 12's ffmpeg 5.1. The corpus also holds
# datasets/testdata/h264_vfr_flipped_bit.mkv (the reader's hang reproducer).
#   datasets/fuzz/make_video_corpus.sh [out_dir]
set -euo pipefail
out="${1:-$(dirname "$0")/corpus/video_reader}"
mkdir -p "$out"
src=(-f lavfi -i testsrc2=size=32x24:rate=25 -frames:v 8)
x264=(-c:v libx264 -bf 2 -g 4 -x264-params b-adapt=0 -pix_fmt yuv420p)
enc() {  # name, ffmpeg output arguments...
  local name="$1"; shift
  ffmpeg -nostdin -hide_banner -loglevel error -y "${src[@]}" "$@" \
    -fflags +bitexact -flags:v +bitexact "$out/tmp_$name"
  mv "$out/tmp_$name" "$out/$name"
}
enc mpeg4.avi -c:v mpeg4 -g 4 -q:v 5
enc mpeg4_bframes.avi -c:v mpeg4 -bf 2 -g 4 -q:v 5
enc xvid.avi -c:v libxvid -q:v 5
enc h264.mp4 "${x264[@]}"
enc h264.mkv "${x264[@]}"
enc h264_vfr.mkv -vf "select='not(eq(mod(n,5),2))'" -fps_mode vfr "${x264[@]}"
enc hevc.mp4 -c:v libx265 -x265-params log-level=error:bframes=2 -g 4 -pix_fmt yuv420p -tag:v hvc1
enc mjpeg.avi -c:v mjpeg -q:v 5 -pix_fmt yuvj420p
enc msmpeg4v3.avi -c:v msmpeg4 -q:v 5
enc cinepak.avi -c:v cinepak
enc vp9.webm -c:v libvpx-vp9 -g 4 -deadline realtime
cp "$(dirname "$0")/../testdata/h264_vfr_flipped_bit.mkv" "$out/"
ls -l "$out"
