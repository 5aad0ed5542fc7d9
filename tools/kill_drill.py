#!/usr/bin/env python3
"""Kill drill: proves that a run killed with SIGKILL and resumed ends exactly
where an uninterrupted run ends.

  tools/kill_drill.py --kills=20 --seed=1 --work=/tmp/drill -- \
      bazel-bin/tools/timebalance --config=configs/supervised_r3d18tiny_8x4_synth_ci.pbtxt \
      --run_dir={dir} --num_threads=1 [--override=...]

The command after `--` is run with `{dir}` replaced by a run directory:
  1. once uninterrupted, in WORK/reference (its wall time T is measured);
  2. then in WORK/drill, killed with SIGKILL at N moments, each drawn
     uniformly from [--min_delay, --min_delay + 2 (T - --min_delay) / N]
     seconds after the (re)start (a seeded RNG: the same drill twice kills
     at the same moments), each time restarted with --resume_flag appended
     (default --resume) until N kills have landed, and finally run to
     completion. A run that finishes before its kill ends the drill early;
     the verdict line says how many kills landed (none = exit 1).
Then every results.json under both directories (the run's, each pipeline
stage's, each comparison cell's), comparison.csv and every cell_done.pbtxt
are compared after removing what may differ (wall times, throughput,
absolute paths): top-1, per-class accuracy, confusion matrices, step counts
and the evaluated models' SHA-256 (model_sha256) must be identical.

Prints one line per kill and per compared file, and a closing verdict line;
exit code 0 when everything is identical, 1 otherwise, 2 for bad arguments.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

# Keys whose values measure time or speed, or name places: left out of the
# comparison. Everything else must match exactly.
VOLATILE = re.compile(r"(seconds|_per_s|clips_per_s|skipped|checkpoint|run_dir|^dir$|path)$")


def run_to_end(cmd, log, timeout):
    start = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    return proc.returncode, time.monotonic() - start


def start(cmd, log):
    out = open(log, "ab")
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT), out


def strip_volatile(value):
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in sorted(value.items()) if not VOLATILE.search(k)}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value


def records(root):
    """{relative path: comparable content} of the files a run leaves."""
    found = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if name == "results.json":
                with open(path) as f:
                    found[rel] = strip_volatile(json.load(f))
            elif name == "comparison.csv" or name == "cells.csv":
                with open(path) as f:
                    rows = [line.rstrip("\n").split(",") for line in f]
                header = rows[0] if rows else []
                keep = [i for i, h in enumerate(header) if not VOLATILE.search(h)]
                found[rel] = [[r[i] for i in keep if i < len(r)] for r in rows]
            elif name == "cell_done.pbtxt":
                with open(path) as f:
                    found[rel] = [l for l in f.read().splitlines()
                                  if not re.match(r"\s*(seconds|checkpoint):", l)]
    return found


def normalise_cell_paths(found):
    """Cell folders end in a config fingerprint that is the same in both
    trees; nothing to do, but keep one place to adapt if that changes."""
    return found


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", required=True)
    parser.add_argument("--min_delay", type=float, default=1.0,
                        help="earliest kill after a start, seconds (LibTorch loads in ~1 s)")
    parser.add_argument("--resume_flag", default="--resume")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--keep", action="store_true", help="keep an existing WORK")
    if "--" not in argv:
        parser.print_usage(sys.stderr)
        print("kill_drill: error: the command to drill follows --", file=sys.stderr)
        return 2
    split = argv.index("--")
    args = parser.parse_args(argv[1:split])
    template = argv[split + 1:]
    if not template or not any("{dir}" in a for a in template):
        print("kill_drill: error: the command needs a {dir} placeholder for the run directory",
              file=sys.stderr)
        return 2
    if os.path.exists(args.work) and not args.keep:
        shutil.rmtree(args.work)
    os.makedirs(args.work, exist_ok=True)
    ref_dir = os.path.join(args.work, "reference")
    drill_dir = os.path.join(args.work, "drill")
    cmd = lambda d, resume: [a.replace("{dir}", d) for a in template] + \
        ([args.resume_flag] if resume and args.resume_flag else [])

    code, t_ref = run_to_end(cmd(ref_dir, False), os.path.join(args.work, "reference.log"),
                             args.timeout)
    if code != 0:
        print(f"kill_drill: the reference run failed with exit code {code} "
              f"(see {args.work}/reference.log)")
        return 1
    print(f"reference: finished in {t_ref:.1f} s")

    rng = random.Random(args.seed)
    log = os.path.join(args.work, "drill.log")
    landed = restarts = 0
    resume = False
    while landed < args.kills:
        # Each restart resumes the remaining work, so delays spread over
        # [min_delay, min_delay + 2 (T - min_delay) / N] (mean: an N-th of the
        # run) let all N kills land inside the run instead of after its end.
        span = 2.0 * max(0.0, t_ref - args.min_delay) / max(1, args.kills)
        delay = rng.uniform(args.min_delay, args.min_delay + span)
        proc, out = start(cmd(drill_dir, resume), log)
        resume = True
        try:
            proc.wait(timeout=delay)
            out.close()
            if proc.returncode != 0:
                print(f"kill_drill: a drill run exited with code {proc.returncode} "
                      f"(see {log})")
                return 1
            # Finished before the kill: the drill is over.
            print(f"run {restarts + 1}: finished before the kill at {delay:.2f} s")
            break
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            out.close()
            landed += 1
            print(f"kill {landed}: SIGKILL {delay:.2f} s after start {restarts + 1}")
        restarts += 1
    else:
        code, _ = run_to_end(cmd(drill_dir, True), log, args.timeout)
        if code != 0:
            print(f"kill_drill: the final resume failed with exit code {code} (see {log})")
            return 1

    ref = normalise_cell_paths(records(ref_dir))
    drill = normalise_cell_paths(records(drill_dir))
    mismatches = 0
    if not ref:
        print("kill_drill: the reference run left no results.json to compare")
        return 1
    for rel in sorted(set(ref) | set(drill)):
        if rel not in drill or rel not in ref:
            print(f"MISSING {rel}: only in {'reference' if rel in ref else 'drill'}")
            mismatches += 1
        elif ref[rel] != drill[rel]:
            print(f"DIFFERENT {rel}")
            mismatches += 1
        else:
            shas = re.findall(r"'model_sha256': '([0-9a-f]{12})", str(ref[rel]))
            print(f"identical {rel}" + (f" (model {', '.join(shas)}...)" if shas else ""))
    if landed == 0:
        print("kill_drill: no kill landed before the run finished (lower --min_delay)")
        return 1
    print(f"kill_drill: {landed} kills, {restarts} restarts, {len(ref)} files compared, "
          f"{mismatches} different: {'IDENTICAL' if mismatches == 0 else 'NOT IDENTICAL'}")
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
