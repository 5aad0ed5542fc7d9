#!/usr/bin/env python3
"""The TimeBalance claims study at a converged pretraining budget.

Runs //tools:timebalance on one pipeline config (e.g.
configs/timebalance_claims_r3d18tiny_synth_10pct.pbtxt) in four parts:

  1. learning curve: for every budget B of --budgets and every seed of
     --curve_seeds, SSL pretraining of both teachers for B steps and their
     supervised fine-tuning (run directory OUT/b<B>_s<seed>);
  2. the supervised baseline (random init, labeled subset) for every seed of
     --seeds (OUT/supervised_s<seed>);
  3. TimeBalance at the claims budget for every seed of --seeds: the
     learning-curve run directory continued with the score and the student
     (its finished stages are reused);
  4. the same with fixed 0.5 mixing: a copy of that directory with
     `score { fixed_weight { weight: 0.5 } }`, so only the score and the
     student rerun.

The claims budget is --budget, or else the smallest budget of the curve at
which a fine-tuned SSL teacher's mean top-1 beats the supervised baseline's
(the largest budget when none does; the table says so). Every run passes
--resume, so an interrupted study continues where it stopped when run again.
Writes OUT/claims.md (and prints it): the learning curve and every claim with
mean +- sample std over seeds and a plain verdict.

  /usr/bin/python3 tools/claims_study.py \
      --config=configs/timebalance_claims_r3d18tiny_synth_10pct.pbtxt \
      --data=data/synth_actions --out=runs/claims --budgets=90,270,810 --jobs=2

Exit codes: 0 done, 1 a run failed (its log is named), 2 bad arguments.
"""

import argparse
import concurrent.futures
import json
import math
import os
import shutil
import subprocess
import sys
import threading

CURVE_STAGES = "pretrain_invariant,pretrain_distinctive,finetune_invariant,finetune_distinctive"
FULL_STAGES = CURVE_STAGES + ",score,distill,supervised"


def die(message):
    print("claims_study: " + message, file=sys.stderr)
    sys.exit(2)


def parse_ints(text, flag):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        die(f"--{flag}={text!r} is not a comma-separated list of integers")
    if not values:
        die(f"--{flag} is empty")
    return values


def mean_std(values):
    n = len(values)
    m = sum(values) / n
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return m, s


def pm(values):
    """Top-1 fractions as 'mean ± std' in points."""
    m, s = mean_std([100 * v for v in values])
    return f"{m:.1f} ± {s:.1f}"


class Study:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()

    def say(self, text):
        with self.lock:
            print(text, flush=True)

    def run(self, name, run_dir, stages, extra_override=""):
        """Runs the pipeline for one directory; raises on failure."""
        a = self.args
        override = (f'seed: {self.seed_of(name)} dataset {{ labeled_seed: {self.seed_of(name)} '
                    f'ucf101 {{ root: "{a.data}" }} }} ' + extra_override)
        cmd = [a.bin, f"--config={a.config}", f"--run_dir={run_dir}", f"--override={override}",
               f"--stages={stages}", f"--num_threads={a.threads}", "--resume"]
        log = os.path.join(a.out, "logs", name + ".log")
        self.say(f"[start] {name}")
        with open(log, "a") as f:
            f.write("$ " + " ".join(cmd) + "\n")
            f.flush()
            code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
        if code != 0:
            raise RuntimeError(f"{name} exited with {code}; see {log}")
        self.say(f"[done]  {name}")

    @staticmethod
    def seed_of(name):
        return int(name.split("_s")[1].split("_")[0])

    def budget_override(self, budget, extra=""):
        return (f"timebalance {{ pretrain_invariant {{ schedule {{ steps: {budget} }} }} "
                f"pretrain_distinctive {{ schedule {{ steps: {budget} }} }} {extra}}}")

    def run_parallel(self, tasks):
        """tasks: list of (name, callable). Runs them on --jobs workers."""
        failures = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.args.jobs) as pool:
            futures = {pool.submit(fn): name for name, fn in tasks}
            for fut in concurrent.futures.as_completed(futures):
                try:
                    fut.result()
                except Exception as e:  # noqa: BLE001 (reported below)
                    failures.append(str(e))
        if failures:
            for f in failures:
                print("claims_study: " + f, file=sys.stderr)
            sys.exit(1)

    def curve_dir(self, budget, seed):
        return os.path.join(self.args.out, f"b{budget}_s{seed}")

    def curve_task(self, budget, seed, stages):
        name = f"b{budget}_s{seed}"
        return name, lambda: self.run(name, self.curve_dir(budget, seed), stages,
                                      self.budget_override(budget))

    def full_task(self, budget, seed):
        name = f"b{budget}_s{seed}"
        run_dir = self.curve_dir(budget, seed)

        def go():
            # The supervised baseline's stage does not depend on the budget:
            # a copy of the finished one is reused (same fingerprint).
            src = os.path.join(self.args.out, f"supervised_s{seed}", "stages", "supervised")
            dst = os.path.join(run_dir, "stages", "supervised")
            if not os.path.exists(dst):
                copy_dir(src, dst)
            self.run(name, run_dir, FULL_STAGES, self.budget_override(budget))
        return name, go

    def supervised_task(self, seed):
        name = f"supervised_s{seed}"
        return name, lambda: self.run(name, os.path.join(self.args.out, name), "supervised")

    def fixed_task(self, budget, seed):
        name = f"b{budget}_s{seed}_fixed"
        src, dst = self.curve_dir(budget, seed), os.path.join(self.args.out, name)

        def go():
            if not os.path.exists(dst):
                # The finished teachers are reused through their stage records
                # (the fingerprints leave the run directory out).
                copy_dir(os.path.join(src, "stages"), os.path.join(dst, "stages"),
                         ignore=shutil.ignore_patterns("score", "distill", "lock"))
            self.run(name, dst, FULL_STAGES,
                     self.budget_override(budget, "score { fixed_weight { weight: 0.5 } } "))
        return name, go


