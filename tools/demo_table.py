"""Prints the demo's results table from run directories' results.json.

Usage: demo_table.py SYNTH_DIR RUN_DIR [RUN_DIR ...]
Per-family accuracy uses SYNTH_DIR/synth_actions.txt (class -> cyclic or
sequential) and the per-class accuracies (each class has the same number of
test videos, so the family accuracy is the mean over its classes).
"""
import json
import os
import sys


def families(synth_dir):
    fam = {}
    with open(os.path.join(synth_dir, "synth_actions.txt")) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[0].isdigit():
                fam[parts[1]] = parts[2]
    return fam


def main():
    synth_dir, runs = sys.argv[1], sys.argv[2:]
    fam = families(synth_dir)
    print("| labels | labeled videos | top-1 % | top-5 % | cyclic top-1 % | "
          "sequential top-1 % | wall s |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        with open(os.path.join(run, "results.json")) as f:
            r = json.load(f)
        t = r["test"]
        by_family = {}
        for name, c in t["per_class"].items():
            by_family.setdefault(fam.get(name, "?"), []).append(c["top1"])
        mean = lambda xs: 100.0 * sum(xs) / len(xs) if xs else float("nan")
        wall_path = os.path.join(run, "wall_seconds")
        wall = open(wall_path).read().strip() if os.path.exists(wall_path) else "-"
        print("| %g%% | %d | %.1f | %.1f | %.1f | %.1f | %s |" % (
            100 * r["labeled_fraction"], r["labeled_videos"], 100 * t["top1"],
            100 * t["top5"], mean(by_family.get("cyclic", [])),
            mean(by_family.get("sequential", [])), wall))


if __name__ == "__main__":
    main()
