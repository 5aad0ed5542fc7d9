#!/usr/bin/env bash
# A small run of the bad-bytes drill (tools/bad_bytes_drill.py): 30 damaged
# copies of the fixture videos (three per codec/container) through
# decode_frames. Fails on any hang (killed after 30 s), crash, or error that
# does not name the file. The full drill (thousands of files) is run by hand;
# see docs/RELIABILITY.md.
set -uo pipefail
ROOT="$TEST_SRCDIR/timebalance"
WORK="$TEST_TMPDIR/drill"
python3 "$ROOT/tools/bad_bytes_drill.py" --decode_frames="$ROOT/tools/decode_frames" \
  --work="$WORK" --files=30 --seed=7 --jobs=2 --timeout=30 > "$TEST_TMPDIR/drill.txt" 2>&1
rc=$?
cat "$TEST_TMPDIR/drill.txt"
[ "$rc" -eq 0 ] || { echo "FAIL: the drill exited $rc"; exit 1; }
grep -q '"files": 30,.*"hang": 0, "crash": 0' "$TEST_TMPDIR/drill.txt" \
  || { echo "FAIL: unexpected summary"; exit 1; }
echo "drill passed"
