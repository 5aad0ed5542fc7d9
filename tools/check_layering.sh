#!/usr/bin/env bash
# Cross-checks docs/ARCHITECTURE.md's allowed dependencies with Bazel itself:
# for every pair of layers the table forbids, `bazel query 'somepath(A, B)'`
# must find no path (//tests:architecture_test checks the BUILD files
# without running Bazel; this runs the real query).
#   tools/check_layering.sh
source "$(dirname "${BASH_SOURCE[0]}")/bazel_env.sh"
pairs=$(/usr/bin/python3 - <<'PY'
import importlib.util, os
spec = importlib.util.spec_from_file_location("arch", "tests/architecture_test.py")
arch = importlib.util.module_from_spec(spec); spec.loader.exec_module(arch)
table = arch.read_table(os.getcwd())
def pattern(layer):
    # A layer's own targets, without the sub-packages that form layers of their own.
    excl = [l for l in table if l != layer and l.startswith(layer + "/")]
    return "(//%s/... %s)" % (layer, "".join(" - //%s/..." % e for e in excl))
for a in table:
    for b in table:
        if b not in table[a]:
            print(pattern(a) + "\t" + pattern(b) + "\t" + a + " -> " + b)
PY
)
bad=0; n=0
while IFS=$'\t' read -r from to name; do
  n=$((n + 1))
  path=$(bz query --noshow_progress "somepath($from, $to)" 2>/dev/null || echo "query failed")
  if [ -n "$path" ]; then echo "FORBIDDEN $name:"; echo "$path" | sed 's/^/  /'; bad=$((bad + 1)); fi
done <<< "$pairs"
echo "check_layering: $n forbidden layer pairs queried, $bad with a path"
[ "$bad" -eq 0 ]
