#!/usr/bin/python3
"""TACL's curricula and unlabeled loss, written independently of the C++.

Usage: /usr/bin/python3 tacl_reference.py OUT_FILE

Written for semisup/tacl_trainer_test.cc from TaclOptions' definition in
semisup/semisup.proto (no TACL code is public):
  - augmentation curriculum: s(t) = min(1, t / R) (1 when R = 0);
    FINE window round(T - s (T - w_min)), w_min = max(1, round(f T));
    COARSE hold round(1 + s (k_max - 1));
  - FINE frame i = a + floor(i w / T); COARSE frame i = min(T - 1,
    o + k floor(i / k));
  - class-wise thresholds (FlexMatch's curriculum pseudo-labelling):
    beta_c = sigma_c / max(max sigma, u) (warm-up) or sigma_c / max sigma,
    threshold_c = M(beta_c) tau with M(x) = x / (2 - x) or x;
  - mask = max p(weak) >= threshold[argmax p(weak)]; loss = sum of the
    masked CE of the strong logits against argmax p(weak), divided by N (ALL)
    or by the number selected (SELECTED);
  - learning effect: sigma <- d sigma + (1 - d) n_c / N, u <- d u + (1 - d)
    n_unconfident / N.
Loops and Python arithmetic where the C++ uses tensor operations; float64.

OUT_FILE: core/testing/reference_tensors.h's format.
"""

import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "core",
                                "testing"))
import reference_tensors  # noqa: E402  (core/testing/reference_tensors.py)

torch = reference_tensors.import_torch("tacl_reference.py")  # float64 by default

TAU = 0.9
DECAY = 0.95


def round_half_away(x):
    # C++ std::llround: halves away from zero.
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def strength(step, ramp):
    return 1.0 if ramp <= 0 else min(1.0, max(step, 0) / ramp)


def fine_window(frames, fraction, s):
    w_min = max(1, round_half_away(fraction * frames))
    return min(frames, max(1, round_half_away(frames - s * (frames - w_min))))


def coarse_hold(max_hold, s):
    return max(1, round_half_away(1 + s * (max_hold - 1)))


def fine_indices(frames, window, start):
    return [start + (i * window) // frames for i in range(frames)]


def coarse_indices(frames, hold, phase):
    return [min(frames - 1, phase + hold * (i // hold)) for i in range(frames)]


def thresholds(sigma, unused, tau, warmup, convex):
    top = max(sigma)
    if warmup:
        top = max(top, unused)
    out = []
    for s in sigma:
        beta = s / top if top > 0 else 0.0
        mapped = beta / (2.0 - beta) if convex else beta
        out.append(mapped * tau)
    return out


def unlabeled_loss(logits_strong, p_weak, thr, selected_normalisation):
    n = logits_strong.size(0)
    total = torch.zeros(())
    chosen = 0
    mask = []
    for i in range(n):
        row = p_weak[i].tolist()
        label = max(range(len(row)), key=lambda c: (row[c], -c))
        keep = row[label] >= thr[label]
        mask.append(1.0 if keep else 0.0)
        if keep:
            chosen += 1
            total = total + (torch.logsumexp(logits_strong[i], 0) - logits_strong[i, label])
    if selected_normalisation:
        return (total / chosen if chosen else total * 0), mask
    return total / n, mask


def main(put):
    torch.manual_seed(11)
    n, classes = 7, 4
    logits_weak = 2.5 * torch.randn(n, classes)
    logits_strong = (2 * torch.randn(n, classes)).requires_grad_(True)
    p_weak = torch.softmax(logits_weak, 1)
    put("logits_weak", logits_weak)
    put("logits_strong", logits_strong)

    sigma = [0.5, 0.1, 0.0, 0.35]
    unused = 0.2
    put("sigma", torch.tensor(sigma))
    put("unused", torch.tensor([unused]))
    for name, warmup, convex in [("warm_convex", True, True), ("warm_linear", True, False),
                                 ("cold_convex", False, True)]:
        thr = thresholds(sigma, unused, TAU, warmup, convex)
        put("thresholds_" + name, torch.tensor(thr))
    # Warm-up with u above every sigma (early training): all below tau.
    put("thresholds_early", torch.tensor(thresholds(sigma, 0.8, TAU, True, True)))
    put("thresholds_early_cold", torch.tensor(thresholds(sigma, 0.8, TAU, False, True)))
    put("thresholds_initial", torch.tensor(thresholds([0.0] * classes, 1.0, TAU, True, True)))

    thr = thresholds(sigma, unused, TAU, True, True)
    for name, selected in [("all", False), ("selected", True)]:
        loss, mask = unlabeled_loss(logits_strong, p_weak, thr, selected)
        put("loss_" + name, loss)
        put("mask_" + name, torch.tensor(mask))
        put("grad_" + name, torch.autograd.grad(loss, [logits_strong])[0])

    # The learning effect after this batch (its counts at tau).
    counts = [0.0] * (classes + 1)
    for i in range(n):
        row = p_weak[i].tolist()
        label = max(range(classes), key=lambda c: (row[c], -c))
        if row[label] >= TAU:
            counts[label] += 1
        else:
            counts[classes] += 1
    put("counts", torch.tensor(counts))
    put("sigma_next", torch.tensor([DECAY * s + (1 - DECAY) * c / n
                                    for s, c in zip(sigma, counts[:classes])]))
    put("unused_next", torch.tensor([DECAY * unused + (1 - DECAY) * counts[classes] / n]))

    # The augmentation curriculum over a run of 10 ramp steps, T = 8.
    steps = list(range(0, 13))
    put("strength", torch.tensor([strength(t, 10) for t in steps]))
    put("window", torch.tensor([float(fine_window(8, 0.5, strength(t, 10))) for t in steps]))
    put("hold", torch.tensor([float(coarse_hold(4, strength(t, 10))) for t in steps]))


if __name__ == "__main__":
    reference_tensors.run(main, __doc__)
