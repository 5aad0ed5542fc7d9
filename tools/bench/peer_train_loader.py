#!/usr/bin/python3
"""Python peer of the C++ supervised trainer, data loading included.

What it measures: training throughput (clips/s) of the tiny R3D-18 supervised baseline when
the clips come from video files through a torch.utils.data.DataLoader, the way the official
Python codebases (TimeBalance, TCLR) load UCF101. It is the PyTorch side of
tools/bench/e2e_loader.sh, which runs it next to bazel-bin/tools/timebalance with
configs/supervised_r3d18tiny_8x4_synth_10pct.pbtxt on the same files and settings.

Loading: --workers DataLoader worker processes (1 torch thread and 1 OpenCV thread each);
each sample opens its video with cv2.VideoCapture and decodes EVERY frame with cap.read()
up to the end of the file, keeping the --frames frames at --stride from a uniformly random
start (as TCLR's build_clip does; the C++ reader instead seeks and decodes only what the
clip needs). The kept frames are converted to RGB and resized so that the short side is
--short_side (bilinear); then one torchvision RandomResizedCrop draw per clip (area scale
U(0.5, 1), aspect ratio log-U(3/4, 4/3), 10 attempts then a centre crop), the crop
resized to --crop (bilinear), a horizontal flip with probability 0.5, [0, 1] scaling and
torchvision's Kinetics mean/std; the sample is [3, T, S, S] float32 plus the label. Batches
of --batch, 2 batches prefetched per worker (DataLoader's default; the C++ loader prefetches
4 batches with 2 workers). The sampler draws successive random permutations of the training
list for the whole run, so workers are started once (no epoch restarts, like the C++
loader's endless sequence of epochs).

Training: the C++ R3D-18 (torchvision's r3d_18: BasicStem 3x7x7 stride (1, 2, 2), four
stages of two BasicBlocks with Conv3DSimple, strides 1, 2, 2, 2, adaptive average pool,
dropout, fc) with every channel count multiplied by --width (0.125: 8, 16, 32, 64) and
torchvision's initialisation; cross-entropy, Adam (lr 0.002, weight decay 1e-5) with the
C++ schedule (linear warm-up over 20 steps, cosine decay to 0 at --steps); per step the loss
and the batch accuracy are read with .item() as the C++ supervised trainer does;
torch.set_num_threads(--threads) in the main process.

Timing: --warmup untimed steps, then clips/s = (steps - warmup) * batch / wall time of the
remaining steps (waiting for data included), and the share of that time the main process
spent blocked in next(loader). Workers also report their decode and augmentation time per
clip (wall time inside the worker, like the C++ log's 'decode ms/clip' and 'augment ms/clip';
here 'decode' is opening, reading every frame, RGB conversion and the short-side resize of
the kept frames, as the C++ reader's decode includes its scaling).

Run with Debian's interpreter (python3-torch, python3-opencv):

  /usr/bin/python3 tools/bench/peer_train_loader.py --root=DATASET [--split=1 --workers=2
      --frames=8 --stride=4 --short_side=128 --crop=112 --batch=8 --threads=2 --steps=150
      --warmup=20 --width=0.125 --dropout=0.2 --seed=0]
  /usr/bin/python3 tools/bench/peer_train_loader.py --root=DATASET --params_only

DATASET is a UCF101-layout folder (classInd.txt, trainlist01.txt in it; see
tools/bench/make_ucf_like.sh). Output: a progress line per --log_every steps, 'N parameters'
at start, and one machine-readable line at the end:

  PEER_TRAIN_LOADER {"clips_per_s": 12.3, "data_wait_share": 0.41, "parameters": 521,...}
"""

import argparse
import json
import math
import os
import random
import sys
import time

try:
    import cv2
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:
    sys.exit("peer_train_loader.py: cannot import torch/cv2/numpy with %s: %s (use /usr/bin/python3)"
             % (sys.executable, e))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_models import R3d18  # noqa: E402

# torchvision's Kinetics normalisation, the C++ ClipSampling default (empty mean/std).
MEAN = np.array([0.43216, 0.394666, 0.37645], dtype=np.float32)
STD = np.array([0.22803, 0.22145, 0.216989], dtype=np.float32)


# --- Data ---------------------------------------------------------------------------------

def read_ucf101_train(root, split):
    """(path, label) of trainlistNN.txt, labels 0-based from the class folder (classInd.txt)."""
    classes = {}
    with open(os.path.join(root, "classInd.txt")) as f:
        for line in f:
            fields = line.split()
            if len(fields) == 2:
                classes[fields[1]] = int(fields[0]) - 1
    videos = []
    with open(os.path.join(root, "trainlist%02d.txt" % split)) as f:
        for line in f:
            fields = line.split()
            if fields:
                videos.append((os.path.join(root, fields[0]), classes[fields[0].split("/")[0]]))
    return videos, len(classes)


