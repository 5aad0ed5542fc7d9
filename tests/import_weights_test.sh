#!/usr/bin/env bash
# import_weights converts torchvision r3d_18 weights (exported by Debian's
# python3-torch) into a checkpoint; a head of the wrong size is refused with
# the mismatching names listed, and accepted with --nostrict only for names,
# never for shapes.
set -uo pipefail
IMPORT="$TEST_SRCDIR/timebalance/tools/import_weights"
EXPORT="$TEST_SRCDIR/timebalance/backbones/testdata/export_torchvision.py"
cd "$TEST_TMPDIR"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

mkdir -p ref
/usr/bin/python3 "$EXPORT" ref >export.txt 2>&1 || { cat export.txt; exit 1; }

mkdir -p ckpt
"$IMPORT" --from=ref/r3d18_weights.pt --backbone='r3d18 {}' --num_classes=10 \
  --out=ckpt/ckpt_00000000.pt >ok.txt 2>&1 || fail "import failed: $(cat ok.txt)"
grep -q "33171402 parameters" ok.txt || fail "unexpected parameter count: $(cat ok.txt)"
[ -s ckpt/ckpt_00000000.pt ] || fail "no checkpoint written"

"$IMPORT" --from=ref/r3d18_weights.pt --backbone='r3d18 {}' --num_classes=400 \
  --out=bad.pt >bad.txt 2>&1
[ $? -eq 1 ] || fail "wrong head size was accepted"
grep -q "fc.weight" bad.txt || fail "error does not name fc.weight: $(cat bad.txt)"
[ ! -e bad.pt ] || fail "a checkpoint was written despite the error"

"$IMPORT" --from=missing.pt --backbone='r3d18 {}' --out=x.pt >miss.txt 2>&1
[ $? -eq 1 ] || fail "missing file did not exit 1"
grep -q "missing.pt" miss.txt || fail "error does not name the file: $(cat miss.txt)"

"$IMPORT" --from=ref/r3d18_weights.pt --backbone='r3d99 {}' --out=x.pt >kind.txt 2>&1
[ $? -eq 2 ] || fail "bad --backbone did not exit 2"

if [ "$failures" -ne 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "import_weights checks passed"
