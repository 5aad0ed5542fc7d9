"""Summarises TimeBalance pipeline runs (one per seed, plus optional
ablation runs) into a Markdown table and an SVG bar chart of the per-class
accuracy difference between the two fine-tuned teachers.

Usage:
  results_report.py SYNTH_DIR OUT_SVG RUN_DIR [RUN_DIR ...] [--ablation NAME=RUN_DIR ...]
Each RUN_DIR holds a pipeline results.json. Prints Markdown to stdout.
Means and standard deviations are over the runs given (seeds).
"""
import json
import math
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


def mean_std(xs):
    m = sum(xs) / len(xs)
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, s


def fmt(xs):
    m, s = mean_std([100 * x for x in xs])
    return "%.1f" % m if len(xs) == 1 else "%.1f ± %.1f" % (m, s)


def by_family(per_class, fam, key="top1"):
    out = {}
    for c in per_class:
        out.setdefault(fam.get(c["class_name"], "?"), []).append(c[key])
    return {k: sum(v) / len(v) for k, v in out.items()}


def svg(diffs, path):
    """diffs: list of (class, family, mean difference in points)."""
    diffs = sorted(diffs, key=lambda d: d[2])
    w, bar, gap, left, top = 720, 22, 6, 230, 30
    h = top + len(diffs) * (bar + gap) + 40
    scale = (w - left - 40) / (2 * max(1.0, max(abs(d[2]) for d in diffs)))
    mid = left + (w - left - 40) / 2
    lines = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
             'font-family="sans-serif" font-size="12">' % (w, h),
             '<text x="10" y="18" font-size="13">Per-class top-1 difference: distinctive '
             'teacher minus invariant teacher (points, mean over seeds)</text>']
    for i, (name, family, d) in enumerate(diffs):
        y = top + i * (bar + gap)
        x0 = mid if d >= 0 else mid + d * scale
        color = "#c0504d" if family == "sequential" else "#4f81bd"
        lines.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>'
                     % (x0, y, abs(d) * scale, bar, color))
        lines.append('<text x="%d" y="%d" text-anchor="end">%s (%s)</text>'
                     % (left - 6, y + 15, name, family))
        lines.append('<text x="%.1f" y="%d" font-size="11">%+.1f</text>'
                     % (x0 + abs(d) * scale + 3 if d >= 0 else x0 - 34, y + 15, d))
    lines.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>'
                 % (mid, top - 4, mid, h - 30))
    lines.append('<text x="10" y="%d">red: sequential classes, blue: cyclic classes</text>'
                 % (h - 10))
    lines.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    args = sys.argv[1:]
    synth_dir, out_svg = args[0], args[1]
    runs, ablations = [], {}
    i = 2
    while i < len(args):
        if args[i] == "--ablation":
            name, run = args[i + 1].split("=", 1)
            ablations.setdefault(name, []).append(run)
            i += 2
        else:
            runs.append(args[i])
            i += 1
    fam = families(synth_dir)
    results = [json.load(open(os.path.join(r, "results.json"))) for r in runs]
    rows = [("supervised (labeled only)", "supervised"),
            ("invariant teacher, fine-tuned", "invariant_teacher"),
            ("distinctive teacher, fine-tuned", "distinctive_teacher"),
            ("TimeBalance student", "student")]
    print("| model | top-1 % | top-5 % | cyclic top-1 % | sequential top-1 % |")
    print("|---|---|---|---|---|")
    for label, key in rows:
        ms = [r[key] for r in results if key in r]
        if not ms:
            continue
        fams = [by_family(m["per_class"], fam) for m in ms]
        print("| %s | %s | %s | %s | %s |" % (
            label, fmt([m["top1"] for m in ms]), fmt([m["top5"] for m in ms]),
            fmt([f.get("cyclic", 0) for f in fams]), fmt([f.get("sequential", 0) for f in fams])))
    for name, dirs in sorted(ablations.items()):
        ms = [json.load(open(os.path.join(d, "results.json")))["student"] for d in dirs]
        fams = [by_family(m["per_class"], fam) for m in ms]
        print("| student, %s | %s | %s | %s | %s |" % (
            name, fmt([m["top1"] for m in ms]), fmt([m["top5"] for m in ms]),
            fmt([f.get("cyclic", 0) for f in fams]), fmt([f.get("sequential", 0) for f in fams])))
    print()
    print("Self-supervised teachers before fine-tuning (kNN on backbone features, k=10; "
          "temporal similarity = mean cosine between a training video's 4 clips):")
    print()
    print("| teacher | kNN top-1 % | cyclic kNN % | sequential kNN % | temporal similarity |")
    print("|---|---|---|---|---|")
    for label, key in [("invariant (L_IC)", "ssl_invariant"),
                       ("distinctive (L_LL + L_GL)", "ssl_distinctive")]:
        ms = [r[key] for r in results if key in r]
        if not ms:
            continue
        fams = [by_family(m["per_class"], fam, "knn_top1") for m in ms]
        ts = [m["temporal_similarity"] for m in ms]
        tm, tsd = mean_std(ts)
        print("| %s | %s | %s | %s | %.3f ± %.3f |" % (
            label, fmt([m["knn_top1"] for m in ms]), fmt([f.get("cyclic", 0) for f in fams]),
            fmt([f.get("sequential", 0) for f in fams]), tm, tsd))
    # Per-class teacher difference.
    classes = [c["class_name"] for c in results[0]["student"]["per_class"]]
    diffs = []
    for ci, name in enumerate(classes):
        d = [100 * (r["distinctive_teacher"]["per_class"][ci]["top1"] -
                    r["invariant_teacher"]["per_class"][ci]["top1"]) for r in results]
        diffs.append((name, fam.get(name, "?"), sum(d) / len(d)))
    svg(diffs, out_svg)
    print()
    print("Per-class difference (distinctive - invariant teacher, points): " + ", ".join(
        "%s %+.1f" % (n, d) for n, _, d in sorted(diffs, key=lambda x: x[2])))


if __name__ == "__main__":
    main()