def copy_dir(src, dst, ignore=None):
    """Copies a finished directory; a partial copy is never left at `dst`."""
    tmp = dst + ".copying"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=ignore)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    os.rename(tmp, dst)


def load(path):
    with open(path) as f:
        return json.load(f)


def stage_top1(run_dir, stage):
    return load(os.path.join(run_dir, "stages", stage, "results.json"))["test"]["top1"]


def choose_budget(args, curve, supervised):
    sup = mean_std(supervised)[0]
    for b in args.budgets:
        if max(mean_std(curve[b]["inv"])[0], mean_std(curve[b]["dist"])[0]) > sup:
            return b, True
    return args.budgets[-1], False


def verdict(diffs):
    m = mean_std(diffs)[0]
    wins = sum(d > 0 for d in diffs)
    if m > 0 and wins == len(diffs):
        return f"held (in {wins} of {len(diffs)} seeds)"
    if m > 0:
        return f"held on average, not in every seed ({wins} of {len(diffs)})"
    return f"did not hold ({wins} of {len(diffs)} seeds)"


def claims_table(args, budget, found):
    out = args.out
    lines = []
    sup = [stage_top1(os.path.join(out, f"supervised_s{s}"), "supervised") for s in args.seeds]
    curve = {}
    for b in args.budgets:
        curve[b] = {k: [stage_top1(os.path.join(out, f"b{b}_s{s}"), f"finetune_{st}")
                        for s in args.curve_seeds]
                    for k, st in (("inv", "invariant"), ("dist", "distinctive"))}
    sup_curve = [sup[args.seeds.index(s)] for s in args.curve_seeds]
    lines.append(f"Learning curve (top-1 %, mean ± std over seeds {args.curve_seeds}; "
                 f"supervised from random init: {pm(sup_curve)}):")
    lines.append("")
    lines.append("| SSL pretraining steps | invariant teacher, fine-tuned | "
                 "distinctive teacher, fine-tuned | beats random init |")
    lines.append("|---:|---:|---:|---|")
    sup_mean = mean_std(sup_curve)[0]
    for b in args.budgets:
        better = [k for k, label in (("inv", "invariant"), ("dist", "distinctive"))
                  if mean_std(curve[b][k])[0] > sup_mean]
        names = {"inv": "invariant", "dist": "distinctive"}
        lines.append(f"| {b} | {pm(curve[b]['inv'])} | {pm(curve[b]['dist'])} | "
                     f"{', '.join(names[k] for k in better) or 'neither'} |")
    lines.append("")
    why = ("the smallest budget at which a fine-tuned SSL teacher beats random init"
           if found else "no budget of the curve reached it; the largest one")
    if args.budget:
        why = "chosen by --budget"
    lines.append(f"Claims at {budget} pretraining steps ({why}), seeds {args.seeds}:")
    lines.append("")
    runs = [load(os.path.join(out, f"b{budget}_s{s}", "results.json")) for s in args.seeds]
    fixed = [load(os.path.join(out, f"b{budget}_s{s}_fixed", "results.json")) for s in args.seeds]
    student = [r["student"]["top1"] for r in runs]
    inv = [r["invariant_teacher"]["top1"] for r in runs]
    dist = [r["distinctive_teacher"]["top1"] for r in runs]
    fixed_student = [r["student"]["top1"] for r in fixed]
    lines.append("| model | top-1 % |")
    lines.append("|---|---:|")
    for label, v in (("supervised (random init)", sup), ("invariant teacher", inv),
                     ("distinctive teacher", dist),
                     ("TimeBalance student, temporal-similarity mixing", student),
                     ("student with fixed 0.5 mixing", fixed_student)):
        lines.append(f"| {label} | {pm(v)} |")
    lines.append("")
    lines.append("| claim | difference (points, mean ± std) | verdict |")
    lines.append("|---|---:|---|")

    def claim(label, a, b):
        d = [100 * (x - y) for x, y in zip(a, b)]
        m, s = mean_std(d)
        lines.append(f"| {label} | {m:+.1f} ± {s:.1f} | {verdict(d)} |")

    claim("student beats supervised", student, sup)
    claim("student beats the invariant teacher", student, inv)
    claim("student beats the distinctive teacher", student, dist)
    claim("temporal-similarity mixing beats fixed 0.5 mixing", student, fixed_student)
    # Per-class complementarity: classes on which one teacher is better than
    # the other in every seed.
    classes = [c["class_name"] for c in runs[0]["invariant_teacher"]["per_class"]]
    per = {c: [] for c in classes}
    for r in runs:
        i = {c["class_name"]: c["top1"] for c in r["invariant_teacher"]["per_class"]}
        d = {c["class_name"]: c["top1"] for c in r["distinctive_teacher"]["per_class"]}
        for c in classes:
            per[c].append(100 * (i[c] - d[c]))
    inv_better = sorted(c for c in classes if all(x > 0 for x in per[c]))
    dist_better = sorted(c for c in classes if all(x < 0 for x in per[c]))
    lines.append("")
    held = "held" if inv_better and dist_better else "did not hold"
    lines.append(f"Per-class complementarity ({held}): the invariant teacher is better in every "
                 f"seed on {len(inv_better)} classes ({', '.join(inv_better) or 'none'}), the "
                 f"distinctive teacher on {len(dist_better)} ({', '.join(dist_better) or 'none'}) "
                 f"of {len(classes)}.")
    lines.append("")
    lines.append("| class | invariant - distinctive (points, mean ± std) |")
    lines.append("|---|---:|")
    for c in classes:
        m, s = mean_std(per[c])
        lines.append(f"| {c} | {m:+.1f} ± {s:.1f} |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--data", required=True, help="SynthActions root (ucf101 layout)")
    p.add_argument("--out", required=True)
    p.add_argument("--budgets", default="90,270,810")
    p.add_argument("--curve_seeds", default="0,1")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--budget", type=int, default=0,
                   help="claims budget (default: chosen from the curve)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="LibTorch threads per run")
    p.add_argument("--bin", default="bazel-bin/tools/timebalance")
    p.add_argument("--curve_only", action="store_true",
                   help="stop after the learning curve and the supervised baseline")
    args = p.parse_args()
    args.budgets = sorted(set(parse_ints(args.budgets, "budgets")))
    args.curve_seeds = parse_ints(args.curve_seeds, "curve_seeds")
    args.seeds = parse_ints(args.seeds, "seeds")
    if not set(args.curve_seeds) <= set(args.seeds):
        die(f"--curve_seeds {args.curve_seeds}: every seed must also be in --seeds {args.seeds}")
    if args.budget and args.budget not in args.budgets:
        args.budgets = sorted(set(args.budgets) | {args.budget})
    for path, what in ((args.config, "--config"), (args.bin, "--bin"), (args.data, "--data")):
        if not os.path.exists(path):
            die(f"{what} {path} does not exist")
    if min(args.budgets) < 1:
        die(f"--budgets {args.budgets}: every budget must be >= 1 step")
    if args.jobs < 1 or args.threads < 1:
        die(f"--jobs={args.jobs} and --threads={args.threads} must be >= 1")
    args.data = os.path.abspath(args.data)
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    study = Study(args)

    # Longest runs first, so the two workers finish together.
    tasks = [study.curve_task(b, s, CURVE_STAGES)
             for b in sorted(args.budgets, reverse=True) for s in args.curve_seeds]
    tasks += [study.supervised_task(s) for s in args.seeds]
    study.run_parallel(tasks)
    sup = [stage_top1(os.path.join(args.out, f"supervised_s{s}"), "supervised")
           for s in args.curve_seeds]
    curve = {b: {k: [stage_top1(study.curve_dir(b, s), f"finetune_{st}")
                     for s in args.curve_seeds]
                 for k, st in (("inv", "invariant"), ("dist", "distinctive"))}
             for b in args.budgets}
    budget, found = (args.budget, True) if args.budget else choose_budget(args, curve, sup)
    if args.curve_only:
        for b in args.budgets:
            print(f"budget {b}: invariant {pm(curve[b]['inv'])}, distinctive "
                  f"{pm(curve[b]['dist'])}, supervised {pm(sup)}")
        return
    study.say(f"claims budget: {budget} steps" +
              ("" if found else " (no budget of the curve beat random init)"))
    study.run_parallel([study.full_task(budget, s) for s in args.seeds])
    study.run_parallel([study.fixed_task(budget, s) for s in args.seeds])
    table = claims_table(args, budget, found)
    with open(os.path.join(args.out, "claims.md"), "w") as f:
        f.write(table)
    print(table, end="")


if __name__ == "__main__":
    main()
