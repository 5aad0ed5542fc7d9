#!/usr/bin/python3
"""Python peer of //tools:bench_step: TimeBalance's student training step in PyTorch.

Times, exactly as tools/bench_step_main.cc does with semisup/timebalance_trainer.cc, one
distillation step: the labeled and unlabeled clips concatenated; both frozen teachers (eval
mode, no_grad, bf16 autocast when the precision is bf16) give softmax probabilities in fp32,
mixed with per-video weights s = 0.5; the student's forward; cross-entropy on the labeled
clips plus labeled_weight * MSE(p_s, p_t) on the labeled and unlabeled_weight * MSE on the
unlabeled clips; the step's metrics read with .item() as the trainer does; zero_grad,
backward and an Adam step (lr 1e-4; foreach=True with --adam_foreach). The whole step runs under bf16 autocast for the bf16
row, as bench_step wraps trainer.Step() in AutocastScope. Models are torchvision's r3d_18
(student and teachers) with dropout before the fc, as the C++ ResNetBackbone has; clips and
labels are random. Prints the median over --iters steps after --warmup untimed steps.

Run with Debian's interpreter (python3-torch 1.13, python3-torchvision):

  /usr/bin/python3 tools/bench/peer_step.py [--frames=8 --size=112 --labeled=2 --unlabeled=2
      --num_classes=101 --iters=5 --warmup=2 --threads=2 --precisions=fp32,bf16]

The defaults match the README's bench_step command (R3D-18, 8x112x112, 2 + 2 clips, 101
classes, dropout 0.2 from the base config, labeled/unlabeled weights 50/100, MSE). Output:
the bench_step table (| precision | step s (median) | student clips/s |) and one
machine-readable line per precision:

  PEER_STEP {"precision": "fp32", "median_step_s": 4.1, "clips_per_s": 0.98, ...}
"""

import argparse
import json
import os
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
    import torchvision
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import peer_models
except ImportError as e:
    sys.exit("peer_step.py: cannot import torch/torchvision with %s: %s (use /usr/bin/python3)"
             % (sys.executable, e))


def make_r3d18(num_classes, dropout, tclr_temporal_layer4, width=1.0):
    """torchvision's r3d_18 with the C++ backbone's head (dropout + fc); at width != 1 the same
    network with scaled channel counts (peer_models.R3d18)."""
    if width != 1.0:
        model = peer_models.R3d18(num_classes, width, dropout)
    else:
        model = torchvision.models.video.r3d_18(num_classes=num_classes)
        model.fc = torch.nn.Sequential(torch.nn.Dropout(dropout), model.fc)
    return peer_models.tclr_layer4(model) if tclr_temporal_layer4 else model


def autocast(enabled):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def mse(p_student, p_teacher):
    return (p_student - p_teacher.detach()).pow(2).mean()


def step(student, invariant, distinctive, adam, lb, ub, y, yu, s, args, bf16):
    nl = lb.size(0)
    with autocast(bf16):  # bench_step: AutocastScope around trainer.Step()
        x = torch.cat([lb, ub])
        with torch.no_grad(), autocast(bf16):  # teacher_bf16 = bf16
            p_i = torch.softmax(invariant(x).float(), 1)
            p_d = torch.softmax(distinctive(x).float(), 1)
        w = s.to(p_i.dtype).unsqueeze(1)
        p_t = w * p_i + (1 - w) * p_d
        logits = student(x)
        p_s = torch.softmax(logits.float(), 1)
        ce = F.cross_entropy(logits[:nl].float(), y)
        d_l = mse(p_s[:nl], p_t[:nl])
        d_u = mse(p_s[nl:], p_t[nl:])
        loss = ce + args.labeled_weight * d_l + args.unlabeled_weight * d_u

        def accuracy(p, labels):
            return p.argmax(1).eq(labels).float().mean().item()

        metrics = {"loss_ce": ce.item(), "loss_distill_l": d_l.item(),
                   "loss_distill_u": d_u.item(), "train_top1": accuracy(p_s[:nl], y),
                   "teacher_top1_l": accuracy(p_t[:nl], y),
                   "pseudo_label_acc_u": accuracy(p_t[nl:], yu), "mean_s": s.mean().item()}
    adam.zero_grad()
    loss.backward()
    adam.step()
    return metrics


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--labeled", type=int, default=2)
    parser.add_argument("--unlabeled", type=int, default=2)
    parser.add_argument("--num_classes", type=int, default=101)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--tclr_temporal_layer4", action="store_true")
    parser.add_argument("--width", type=float, default=1.0,
                        help="channel multiplier (1: torchvision's r3d_18)")
    parser.add_argument("--labeled_weight", type=float, default=50.0)
    parser.add_argument("--unlabeled_weight", type=float, default=100.0)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default="fp32,bf16")
    # bench_step --fused_adam passes this: torch 1.13's fastest Adam on the CPU (fused=True is
    # CUDA-only there), so our fused step is compared with the peer's best, not its default.
    parser.add_argument("--adam_foreach", action="store_true")
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    for p in precisions:
        if p not in ("fp32", "bf16"):
            parser.error("--precisions: unknown precision %r" % p)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = [make_r3d18(args.num_classes, args.dropout, args.tclr_temporal_layer4, args.width)
              for _ in range(3)]
    student, invariant, distinctive = models
    for teacher in (invariant, distinctive):
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    student.train()
    shape = (3, args.frames, args.size, args.size)
    lb = torch.randn(args.labeled, *shape)
    ub = torch.randn(args.unlabeled, *shape)
    y = torch.randint(0, args.num_classes, (args.labeled,))
    yu = torch.randint(0, args.num_classes, (args.unlabeled,))
    s = torch.full((args.labeled + args.unlabeled,), 0.5)
    clips = args.labeled + args.unlabeled
    params = sum(p.numel() for p in student.parameters())

    print("peer_step: torchvision r3d_18%s%s, student + 2 teachers, %d parameters each, %d labeled"
          " + %d unlabeled clips of %dx%dx%d per step, %d threads, torch %s"
          % ("" if args.width == 1 else " at width %g" % args.width,
             " (TCLR layer4)" if args.tclr_temporal_layer4 else "", params, args.labeled,
             args.unlabeled, args.frames, args.size, args.size, torch.get_num_threads(),
             torch.__version__))
    print("| precision | step s (median) | student clips/s |\n|---|---|---|")
    for precision in precisions:
        bf16 = precision == "bf16"
        # A fresh optimizer per precision, as bench_step builds one per precision.
        adam = torch.optim.Adam(student.parameters(), lr=1e-4,
                                foreach=True if args.adam_foreach else None)
        times = []
        for i in range(args.warmup + args.iters):
            start = time.perf_counter()
            step(student, invariant, distinctive, adam, lb, ub, y, yu, s, args, bf16)
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
        median = sorted(times)[len(times) // 2]
        print("| %s | %.3f | %.2f |" % (precision, median, clips / median))
        print("PEER_STEP " + json.dumps({
            "precision": precision, "median_step_s": round(median, 4),
            "clips_per_s": round(clips / median, 4), "steps": args.iters,
            "labeled": args.labeled, "unlabeled": args.unlabeled, "frames": args.frames,
            "size": args.size, "threads": torch.get_num_threads(),
            "step_s": [round(t, 4) for t in times]}), flush=True)


if __name__ == "__main__":
    main()
