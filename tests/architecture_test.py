#!/usr/bin/env python3
"""Fails when a BUILD file breaks the allowed dependency directions.

The allowed directions are read from the table "Allowed dependencies" in
docs/ARCHITECTURE.md, so the document and the check cannot disagree. Every
label in every BUILD file of the workspace (deps, data, srcs of every rule,
tests included: `bazel query` counts them too) is mapped to its layer, the
longest table entry that is a prefix of its package ("datasets/formats" is
"datasets", "train/api" is its own layer). The test checks

  1. every edge between two layers is allowed by the table;
  2. the graph of Bazel packages has no cycle, reporting one path around it
     (what `bazel query 'somepath(//a/..., //b/...)'` both ways would show);
  3. tools/ holds binaries and scripts only: no cc_library, and every .cc
     file there is a *_main.cc;
  4. every package of the workspace belongs to a layer of the table.

Run by Bazel as //tests:architecture_test (the workspace is found through
the runfile of the WORKSPACE file), or by hand: tests/architecture_test.py
[workspace root].
"""
import os
import re
import sys


def find_root(argv):
    if len(argv) > 1:
        return os.path.abspath(argv[1])
    runfiles = os.environ.get("TEST_SRCDIR")
    if runfiles:
        workspace = os.path.join(runfiles, os.environ.get("TEST_WORKSPACE", "timebalance"),
                                 "WORKSPACE")
        # The runfile is a symlink into the source tree.
        return os.path.dirname(os.path.realpath(workspace))
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_table(root):
    """{layer: set(allowed layers)} from docs/ARCHITECTURE.md."""
    path = os.path.join(root, "docs", "ARCHITECTURE.md")
    text = open(path).read()
    start = text.find("## Allowed dependencies")
    if start < 0:
        sys.exit(f"{path}: no '## Allowed dependencies' section")
    table = {}
    for line in text[start:].splitlines()[1:]:
        if line.startswith("## "):
            break
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not line.startswith("|") or cells[0] in ("layer", "") or \
                set(cells[0]) <= set("-: "):
            continue
        allowed = set() if cells[1] in ("-", "—", "nothing") else \
            {c.strip().strip("`") for c in cells[1].split(",")}
        table[cells[0]] = allowed | {cells[0]}
    if not table:
        sys.exit(f"{path}: the allowed-dependencies table is empty")
    return table


def packages(root):
    """{package path: BUILD text} for every package outside third_party."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames
                       if not d.startswith(".") and not d.startswith("bazel-")
                       and not (rel == "." and d in ("third_party", "runs", "data"))]
        for name in ("BUILD.bazel", "BUILD"):
            if name in filenames:
                found["" if rel == "." else rel] = open(os.path.join(dirpath, name)).read()
                break
    return found


LABEL = re.compile(r'"(//[A-Za-z0-9_/.-]*)(?::[^"]*)?"|"(:[^"]+)"')


def edges(package, text):
    """Packages `package`'s BUILD text refers to (external repos ignored)."""
    out = set()
    for m in LABEL.finditer(text):
        if m.group(1) is not None:
            out.add(m.group(1)[2:].rstrip("/"))
    out.discard(package)
    out.discard("")  # the root package only exports files (README, WORKSPACE)
    out.discard("visibility")  # //visibility:public is not a package
    return out


def layer_of(package, table):
    best = None
    for layer in table:
        if package == layer or package.startswith(layer + "/"):
            if best is None or len(layer) > len(best):
                best = layer
    return best


def find_cycle(graph):
    """One cycle of package names, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def main(argv):
    root = find_root(argv)
    table = read_table(root)
    pkgs = packages(root)
    failures = []
    graph = {}
    pkgs.pop("", None)  # the root package only exports files
    for package, text in sorted(pkgs.items()):
        layer = layer_of(package, table)
        if layer is None:
            failures.append(f"package //{package} belongs to no layer of the table in "
                            f"docs/ARCHITECTURE.md")
            continue
        graph[package] = set()
        for dep in sorted(edges(package, text)):
            graph[package].add(dep)
            dep_layer = layer_of(dep, table)
            if dep_layer is None:
                failures.append(f"//{package} refers to //{dep}, which belongs to no layer")
            elif dep_layer not in table[layer]:
                failures.append(f"//{package} ({layer}) depends on //{dep} ({dep_layer}), "
                                f"which docs/ARCHITECTURE.md does not allow")
    cycle = find_cycle(graph)
    if cycle:
        failures.append("package cycle: " + " -> ".join("//" + p for p in cycle))
    tools = pkgs.get("tools", "")
    if re.search(r"\bcc_library\(", tools):
        failures.append("tools/BUILD.bazel declares a cc_library; libraries belong in their "
                        "packages (tools/ holds binaries and scripts)")
    for name in sorted(os.listdir(os.path.join(root, "tools"))):
        if name.endswith((".cc", ".h")) and not name.endswith("_main.cc"):
            failures.append(f"tools/{name} is library code; tools/ holds *_main.cc only")
    print(f"architecture: {len(pkgs)} packages, {len(table)} layers, "
          f"{sum(len(v) for v in graph.values())} package edges checked")
    for f in failures:
        print("FAIL: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
