"""Prints the demo's table from a TimeBalance pipeline results.json.

Usage: demo_table.py SYNTH_DIR RESULTS_JSON [--markdown-only]
Per-family accuracy uses SYNTH_DIR/synth_actions.txt (class -> cyclic or
sequential) and the per-class top-1 (each class has the same number of test
videos, so a family's accuracy is the mean over its classes).
"""
import json
import os
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_report import by_family, families  # noqa: E402


def main():
    synth_dir, path = sys.argv[1], sys.argv[2]
    fam = families(synth_dir)
    with open(path) as f:
        r = json.load(f)
    rows = [("supervised (same backbone, labeled only)", "supervised"),
            ("invariant teacher (L_IC, fine-tuned)", "invariant_teacher"),
            ("distinctive teacher (L_LL+L_GL, fine-tuned)", "distinctive_teacher"),
            ("TimeBalance student", "student")]
    print("| model | top-1 % | top-5 % | cyclic top-1 % | sequential top-1 % |")
    print("|---|---|---|---|---|")
    for label, key in rows:
        if key not in r:
            continue
        m = r[key]
        fm = {k: 100.0 * v for k, v in by_family(m["per_class"], fam).items()}
        print("| %s | %.1f | %.1f | %.1f | %.1f |" % (
            label, 100 * m["top1"], 100 * m["top5"], fm.get("cyclic", float("nan")),
            fm.get("sequential", float("nan"))))
    print()
    print("labeled videos %d of %d (list sha256 %s); student init %s; score rule %s" % (
        r["labeled_videos"], r["train_videos"], r["labeled_list_sha256"][:16], r["student_init"],
        r["score_rule"]))
    print("stage wall times: " + ", ".join(
        "%s %.0f s%s" % (s["stage"], s["seconds"], " (skipped)" if s["skipped"] else "")
        for s in r["stages"]))


if __name__ == "__main__":
    main()
