"""Compares self-supervised pretraining runs of two (or more) objectives on
SynthActions, per class family: kNN top-1 on the clip mean and on the clips
in time order, and the temporal-similarity diagnostic (raw and centred).

Usage:
  ssl_report.py SYNTH_DIR --run NAME=RUN_DIR [--run NAME=RUN_DIR ...]
Each RUN_DIR holds the results.json of a standalone SSL run
(`//tools:timebalance --config=configs/ssl_*.pbtxt`). Runs with the same NAME
are seeds of one objective; means ± sample std are over them. Prints Markdown.
"""
import json
import os
import sys

from results_report import by_family, families, fmt, mean_std


def fmt3(xs):
    m, s = mean_std(xs)
    return "%.3f" % m if len(xs) == 1 else "%.3f ± %.3f" % (m, s)


def main():
    args = sys.argv[1:]
    if len(args) < 3 or args[1] != "--run":
        sys.exit(__doc__)
    fam = families(args[0])
    runs = {}
    order = []
    i = 1
    while i < len(args):
        if args[i] != "--run" or i + 1 >= len(args) or "=" not in args[i + 1]:
            sys.exit("expected --run NAME=RUN_DIR, got %r" % args[i])
        name, run = args[i + 1].split("=", 1)
        path = os.path.join(run, "results.json")
        if not os.path.exists(path):
            sys.exit("%s: no results.json (is the run finished?)" % run)
        rep = json.load(open(path))["representation"]
        for key in ("knn_ordered_top1", "centered_temporal_similarity"):
            if key not in rep:
                sys.exit("%s: results.json lacks %s (written by an older binary; rerun with "
                         "--resume to re-evaluate)" % (path, key))
        if name not in runs:
            order.append(name)
        runs.setdefault(name, []).append(rep)
        i += 2
    def overall_and_families(reps, key, formatter):
        """The metric over all classes, then its cyclic and sequential means."""
        fams = [by_family(r["per_class"], fam, key) for r in reps]
        return [formatter([r[key] for r in reps]),
                formatter([f.get("cyclic", 0) for f in fams]),
                formatter([f.get("sequential", 0) for f in fams])]

    print("| objective | seeds | kNN top-1 % (clip mean) | cyclic | sequential "
          "| kNN top-1 % (clips in order) | cyclic | sequential |")
    print("|---|---|---|---|---|---|---|---|")
    for name in order:
        reps = runs[name]
        cols = [name, str(len(reps))] + overall_and_families(reps, "knn_top1", fmt) + \
            overall_and_families(reps, "knn_ordered_top1", fmt)
        print("| " + " | ".join(cols) + " |")
    print()
    print("| objective | temporal similarity (raw) | between videos (raw) "
          "| temporal similarity (centred) | cyclic (centred) | sequential (centred) |")
    print("|---|---|---|---|---|---|")
    for name in order:
        reps = runs[name]
        cols = [name, fmt3([r["temporal_similarity"] for r in reps]),
                fmt3([r["cross_video_similarity"] for r in reps])] + \
            overall_and_families(reps, "centered_temporal_similarity", fmt3)
        print("| " + " | ".join(cols) + " |")

if __name__ == "__main__":
    main()
