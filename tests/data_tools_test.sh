#!/usr/bin/env bash
# The data tools as a user runs them, on small trees in the official UCF101,
# HMDB51 and Kinetics-400 layouts (real class names and file naming, tiny
# videos made with the ffmpeg CLI: MPEG-4 part 2 AVI like UCF101/HMDB51,
# H.264 MP4 with B-frames like Kinetics):
#   decode_frames   bytes equal to `ffmpeg -f rawvideo -pix_fmt rgb24` frames;
#   decode_frames   a cut (damaged) AVI named with the reason, exit 1 unless
#                   --allow_damaged;
#   prepare_dataset counts, labels and splits of the manifests; missing,
#                   zero-byte, truncated, damaged, non-video and
#                   wrong-extension files named with the reason;
#                   --on_error=fail/skip;
#   make_split      sizes, class balance, seed determinism, the hash,
#                   --from_list validation.
set -uo pipefail

BIN="$TEST_SRCDIR/timebalance/tools"
WORK="$TEST_TMPDIR/data_tools"
rm -rf "$WORK"; mkdir -p "$WORK"; cd "$WORK"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# expect CODE -- command...: runs it with stdout/stderr to out.txt/err.txt.
expect() {
  local code="$1"; shift 2
  "$@" >out.txt 2>err.txt
  local rc=$?
  [ "$rc" -eq "$code" ] || fail "$* exited $rc, want $code: $(cat err.txt)"
}
has() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2': $(cat "$1")"; }
count() { grep -cF -- "$2" "$1"; }

# video PATH FRAMES CODEC_ARGS...: a tiny 64x48 test pattern.
video() {
  local path="$1" frames="$2"; shift 2
  mkdir -p "$(dirname "$path")"
  ffmpeg -nostdin -v error -y -f lavfi -i "testsrc=size=64x48:rate=25" -frames:v "$frames" \
    -pix_fmt yuv420p "$@" "$path" || { echo "ffmpeg failed for $path"; exit 1; }
}
avi() { video "$1" "$2" -c:v mpeg4 -q:v 4; }
mp4() { video "$1" "$2" -c:v libx264 -bf 2 -g 8 -preset ultrafast; }

# ---------------------------------------------------------------- decode_frames
avi clip.avi 20
mp4 clip.mp4 20
for v in clip.avi clip.mp4; do
  ffmpeg -nostdin -v error -y -i "$v" -f rawvideo -pix_fmt rgb24 all.rgb
  expect 0 -- "$BIN/decode_frames" --video="$v" --frames=17,0,5,5 --out=f.rgb
  has out.txt '"width":64'
  has out.txt '"height":48'
  has out.txt '"frame_count":20'
  has out.txt '"fps":25'
  frame=$((64 * 48 * 3))
  : > want.rgb
  for i in 17 0 5 5; do
    dd if=all.rgb bs=$frame skip=$i count=1 status=none >> want.rgb
  done
  cmp -s f.rgb want.rgb || fail "decode_frames $v: bytes differ from ffmpeg's frames 17,0,5,5"
done
expect 2 -- "$BIN/decode_frames" --video=clip.avi --frames=3,20 --out=f.rgb
has err.txt "frame index 20"
has err.txt "20 frames"
echo "not a video" > fake.avi
expect 1 -- "$BIN/decode_frames" --video=fake.avi --frames=0 --out=f.rgb
has err.txt "fake.avi"
expect 1 -- "$BIN/decode_frames" --video=missing.avi --frames=0 --out=f.rgb
has err.txt "missing.avi"
expect 2 -- "$BIN/decode_frames" --video=clip.avi --frames=1,x --out=f.rgb
has err.txt "'x'"
expect 2 -- "$BIN/decode_frames" --video=clip.avi --frame=1 --out=f.rgb
has err.txt "--frame=1"
expect 0 -- "$BIN/decode_frames" --video=clip.avi --frames=1 --out=f.rgb
has out.txt '"damaged":false}'
# A cut AVI: its header declares 175 frames, fewer are left. Damaged, named
# with the reason, unless --allow_damaged.
video full.avi 175 -c:v mpeg4 -q:v 4
head -c $(( $(stat -c %s full.avi) * 42 / 100 )) full.avi > cut.avi
expect 1 -- "$BIN/decode_frames" --video=cut.avi --frames=0,3 --out=f.rgb
has err.txt "decode_frames: error: cut.avi: damaged: truncated: "
has err.txt " of 175 frames decodable; 1 corrupt packet"
has err.txt "--allow_damaged"
expect 0 -- "$BIN/decode_frames" --video=cut.avi --frames=0,3 --out=f.rgb --allow_damaged
has out.txt '"damaged":true,"damage":"truncated: '
[ "$(stat -c %s f.rgb)" -eq $((2 * 64 * 48 * 3)) ] || fail "--allow_damaged: want 2 frames"

