#!/usr/bin/env python3
"""Bad-bytes drill: feeds deterministically damaged copies of small videos to
decode_frames and counts how each run ends.

  python3 tools/bad_bytes_drill.py --decode_frames=bazel-bin/tools/decode_frames \
      --files=2000 --seed=1 --work=/tmp/drill

Fixture videos (one per codec/container the project reads: MPEG-4 part 2 AVI
with and without B-frames, Xvid, H.264 MP4/MKV, a variable-frame-rate H.264
MKV, HEVC, MJPEG, MS-MPEG4v3, Cinepak) are encoded with the ffmpeg CLI from
lavfi test sources; encoders missing from the local ffmpeg are skipped and
named. Copy i is fixture i % (number of fixtures) with one mutation drawn
from random.Random("<seed>:<i>"): flipped bits, a zeroed range, a range
overwritten with random bytes, the file cut short, a range cut out of the
middle, or a range duplicated. The same --seed and --files always give the
same bytes.

Each copy is decoded with `timeout -k 2 <T> decode_frames --video=COPY
--frames=0,3,1` and classified by how it ends:
  decoded       exit 0
  damaged       exit 1 and the message says "damaged"
  error         exit 1 or 2 with a message naming the file (clean error)
  unnamed       exit 1 or 2, but the message does not name the file
  hang          killed by the timeout (exit 124 or 137)
  crash         any other exit (signals: SIGSEGV, SIGABRT, ...)
Hangs, crashes and unnamed errors are copied to <work>/keep/ for
reproduction; `--only=I` re-runs a single copy. The last stdout line is
JSON with the counts and the largest wall time and CPU time (user + system,
decode_frames and timeout) of one file. Exit code 0
when there were no hangs, crashes or unnamed errors, 1 otherwise, 2 for bad
arguments.
"""
import argparse
import collections
import concurrent.futures
import json
import os
import random
import shutil
import subprocess
import sys
import time

SOURCE = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-frames:v", "60"]
X264 = ["-c:v", "libx264", "-bf", "2", "-g", "15", "-x264-params", "b-adapt=0",
        "-pix_fmt", "yuv420p"]
# name, encoder that must exist, ffmpeg output arguments (before the file name)
FIXTURES = [
    ("mpeg4.avi", "mpeg4", ["-c:v", "mpeg4", "-g", "12", "-q:v", "5"]),
    ("mpeg4_bframes.avi", "mpeg4", ["-c:v", "mpeg4", "-bf", "2", "-g", "15", "-q:v", "5"]),
    ("xvid.avi", "libxvid", ["-c:v", "libxvid", "-q:v", "5"]),
    ("h264.mp4", "libx264", X264),
    ("h264.mkv", "libx264", X264),
    ("h264_vfr.mkv", "libx264",
     ["-vf", "select='not(eq(mod(n,5),2))*not(eq(mod(n,7),3))'", "-fps_mode", "vfr"] + X264),
    ("hevc.mp4", "libx265", ["-c:v", "libx265", "-x265-params", "log-level=error:bframes=2",
                             "-g", "15", "-pix_fmt", "yuv420p", "-tag:v", "hvc1"]),
    ("mjpeg.avi", "mjpeg", ["-c:v", "mjpeg", "-q:v", "5", "-pix_fmt", "yuvj420p"]),
    ("msmpeg4v3.avi", "msmpeg4", ["-c:v", "msmpeg4", "-q:v", "5"]),
    ("cinepak.avi", "cinepak", ["-c:v", "cinepak"]),
]
MUTATIONS = ["flip", "zero", "random", "cut_end", "cut_range", "duplicate"]
OUTCOMES = ["decoded", "damaged", "error", "unnamed", "hang", "crash"]


def encoders():
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True,
                         text=True, check=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS":
            names.add(parts[1])
    return names


def build_fixtures(folder):
    os.makedirs(folder, exist_ok=True)
    have = encoders()
    built = []
    for name, encoder, args in FIXTURES:
        if encoder not in have:
            print(f"bad_bytes_drill: skipping {name}: ffmpeg has no {encoder} encoder",
                  file=sys.stderr)
            continue
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            # bitexact: no random Matroska segment UID, no version strings,
            # so a seed gives the same bytes on every machine with this ffmpeg.
            subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
                           + SOURCE + args + ["-fflags", "+bitexact", "-flags:v", "+bitexact",
                                              path + ".tmp" + os.path.splitext(name)[1]],
                           check=True)
            os.replace(path + ".tmp" + os.path.splitext(name)[1], path)
        with open(path, "rb") as f:
            built.append((name, f.read()))
    return built


