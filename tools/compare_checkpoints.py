#!/usr/bin/env python3
"""Compares the model tensors of two checkpoints (or two runs' latest ones).

  tools/compare_checkpoints.py RUN_OR_CKPT_A RUN_OR_CKPT_B [--tolerance=1e-4]
      [--buffers] [--top=5]

A run directory stands for its newest checkpoint (checkpoints/ckpt_*.pt).
Every module tensor (the archive's `module/...` entries: the trained model,
heads, teachers) is compared; parameters by default, BatchNorm running
statistics and other buffers too with --buffers. Prints the tensor count, the
largest absolute differences (name and value) and a verdict line; exit code
0 when the largest difference is within --tolerance, 1 when it is not or the
two hold different tensors, 2 for bad arguments or unreadable files.

Used by tests/distributed_e2e_test.sh (N ranks x B/N against 1 x B) and
useful for any "are these two models the same" question: checkpoints are
LibTorch archives that python3-torch reads with torch.jit.load.
"""
import argparse
import os
import sys


def newest_checkpoint(path):
    if os.path.isfile(path):
        return path
    folder = os.path.join(path, "checkpoints")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{path}: neither a checkpoint file nor a run directory "
                                "with checkpoints/")
    names = sorted(n for n in os.listdir(folder) if n.startswith("ckpt_") and n.endswith(".pt"))
    if not names:
        raise FileNotFoundError(f"{folder}: no ckpt_*.pt")
    return os.path.join(folder, names[-1])


def tensors(path, buffers):
    import torch  # late: --help works without it

    archive = torch.jit.load(path, map_location="cpu")
    out = {}
    for name, t in archive.named_parameters():
        if name.startswith("module/"):
            out[name] = t.detach()
    if buffers:
        for name, t in archive.named_buffers():
            if name.startswith("module/") and t.is_floating_point():
                out[name] = t.detach()
    return out


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--buffers", action="store_true",
                        help="also compare floating-point buffers (BatchNorm statistics)")
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        pa, pb = newest_checkpoint(args.a), newest_checkpoint(args.b)
        ta, tb = tensors(pa, args.buffers), tensors(pb, args.buffers)
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"compare_checkpoints: error: {e}", file=sys.stderr)
        return 2
    if ta.keys() != tb.keys():
        only_a = sorted(ta.keys() - tb.keys())[:5]
        only_b = sorted(tb.keys() - ta.keys())[:5]
        print(f"compare_checkpoints: different tensors: only in A {only_a}, only in B {only_b}")
        return 1
    diffs = []
    for name, x in ta.items():
        y = tb[name]
        if x.shape != y.shape:
            print(f"compare_checkpoints: {name}: shape {tuple(x.shape)} vs {tuple(y.shape)}")
            return 1
        diffs.append(((x.double() - y.double()).abs().max().item() if x.numel() else 0.0, name))
    diffs.sort(reverse=True)
    print(f"{pa}\n{pb}\n{len(diffs)} tensors compared")
    for value, name in diffs[:args.top]:
        print(f"  {value:.3e}  {name}")
    worst = diffs[0][0] if diffs else 0.0
    ok = worst <= args.tolerance
    print(f"compare_checkpoints: max abs difference {worst:.3e} "
          f"{'<=' if ok else '>'} tolerance {args.tolerance:g}: {'same' if ok else 'DIFFERENT'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
