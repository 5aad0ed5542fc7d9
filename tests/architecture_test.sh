#!/usr/bin/env bash
# Runs tests/architecture_test.py with Debian's interpreter (see its header):
# first on a small made-up workspace that breaks the rules, which it must
# reject, then on this workspace, which it must accept.
set -euo pipefail
check="$(dirname "$0")/architecture_test.py"
fake="${TEST_TMPDIR:-/tmp}/fake_workspace"
rm -rf "$fake" && mkdir -p "$fake"/{docs,core,ssl,semisup,tools}
cat > "$fake/docs/ARCHITECTURE.md" <<'MD'
## Allowed dependencies

| layer | may depend on |
|---|---|
| core | — |
| ssl | core |
| semisup | core, ssl |
| tools | core, ssl, semisup |
MD
echo 'cc_library(name = "c")' > "$fake/core/BUILD.bazel"
echo 'cc_library(name = "s", deps = ["//core:c", "//semisup:t"])' > "$fake/ssl/BUILD.bazel"
echo 'cc_library(name = "t", deps = ["//ssl:s"])' > "$fake/semisup/BUILD.bazel"
echo 'cc_library(name = "lib")' > "$fake/tools/BUILD.bazel"
touch "$fake/tools/helper.cc"
if out=$(/usr/bin/python3 "$check" "$fake"); then
  echo "architecture_test.py accepted a workspace that breaks the rules:"; echo "$out"; exit 1
fi
for want in "//ssl (ssl) depends on //semisup (semisup)" "package cycle: //semisup -> //ssl -> //semisup" \
            "declares a cc_library" "tools/helper.cc is library code"; do
  grep -qF "$want" <<< "$out" || { echo "missing \"$want\" in:"; echo "$out"; exit 1; }
done
exec /usr/bin/python3 "$check"
