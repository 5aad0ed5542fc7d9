#!/usr/bin/python3
"""Python peer of //tools:bench_backbone: torchvision's r3d_18 forward and training speed.

Measures what tools/bench_backbone_main.cc measures, in PyTorch: for each precision (fp32,
bf16 CPU autocast) and memory format (contiguous, channels-last-3d: weights and clip), the
median forward clips/s (eval mode, no_grad, autocast around the forward) and the median
training clips/s (train mode; zero_grad, forward + cross-entropy under autocast, backward,
SGD step with lr 0.01 and momentum 0.9). A fresh model (seed 0) per precision/layout, random
clip and labels, --warmup untimed iterations before each measurement, the median of --iters.

  /usr/bin/python3 tools/bench/peer_backbone.py [--frames=8 --size=112 --batch=4
      --num_classes=400 --iters=5 --warmup=2 --threads=2 --precisions=fp32,bf16
      --layouts=contiguous,channels_last --no-train]

Output: the bench_backbone table without its FLOP columns (| precision | layout | forward
clips/s | train clips/s |) and one machine-readable line per row:

  PEER_BACKBONE {"precision": "fp32", "layout": "contiguous", "forward_clips_per_s": 5.6, ...}
"""

import argparse
import json
import sys
import time

try:
    import torch
    import torch.nn.functional as F
    import torchvision
except ImportError as e:
    sys.exit("peer_backbone.py: cannot import torch/torchvision with %s: %s (use /usr/bin/python3)"
             % (sys.executable, e))


def median_seconds(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--num_classes", type=int, default=400)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--layouts", default="contiguous,channels_last")
    parser.add_argument("--train", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    clip = torch.randn(args.batch, 3, args.frames, args.size, args.size)
    labels = torch.randint(args.num_classes, (args.batch,))
    params = sum(p.numel() for p in torchvision.models.video.r3d_18(
        num_classes=args.num_classes).parameters())
    print("peer_backbone: torchvision r3d_18, %d parameters, clips %dx%dx%d, batch %d, %d threads,"
          " torch %s" % (params, args.frames, args.size, args.size, args.batch,
                         torch.get_num_threads(), torch.__version__))
    print("| precision | layout | forward clips/s | train clips/s |\n|---|---|---|---|")
    for precision in args.precisions.split(","):
        for layout in args.layouts.split(","):
            if precision not in ("fp32", "bf16") or layout not in ("contiguous", "channels_last"):
                parser.error("unknown precision/layout %s/%s" % (precision, layout))
            torch.manual_seed(0)
            model = torchvision.models.video.r3d_18(num_classes=args.num_classes)
            x = clip
            if layout == "channels_last":
                model = model.to(memory_format=torch.channels_last_3d)
                x = clip.contiguous(memory_format=torch.channels_last_3d)
            bf16 = precision == "bf16"
            model.eval()

            def forward():
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    model(x)

            fwd = median_seconds(forward, args.warmup, args.iters)
            train = 0.0
            if args.train:
                model.train()
                sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

                def train_step():
                    sgd.zero_grad()
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        loss = F.cross_entropy(model(x), labels)
                    loss.backward()
                    sgd.step()

                train = median_seconds(train_step, args.warmup, args.iters)
            fwd_rate = args.batch / fwd
            train_rate = args.batch / train if train > 0 else 0.0
            print("| %s | %s | %.2f | %.2f |" % (precision, layout, fwd_rate, train_rate))
            print("PEER_BACKBONE " + json.dumps({
                "precision": precision, "layout": layout,
                "forward_clips_per_s": round(fwd_rate, 4), "train_clips_per_s": round(train_rate, 4),
                "batch": args.batch, "frames": args.frames, "size": args.size,
                "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
