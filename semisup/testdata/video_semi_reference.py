#!/usr/bin/python3
"""VideoSSL's losses (the `video_semi` trainer), written independently of
semisup/video_semi_trainer.cc from VideoSemiOptions' definition:
  - appearance target of a clip: the mean over its frames of the image
    model's softmax(z / T);
  - appearance term: T^2 * nn.KLDivLoss(reduction='batchmean') between
    log_softmax(head / T) and the target (KL(q || p) per clip, mean over
    clips; Hinton et al.'s T^2);
  - pseudo-labels: argmax of softmax of the unlabeled rows' class logits
    where the maximum >= threshold, no gradient through them; their CE masked
    and divided by all unlabeled rows (ALL) or by the selected ones
    (SELECTED);
  - total = CE(labeled) + w_pl * PL + w_app * appearance.

Usage: /usr/bin/python3 video_semi_reference.py OUT_FILE
float64; gradients with respect to the class and appearance logits.
OUT_FILE: core/testing/reference_tensors.h's format.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "core",
                                "testing"))
import reference_tensors  # noqa: E402  (core/testing/reference_tensors.py)

torch = reference_tensors.import_torch("video_semi_reference.py")  # float64 by default
F = torch.nn.functional

TEMPERATURE = 2.0
THRESHOLD = 0.6
W_PL = 0.7
W_APP = 1.5


def appearance_target(frame_logits):
    # frame_logits [B, F, K]; loop over frames on purpose (no mean over dim).
    probs = [F.softmax(frame_logits[:, f, :] / TEMPERATURE, dim=1)
             for f in range(frame_logits.shape[1])]
    return sum(probs) / len(probs)


def appearance_loss(head_logits, target):
    kl = torch.nn.KLDivLoss(reduction="batchmean")
    return TEMPERATURE ** 2 * kl(F.log_softmax(head_logits / TEMPERATURE, dim=1), target)


def pseudo_label_loss(logits_u, selected_only):
    with torch.no_grad():
        max_probs, targets = F.softmax(logits_u, dim=1).max(1)
        mask = (max_probs >= THRESHOLD).double()
    per_clip = F.cross_entropy(logits_u, targets, reduction="none") * mask
    if selected_only:
        return per_clip.sum() / mask.sum() if mask.sum() > 0 else per_clip.sum() * 0, mask
    return per_clip.mean(), mask


def main(put):
    torch.manual_seed(11)
    nl, nu, classes, image_classes, frames = 2, 5, 4, 6, 3
    n = nl + nu
    logits = (3 * torch.randn(n, classes)).requires_grad_(True)
    labels = torch.randint(0, classes, (nl,))
    frame_logits = 2 * torch.randn(n, frames, image_classes)
    head = (2 * torch.randn(n, image_classes)).requires_grad_(True)
    put("logits", logits)
    put("labels", labels.double())
    put("frame_logits", frame_logits)
    put("head", head)

    target = appearance_target(frame_logits)
    put("target", target)
    app = appearance_loss(head, target)
    put("appearance", app)
    put("appearance_grad", torch.autograd.grad(app, [head])[0])

    for name, selected in (("all", False), ("selected", True)):
        ce = F.cross_entropy(logits[:nl], labels)
        pl, mask = pseudo_label_loss(logits[nl:], selected)
        total = ce + W_PL * pl + W_APP * appearance_loss(head, target)
        put(name + "_ce", ce)
        put(name + "_pl", pl)
        put(name + "_mask", mask)
        put(name + "_total", total)
        grad_logits, grad_head = torch.autograd.grad(total, [logits, head])
        put(name + "_grad_logits", grad_logits)
        put(name + "_grad_head", grad_head)


if __name__ == "__main__":
    reference_tensors.run(main, __doc__)