def random_resized_crop_box(height, width, rng, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3)):
    """torchvision's RandomResizedCrop.get_params (the rule of datasets/augment.cc)."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class VideoClips(torch.utils.data.Dataset):
    """One random clip per video, decoded with cv2.VideoCapture reading every frame."""

    def __init__(self, videos, args):
        self.videos = videos
        self.frames = args.frames
        self.stride = args.stride
        self.short_side = args.short_side
        self.crop = args.crop
        self.rng = random.Random(args.seed)  # replaced per worker in worker_init

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, index):
        path, label = self.videos[index]
        t0 = time.perf_counter()
        cap = cv2.VideoCapture(path)
        if not cap.isOpened():
            raise RuntimeError("cannot open " + path)
        frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        span = (self.frames - 1) * self.stride + 1
        start = self.rng.randint(0, max(0, frame_count - span))
        wanted = [start + t * self.stride for t in range(self.frames)]
        wanted_set = set(wanted)
        kept = {}
        count = -1
        while cap.isOpened():  # every frame is decoded (and converted to BGR by read())
            ok, frame = cap.read()
            if not ok:
                break
            count += 1
            if count in wanted_set:
                h, w = frame.shape[:2]
                if h <= w:
                    size = (int(round(w * self.short_side / h)), self.short_side)
                else:
                    size = (self.short_side, int(round(h * self.short_side / w)))
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                kept[count] = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
        cap.release()
        if not kept:
            raise RuntimeError("no frames decoded from " + path)
        last = kept[max(kept)]
        frames = [kept.get(i, last) for i in wanted]  # frame count overstated: repeat the last
        t1 = time.perf_counter()

        height, width = frames[0].shape[:2]
        y0, x0, h, w = random_resized_crop_box(height, width, self.rng)
        flip = self.rng.random() < 0.5
        out = np.empty((self.frames, self.crop, self.crop, 3), dtype=np.uint8)
        for t, f in enumerate(frames):
            out[t] = cv2.resize(f[y0:y0 + h, x0:x0 + w], (self.crop, self.crop),
                                interpolation=cv2.INTER_LINEAR)
        if flip:
            out = out[:, :, ::-1]
        clip = (out.astype(np.float32) * (1.0 / 255.0) - MEAN) / STD  # [T, H, W, 3]
        clip = torch.from_numpy(np.ascontiguousarray(clip.transpose(3, 0, 1, 2)))  # [3, T, H, W]
        t2 = time.perf_counter()
        return clip, label, t1 - t0, t2 - t1


def worker_init(worker_id):
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    info = torch.utils.data.get_worker_info()
    info.dataset.rng = random.Random(info.seed)  # DataLoader's per-worker seed


# The model: peer_models.R3d18 (torchvision's r3d_18 at --width).


def learning_rate(step, base_lr, warmup, steps):
    """train/lr_schedule.cc: linear warm-up, then cosine decay to 0."""
    if step < warmup:
        return base_lr * (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return base_lr * 0.5 * (1 + math.cos(math.pi * progress))


# --- Main ---------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="UCF101-layout dataset folder")
    parser.add_argument("--split", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--short_side", type=int, default=128)
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps")
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--weight_decay", type=float, default=1e-5)
    parser.add_argument("--lr_warmup", type=int, default=20, help="lr warm-up steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log_every", type=int, default=0, help="0: no progress lines")
    parser.add_argument("--params_only", action="store_true",
                        help="print the parameter count and exit")
    args = parser.parse_args()
    if args.steps <= args.warmup:
        sys.exit("peer_train_loader.py: --steps must be larger than --warmup")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    videos, num_classes = read_ucf101_train(args.root, args.split)
    model = R3d18(num_classes, args.width, args.dropout)
    params = sum(p.numel() for p in model.parameters())
    print("peer: %d classes, %d train videos, %d parameters" % (num_classes, len(videos), params),
          flush=True)
    if args.params_only:
        print("PEER_TRAIN_LOADER " + json.dumps({"parameters": params, "classes": num_classes}))
        return

    dataset = VideoClips(videos, args)
    sampler = torch.utils.data.RandomSampler(dataset, num_samples=args.steps * args.batch)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch, sampler=sampler, num_workers=args.workers,
        worker_init_fn=worker_init if args.workers > 0 else None, drop_last=True,
        persistent_workers=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    model.train()

    it = iter(loader)
    t_timed = None
    wait = decode = augment = 0.0
    window_start, window_wait = time.perf_counter(), 0.0
    for step in range(args.steps):
        if step == args.warmup:
            t_timed = time.perf_counter()
            wait = decode = augment = 0.0
        t0 = time.perf_counter()
        clips, labels, decode_s, augment_s = next(it)
        waited = time.perf_counter() - t0
        wait += waited
        window_wait += waited
        decode += float(decode_s.sum())
        augment += float(augment_s.sum())
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.lr, args.lr_warmup, args.steps)
        logits = model(clips)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
        accuracy = logits.argmax(1).eq(labels).float().mean().item()
        if args.log_every > 0 and (step + 1) % args.log_every == 0:
            now = time.perf_counter()
            print("peer step %d/%d loss_ce %.4f train_top1 %.4f clips/s %.1f data-wait %.0f%%"
                  % (step + 1, args.steps, loss_value, accuracy,
                     args.log_every * args.batch / (now - window_start),
                     100 * window_wait / (now - window_start)), flush=True)
            window_start, window_wait = now, 0.0
    seconds = time.perf_counter() - t_timed
    del it  # stops the workers
    clips_done = (args.steps - args.warmup) * args.batch
    result = {
        "clips_per_s": round(clips_done / seconds, 3),
        "data_wait_share": round(wait / seconds, 4),
        "decode_ms_per_clip": round(1e3 * decode / clips_done, 2),
        "augment_ms_per_clip": round(1e3 * augment / clips_done, 2),
        "timed_steps": args.steps - args.warmup,
        "timed_seconds": round(seconds, 3),
        "parameters": params,
        "classes": num_classes,
        "train_videos": len(videos),
        "final_loss": round(loss_value, 4),
        "workers": args.workers,
        "threads": args.threads,
        "batch": args.batch,
        "frames": args.frames,
        "stride": args.stride,
        "short_side": args.short_side,
        "crop": args.crop,
        "width": args.width,
        "torch": torch.__version__,
        "opencv": cv2.__version__,
    }
    print("PEER_TRAIN_LOADER " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