# ---------------------------------------------------------------- UCF101
mkdir -p ucf/UCF-101 ucf/ucfTrainTestlist
printf '1 ApplyEyeMakeup\r\n2 ApplyLipstick\r\n3 Archery\r\n' > ucf/ucfTrainTestlist/classInd.txt
: > ucf/ucfTrainTestlist/trainlist01.txt
: > ucf/ucfTrainTestlist/testlist01.txt
label=0
for c in ApplyEyeMakeup ApplyLipstick Archery; do
  label=$((label + 1))
  for g in 08 09; do
    v="$c/v_${c}_g${g}_c01.avi"; avi "ucf/UCF-101/$v" 6
    printf '%s %d\r\n' "$v" $label >> ucf/ucfTrainTestlist/trainlist01.txt
  done
  v="$c/v_${c}_g01_c01.avi"; avi "ucf/UCF-101/$v" 6
  printf '%s\r\n' "$v" >> ucf/ucfTrainTestlist/testlist01.txt
done
expect 0 -- "$BIN/prepare_dataset" --format=ucf101 --root=ucf/UCF-101 \
  --annotations=ucf/ucfTrainTestlist --split=1 --out=ucf.manifest --threads=2
has out.txt '"classes":3,"videos":9,"train":6,"test":3,"skipped":0'
[ "$(count ucf.manifest 'split: TRAIN')" -eq 6 ] || fail "ucf101: want 6 TRAIN entries"
[ "$(count ucf.manifest 'content_hash: "sha256:')" -eq 9 ] || fail "ucf101: want 9 hashes"
has ucf.manifest 'class_names: "Archery"'
grep -A2 'relative_path: "Archery/v_Archery_g08_c01.avi"' ucf.manifest | grep -q 'label: 2' \
  || fail "ucf101: Archery should have label 2"
sum=$(sha256sum ucf/UCF-101/Archery/v_Archery_g01_c01.avi | cut -c1-64)
has ucf.manifest "sha256:$sum"

# ---------------------------------------------------------------- HMDB51
mkdir -p hmdb/videos hmdb/testTrainMulti_7030_splits
hmdb_video() {  # CLASS NAME FLAG
  avi "hmdb/videos/$1/$2" 5
  printf '%s %s \n' "$2" "$3" >> "hmdb/testTrainMulti_7030_splits/$1_test_split1.txt"
  printf '%s 1 \n' "$2" >> "hmdb/testTrainMulti_7030_splits/$1_test_split2.txt"
}
hmdb_video brush_hair April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1
hmdb_video brush_hair April_09_brush_hair_u_nm_np1_ba_goo_1.avi 2
hmdb_video brush_hair Aussie_Brunette_Brushing_Long_Hair_brush_hair_u_nm_np1_ba_med_3.avi 0
hmdb_video cartwheel Bodenturnen_2004_cartwheel_f_cm_np1_le_med_0.avi 1
hmdb_video cartwheel Bodenturnen_2004_cartwheel_f_cm_np1_le_med_1.avi 2
hmdb_video climb_stairs BIG_FISH_climb_stairs_f_nm_np1_fr_med_0.avi 1
hmdb_video climb_stairs BIG_FISH_climb_stairs_f_nm_np1_fr_med_1.avi 2
expect 0 -- "$BIN/prepare_dataset" --format=hmdb51 --root=hmdb/videos \
  --annotations=hmdb/testTrainMulti_7030_splits --split=1 --out=hmdb.manifest
has out.txt '"dataset":"hmdb51","classes":3,"videos":6,"train":3,"test":3,"skipped":0'
has err.txt "1 videos marked 0"
grep -A2 'relative_path: "climb_stairs/BIG_FISH_climb_stairs_f_nm_np1_fr_med_1.avi"' hmdb.manifest \
  | grep -q 'label: 2' || fail "hmdb51: climb_stairs should have label 2"
# Split 2 of this tree lists every video for training: no test set, no manifest.
expect 1 -- "$BIN/prepare_dataset" --format=hmdb51 --root=hmdb/videos \
  --annotations=hmdb/testTrainMulti_7030_splits --split=2 --out=hmdb2.manifest
has err.txt "no test videos listed in hmdb/testTrainMulti_7030_splits"
[ -e hmdb2.manifest ] && fail "hmdb51 split 2 without test videos wrote a manifest"

# ---------------------------------------------------------------- Kinetics-400
mkdir -p k400/annotations
cat > k400/annotations/train.csv <<'CSV'
label,youtube_id,time_start,time_end,split
abseiling,0347ZoDXyP0,95,105,train
abseiling,035LtPeUFTE,13,23,train
"passing American football (in game)",-5Jx2sy3hS0,0,10,train
"passing American football (in game)",-6qQGcBmjf4,28,38,train
CSV
cat > k400/annotations/validate.csv <<'CSV'
label,youtube_id,time_start,time_end,split
abseiling,3E7Jib8Yq5M,14,24,val
"passing American football (in game)",6tRx0FnHgVw,31,41,val
CSV
for f in "train/abseiling/0347ZoDXyP0_000095_000105.mp4" \
         "train/abseiling/035LtPeUFTE_000013_000023.mp4" \
         "train/passing American football (in game)/-5Jx2sy3hS0_000000_000010.mp4" \
         "train/passing American football (in game)/-6qQGcBmjf4_000028_000038.mp4" \
         "val/abseiling/3E7Jib8Yq5M_000014_000024.mp4" \
         "val/passing American football (in game)/6tRx0FnHgVw_000031_000041.mp4"; do
  mp4 "k400/videos/$f" 12
done
expect 0 -- "$BIN/prepare_dataset" --format=kinetics --root=k400/videos \
  --annotations=k400/annotations --out=k400.manifest --threads=2
has out.txt '"dataset":"kinetics400","classes":2,"videos":6,"train":4,"test":2,"skipped":0'
has err.txt "layout <split>/<label>/<file>"
has k400.manifest 'class_names: "passing American football (in game)"'
grep -A3 'relative_path: "val/passing American football (in game)/6tRx0FnHgVw_000031_000041.mp4"' \
  k400.manifest | grep -q 'split: TEST' || fail "kinetics: val video should be TEST"
[ "$(count k400.manifest 'frame_count: 12')" -eq 6 ] || fail "kinetics: want 12 frames each"
# Flat per-split layout (cvdfoundation tars as extracted) gives the same videos.
mkdir -p k400flat/train k400flat/val
cp k400/videos/train/*/*.mp4 k400flat/train/; cp k400/videos/val/*/*.mp4 k400flat/val/
expect 0 -- "$BIN/prepare_dataset" --format=kinetics --root=k400flat \
  --annotations=k400/annotations/train.csv,k400/annotations/validate.csv --out=k400flat.manifest
has out.txt '"videos":6,"train":4,"test":2'
has err.txt "layout <split>/<file>"

# ---------------------------------------------------------------- bad videos
cp -r k400 k400bad
rm "k400bad/videos/train/abseiling/0347ZoDXyP0_000095_000105.mp4"                   # missing
: > "k400bad/videos/train/abseiling/035LtPeUFTE_000013_000023.mp4"                 # zero bytes
v="k400bad/videos/train/passing American football (in game)/-5Jx2sy3hS0_000000_000010.mp4"
head -c 2000 "k400/videos/train/passing American football (in game)/-5Jx2sy3hS0_000000_000010.mp4" > "$v"  # truncated
echo "<html>404</html>" > "k400bad/videos/val/abseiling/3E7Jib8Yq5M_000014_000024.mp4"  # not a video
expect 1 -- "$BIN/prepare_dataset" --format=kinetics --root=k400bad/videos \
  --annotations=k400bad/annotations --out=bad.manifest --on_error=fail
[ -e bad.manifest ] && fail "--on_error=fail wrote a manifest"
has err.txt "0347ZoDXyP0_000095_000105.mp4: file not found"
has err.txt "035LtPeUFTE_000013_000023.mp4: empty file (0 bytes)"
has err.txt "-5Jx2sy3hS0_000000_000010.mp4: "
has err.txt "3E7Jib8Yq5M_000014_000024.mp4: "
has err.txt "train.csv:2"
has err.txt "4 of 6 videos are missing, undecodable or damaged"
expect 0 -- "$BIN/prepare_dataset" --format=kinetics --root=k400bad/videos \
  --annotations=k400bad/annotations --out=bad.manifest --on_error=skip
has out.txt '"videos":2,"train":1,"test":1,"skipped":4'
has err.txt "skipped 4 of 6 videos"
[ "$(count bad.manifest 'relative_path:')" -eq 2 ] || fail "skip: want 2 videos in the manifest"

# A damaged video in a list: reported with the reason; --on_error decides.
mkdir -p dmg/videos/a dmg/videos/b dmg/lists
avi dmg/videos/a/ok.avi 6; avi dmg/videos/b/ok.avi 6; cp cut.avi dmg/videos/b/cut.avi
printf 'a/ok.avi 0\nb/cut.avi 1\n' > dmg/lists/train.txt
printf 'b/ok.avi 1\n' > dmg/lists/test.txt
expect 1 -- "$BIN/prepare_dataset" --format=list --root=dmg/videos --annotations=dmg/lists \
  --out=dmg.manifest
has err.txt "b/cut.avi: damaged: truncated: "
has err.txt "of 175 frames decodable"
has err.txt "train.txt:2"
has err.txt "1 of 3 videos are missing, undecodable or damaged"
[ -e dmg.manifest ] && fail "a damaged video under --on_error=fail wrote a manifest"
expect 0 -- "$BIN/prepare_dataset" --format=list --root=dmg/videos --annotations=dmg/lists \
  --out=dmg.manifest --on_error=skip
has out.txt '"videos":2,"train":1,"test":1,"skipped":1'
grep -q 'cut.avi' dmg.manifest && fail "skip: the damaged video is in the manifest"

# Wrong extension in an annotation list, unknown format, bad flags.
mkdir -p lst
printf 'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 0\nArchery/notes.txt 2\n' > lst/train.txt
printf 'Archery/v_Archery_g01_c01.avi 2\n' > lst/test.txt
expect 1 -- "$BIN/prepare_dataset" --format=list --root=ucf/UCF-101 --annotations=lst --out=l.manifest
has err.txt "train.txt:2"
has err.txt "Archery/notes.txt"
has err.txt "extension"
printf 'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 0\nArchery/v_Archery_g08_c01.avi 2\n' > lst/train.txt
expect 0 -- "$BIN/prepare_dataset" --format=list --root=ucf/UCF-101 --annotations=lst --out=l.manifest
has out.txt '"classes":3,"videos":3,"train":2,"test":1'
expect 2 -- "$BIN/prepare_dataset" --format=avi --root=ucf/UCF-101 --out=x.manifest
has err.txt "unknown format 'avi'"
expect 2 -- "$BIN/prepare_dataset" --format=ucf101 --root=ucf/UCF-101 --out=x.manifest --on_error=maybe
has err.txt "--on_error"
expect 1 -- "$BIN/prepare_dataset" --format=ucf101 --root=nowhere --out=x.manifest
has err.txt "nowhere"

# Re-encoded copies.
expect 0 -- "$BIN/prepare_dataset" --format=ucf101 --root=ucf/UCF-101 \
  --annotations=ucf/ucfTrainTestlist --out=ucf_small.manifest --reencode_short_side=32 --gop=4 \
  --reencode_dir=ucf_small
has out.txt '"videos":9'
has ucf_small.manifest 'height: 32'
has ucf_small.manifest 'source_content_hash: "sha256:'
[ -f ucf_small/Archery/v_Archery_g01_c01.avi ] || fail "re-encoded copy missing"

# ---------------------------------------------------------------- make_split
# A hand-written manifest: classes a (40 train), b (20), c (3); 2 test videos.
{
  echo 'dataset: "toy" format: "list" split: 1 root: "/videos"'
  echo 'class_names: "a" class_names: "b" class_names: "c"'
  for c in a:0:40 b:1:20 c:2:3; do
    IFS=: read -r name label n <<<"$c"
    for i in $(seq 1 "$n"); do
      echo "video { relative_path: \"$name/v$i.avi\" label: $label split: TRAIN }"
    done
  done
  echo 'video { relative_path: "a/t1.avi" label: 0 split: TEST }'
  echo 'video { relative_path: "b/t1.avi" label: 1 split: TEST }'
} > toy.manifest
expect 0 -- "$BIN/make_split" --manifest=toy.manifest --fraction=0.1 --seed=3 --mode=random --out=r3.txt
has out.txt '"labeled":6,"train":63'
[ "$(wc -l < r3.txt)" -eq 6 ] || fail "random 10% of 63: want 6 lines"
grep -q '/t1.avi' r3.txt && fail "a test video is in the labeled list"
hash3=$(sed 's/.*"sha256":"\([0-9a-f]*\)".*/\1/' out.txt)
# LabeledSubsetSha256 (datasets/labeled_subset.h): SHA-256 of the sorted
# paths, one per line; sort + sha256sum computes it independently.
want=$(LC_ALL=C sort r3.txt | sha256sum | cut -d' ' -f1)
[ "$hash3" = "$want" ] || fail "sha256 $hash3, sort | sha256sum gives $want"
expect 0 -- "$BIN/make_split" --manifest=toy.manifest --fraction=0.1 --seed=3 --mode=random --out=r3b.txt
cmp -s r3.txt r3b.txt || fail "same seed gave a different list"
expect 0 -- "$BIN/make_split" --manifest=toy.manifest --fraction=0.1 --seed=4 --mode=random --out=r4.txt
cmp -s r3.txt r4.txt && fail "seeds 3 and 4 gave the same list"
expect 0 -- "$BIN/make_split" --manifest=toy.manifest --fraction=0.1 --seed=3 --mode=per_class --out=p.txt
has out.txt '"labeled":7'
[ "$(grep -c '^a/' p.txt)" -eq 4 ] || fail "per_class: want 4 of class a"
[ "$(grep -c '^b/' p.txt)" -eq 2 ] || fail "per_class: want 2 of class b"
[ "$(grep -c '^c/' p.txt)" -eq 1 ] || fail "per_class: want 1 of class c"
# A published list: accepted with the same hash, or every stray entry named.
expect 0 -- "$BIN/make_split" --manifest=toy.manifest --from_list=r3.txt --out=r3c.txt
has out.txt "\"sha256\":\"$hash3\""
printf 'a/v1.avi 1\nx/nope.avi\na/t1.avi\n' > published.txt
expect 1 -- "$BIN/make_split" --manifest=toy.manifest --from_list=published.txt --out=bad.txt
has err.txt "2 listed videos are not in the training split"
has err.txt "published.txt:2 'x/nope.avi'"
has err.txt "published.txt:3 'a/t1.avi'"
expect 2 -- "$BIN/make_split" --manifest=toy.manifest --fraction=0 --out=z.txt
has err.txt "--fraction"
expect 2 -- "$BIN/make_split" --manifest=toy.manifest --fraction=0.1 --mode=balanced --out=z.txt
has err.txt "balanced"
expect 1 -- "$BIN/make_split" --manifest=nope.manifest --fraction=0.1 --out=z.txt
has err.txt "nope.manifest"

if [ "$failures" -ne 0 ]; then
  echo "$failures failures"
  exit 1
fi
echo "all data tool checks passed"
