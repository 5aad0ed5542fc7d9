#!/usr/bin/env bash
# //tools:report's page in a real browser: headless Chromium (Debian's
# chromium, installed by tools/install_deps.sh) loads the report of a
# demo-sized pipeline run folder (tests/report_fixture.py) and
#   - prints no console message (the page's check script reports a picture
#     without a size there; a failed load would be reported too),
#   - reports, through the DOM, that it drew every picture (data-pictures
#     equal to the number of <svg> in the file, data-bad 0),
#   - renders a screenshot that is not blank (enough non-white pixels and
#     colours).
# The same checks must fail on a page with an empty picture (so they can).
set -uo pipefail

ROOT="$TEST_SRCDIR/timebalance"
REPORT="$ROOT/tools/report"
WORK="$TEST_TMPDIR/browser"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"
export HOME="$WORK"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
  echo "FAIL: chromium is not installed (tools/install_deps.sh installs it)"
  exit 1
fi

chrome() {  # chrome OUT_PREFIX ARGS... : stdout, stderr in OUT_PREFIX.{out,err}
  local prefix="$1"; shift
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run \
    --disable-dev-shm-usage --user-data-dir="$WORK/profile" --hide-scrollbars \
    --enable-logging=stderr --v=0 --virtual-time-budget=5000 "$@" \
    >"$prefix.out" 2>"$prefix.err"
}

# check_page HTML NAME: 0 when the page passes every check, 1 otherwise
# (reasons on stdout).
check_page() {
  local html="$1" name="$2" ok=0
  local svgs; svgs=$(grep -o '<svg' "$html" | wc -l)
  chrome "$name.dom" --dump-dom "file://$html" || { echo "$name: chromium --dump-dom failed: $(tail -3 "$name.dom.err")"; return 1; }
  if grep -E 'CONSOLE|ERR_FILE|Failed to load' "$name.dom.err" >"$name.console"; then
    echo "$name: console messages: $(cat "$name.console")"; ok=1
  fi
  grep -q "data-pictures=\"$svgs\"" "$name.dom.out" \
    || { echo "$name: the page did not report $svgs pictures: $(grep -o 'data-[a-z]*="[0-9]*"' "$name.dom.out" | tr '\n' ' ')"; ok=1; }
  grep -q 'data-bad="0"' "$name.dom.out" || { echo "$name: pictures without a size"; ok=1; }
  chrome "$name.shot" --screenshot="$WORK/$name.png" --window-size=1280,2400 "file://$html" \
    || { echo "$name: chromium --screenshot failed: $(tail -3 "$name.shot.err")"; return 1; }
  /usr/bin/python3 - "$WORK/$name.png" <<'PY' || ok=1
import sys
from PIL import Image
img = Image.open(sys.argv[1]).convert("RGB")
w, h = img.size
px = img.getdata()
ink = sum(1 for p in px if sum(p) < 720)
colours = len(set(px))
share = ink / (w * h)
print("%s: %dx%d, %.1f%% non-white pixels, %d colours" % (sys.argv[1].split("/")[-1], w, h, 100 * share, colours))
sys.exit(0 if share > 0.02 and colours > 20 else 1)
PY
  return $ok
}

/usr/bin/python3 "$ROOT/tests/report_fixture.py" "$WORK/run" || { echo "FAIL: fixture"; exit 1; }
"$REPORT" "$WORK/run" --out="$WORK/report.html" --title="demo-sized fixture" >report.txt 2>&1 \
  || { echo "FAIL: report: $(cat report.txt)"; exit 1; }
svgs=$(grep -o '<svg' report.html | wc -l)
[ "$svgs" -ge 30 ] || fail "only $svgs pictures in the demo-sized report"
check_page "$WORK/report.html" good || fail "the report does not pass in Chromium"

# A page with a picture that has no size must fail the same checks.
sed 's#<figure><svg#<figure><svg width="0" height="0"></svg></figure><figure><svg#' report.html > bad.html
if check_page "$WORK/bad.html" bad >bad.txt; then
  fail "a page with an empty picture passed: $(cat bad.txt)"
fi
grep -q "console messages" bad.txt || fail "the empty picture was not reported on the console: $(cat bad.txt)"

[ "$failures" -eq 0 ] && echo "PASS ($svgs pictures)" || { echo "$failures failure(s)"; exit 1; }