def mutate(data, rng):
    """One damaged copy of `data` and a description of what was done."""
    b = bytearray(data)
    n = len(b)
    kind = rng.choice(MUTATIONS)
    length = min(n - 1, rng.choice([1, 4, 16, 64, 256, 1024, 4096]))
    start = rng.randrange(0, n - length)
    if kind == "flip":
        bits = rng.randint(1, 8)
        where = sorted(rng.randrange(0, n * 8) for _ in range(bits))
        for bit in where:
            b[bit // 8] ^= 1 << (bit % 8)
        return bytes(b), f"flip bits {where}"
    if kind == "zero":
        b[start:start + length] = bytes(length)
        return bytes(b), f"zero [{start}, {start + length})"
    if kind == "random":
        b[start:start + length] = bytes(rng.randrange(256) for _ in range(length))
        return bytes(b), f"random bytes [{start}, {start + length})"
    if kind == "cut_end":
        keep = rng.randrange(1, n)
        return bytes(b[:keep]), f"cut to {keep} of {n} bytes"
    if kind == "cut_range":
        return bytes(b[:start] + b[start + length:]), f"cut [{start}, {start + length})"
    to = rng.randrange(0, n)
    return bytes(b[:to] + b[start:start + length] + b[to:]), \
        f"duplicate [{start}, {start + length}) at {to}"


def classify(rc, stderr, path):
    if rc == 0:
        return "decoded"
    if rc in (124, 137):
        return "hang"
    if rc in (1, 2):
        if os.path.basename(path) not in stderr:
            return "unnamed"
        return "damaged" if "damaged" in stderr else "error"
    return "crash"


def run_one(args, fixtures, i):
    rng = random.Random(f"{args.seed}:{i}")
    name, data = fixtures[i % len(fixtures)]
    damaged, what = mutate(data, rng)
    stem, ext = os.path.splitext(name)
    path = os.path.join(args.work, "copies", f"{i:06d}_{stem}{ext}")
    with open(path, "wb") as f:
        f.write(damaged)
    out = path + ".rgb"
    start = time.monotonic()
    err_path = path + ".err"
    with open(err_path, "w") as err:
        child = subprocess.Popen(["timeout", "-k", "2", str(args.timeout), args.decode_frames,
                                  f"--video={path}", f"--frames={args.frames}", f"--out={out}"],
                                 stdout=subprocess.DEVNULL, stderr=err)
        # wait4 gives this run's CPU time (timeout's and decode_frames'),
        # which other work on the machine does not inflate as it does the
        # wall time.
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - start
    cpu = usage.ru_utime + usage.ru_stime
    with open(err_path, errors="replace") as err:
        stderr = err.read()
    os.remove(err_path)
    outcome = classify(child.returncode, stderr, path)
    if outcome in ("hang", "crash", "unnamed"):
        keep = os.path.join(args.work, "keep")
        os.makedirs(keep, exist_ok=True)
        shutil.copy(path, keep)
    for leftover in (path, out):
        if os.path.exists(leftover) and (outcome in ("decoded", "damaged", "error")
                                          or leftover == out):
            os.remove(leftover)
    message = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    return i, name, what, outcome, child.returncode, seconds, cpu, message


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--decode_frames", required=True, help="the decode_frames binary")
    ap.add_argument("--work", default="/tmp/bad_bytes_drill", help="scratch folder")
    ap.add_argument("--files", type=int, default=200, help="damaged copies to try")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=10, help="seconds per file")
    ap.add_argument("--frames", default="0,3,1")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--only", type=int, default=-1, help="run copy I only")
    ap.add_argument("--verbose", action="store_true", help="one line per copy")
    try:
        args = ap.parse_args()
    except SystemExit as e:
        sys.exit(2 if e.code else 0)
    if args.files < 1 or args.jobs < 1 or args.timeout <= 0:
        print("bad_bytes_drill: --files, --jobs and --timeout must be positive", file=sys.stderr)
        sys.exit(2)
    if not os.access(args.decode_frames, os.X_OK):
        print(f"bad_bytes_drill: {args.decode_frames} is not an executable", file=sys.stderr)
        sys.exit(2)
    args.decode_frames = os.path.abspath(args.decode_frames)
    fixtures = build_fixtures(os.path.join(args.work, "fixtures"))
    os.makedirs(os.path.join(args.work, "copies"), exist_ok=True)
    indices = [args.only] if args.only >= 0 else range(args.files)
    counts = collections.Counter()
    per_fixture = collections.defaultdict(collections.Counter)
    slowest = (0.0, "")
    most_cpu = (0.0, "")
    pool = concurrent.futures.ThreadPoolExecutor(args.jobs)
    try:
        for i, name, what, outcome, rc, seconds, cpu, message in pool.map(
                lambda k: run_one(args, fixtures, k), indices):
            counts[outcome] += 1
            per_fixture[name][outcome] += 1
            if seconds > slowest[0]:
                slowest = (seconds, f"copy {i} ({name}, {what})")
            if cpu > most_cpu[0]:
                most_cpu = (cpu, f"copy {i} ({name}, {what})")
            done = sum(counts.values())
            if done % 100 == 0 and len(indices) > 100:
                print(f"bad_bytes_drill: {done}/{len(indices)} files, " +
                      ", ".join(f"{o} {counts[o]}" for o in OUTCOMES), file=sys.stderr,
                      flush=True)
            if args.verbose or outcome in ("hang", "crash", "unnamed"):
                print(f"{i:6d} {name:18s} {outcome:8s} rc={rc} {seconds:6.2f}s {cpu:6.2f}s cpu "
                      f"{what}: {message}")
    finally:
        # Also on an exception or Ctrl-C: do not start the copies still queued.
        pool.shutdown(wait=True, cancel_futures=True)
    print(f"{'fixture':18s} " + " ".join(f"{o:>8s}" for o in OUTCOMES))
    for name, _ in fixtures:
        print(f"{name:18s} " + " ".join(f"{per_fixture[name][o]:8d}" for o in OUTCOMES))
    print(f"{'total':18s} " + " ".join(f"{counts[o]:8d}" for o in OUTCOMES))
    print(f"slowest file: {slowest[0]:.2f} s wall, {slowest[1]}")
    print(f"most CPU: {most_cpu[0]:.2f} s, {most_cpu[1]}")
    summary = {"files": len(indices), "seed": args.seed, "fixtures": len(fixtures)}
    summary.update({o: counts[o] for o in OUTCOMES})
    summary["max_seconds"] = round(slowest[0], 3)
    summary["max_cpu_seconds"] = round(most_cpu[0], 3)
    print(json.dumps(summary))
    sys.exit(1 if counts["hang"] or counts["crash"] or counts["unnamed"] else 0)


if __name__ == "__main__":
    main()
