#!/usr/bin/python3
"""MotionFit's losses, written from the paper's description, in float64.

Usage: /usr/bin/python3 motion_fit_reference.py OUT_FILE

For semisup/motion_fit_trainer_test.cc. Gavrilyuk et al. (ICCV 2021) have
no public code; this follows the paper's text as semisup.proto's
MotionFitOptions spells it out, computed here with explicit loops over
videos and clips rather than the C++ code's reshapes:
  - rows are clip-major: row k * B + b is clip k of video b;
  - multi-clip loss: CE of the mean over a video's K clips of the logits,
    mean over videos;
  - self-training: p_b = softmax(mean_k motion_logits / temperature); hard
    targets argmax p_b, soft targets p_b; every clip of video b is trained
    towards video b's target, masked by max p_b >= threshold; the masked sum
    over the K * B rows divided by K * B (normalisation ALL).

OUT_FILE: core/testing/reference_tensors.h's format.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "core",
                                "testing"))
import reference_tensors  # noqa: E402  (core/testing/reference_tensors.py)

torch = reference_tensors.import_torch("motion_fit_reference.py")  # float64 by default
F = torch.nn.functional

K, B, C = 2, 4, 5
THRESHOLD = 0.45
TEMPERATURE = 2.0


def video_mean(rows, b):
    return sum(rows[k * B + b] for k in range(K)) / K


def self_training(rgb, motion, soft, temperature):
    total = 0
    labels, mask = [], []
    for b in range(B):
        p = F.softmax(video_mean(motion, b).detach() / temperature, dim=0)
        selected = float(p.max() >= THRESHOLD)
        labels.append(int(p.argmax()))
        mask.append(selected)
        for k in range(K):
            log_q = F.log_softmax(rgb[k * B + b], dim=0)
            ce = -(p * log_q).sum() if soft else -log_q[int(p.argmax())]
            total = total + selected * ce
    return total / (K * B), torch.tensor(labels), torch.tensor(mask)


def main(put):
    torch.manual_seed(11)
    scale = torch.linspace(0.5, 4.0, B).repeat(K).unsqueeze(1)
    motion = (torch.randn(K * B, C) * scale).requires_grad_(True)
    rgb = (torch.randn(K * B, C) * 2).requires_grad_(True)
    labels = torch.randint(0, C, (B,))
    put("motion_logits", motion)
    put("rgb_logits", rgb)
    put("labels", labels)

    means = torch.stack([video_mean(motion, b) for b in range(B)])
    put("multi_clip_mean", means)
    multi = sum(-F.log_softmax(means[b], dim=0)[labels[b]] for b in range(B)) / B
    put("multi_clip_ce", multi)
    (grad,) = torch.autograd.grad(multi, [motion])
    put("multi_clip_grad", grad)

    for name, soft, temperature in (("hard", False, 1.0), ("soft", True, TEMPERATURE)):
        loss, pl, mask = self_training(rgb, motion, soft, temperature)
        assert 0 < mask.sum() < B, (name, mask)
        put(name + "_loss", loss)
        put(name + "_labels", pl)
        put(name + "_mask", mask)
        (grad,) = torch.autograd.grad(loss, [rgb])
        put(name + "_grad", grad)


if __name__ == "__main__":
    reference_tensors.run(main, __doc__)
