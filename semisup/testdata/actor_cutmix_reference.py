#!/usr/bin/python3
"""ActorCutMix's strong view and unlabeled loss with the official reductions.

Usage: /usr/bin/python3 actor_cutmix_reference.py OUT_FILE

Written for semisup/actor_cutmix_trainer_test.cc from a reading of the
official vt-vl-lab/video-data-aug code (mmaction/models/recognizers/
base_semi.py, train_step: the ActorCutMix branch; recognizer3d_semi.py,
SemiRecognizer3D.forward_train, framework 'fixmatch' with actor_cutmix),
re-implemented here without copying it:
  - invalid clips: mask all 0 or all 1, and the middle clip of an odd
    batch; their mask is set to 1 and they keep their strong view;
  - valid clips: weak * m + flip_batch(weak * (1 - m)) * (1 - m);
  - selected = max softmax(weak logits) >= 0.95 (threshold 0.95);
  - ratio = mask mean over the clip, weight = 1 - (ratio - 1)^4, target =
    weight * onehot(argmax weak_i) + (1 - weight) * onehot(argmax
    weak_{N-1-i}) (the mirror's argmax, selected or not);
  - loss = -mean over selected of sum(log_softmax(strong) * target), times
    num_select / N.
float64; the gradient with respect to the strong logits.

OUT_FILE: core/testing/reference_tensors.h's format.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "core",
                                "testing"))
import reference_tensors  # noqa: E402  (core/testing/reference_tensors.py)

torch = reference_tensors.import_torch("actor_cutmix_reference.py")  # float64 by default
F = torch.nn.functional


def main(put):
    torch.manual_seed(11)
    n, classes = 5, 4
    weak = torch.randn(n, 3, 2, 4, 4)
    strong = torch.randn(n, 3, 2, 4, 4)
    mask = (torch.rand(n, 1, 2, 4, 4) < 0.4).double()
    mask[1] = 0  # no actor
    mask[3] = 1  # all actor
    put("weak", weak)
    put("strong", strong)
    put("mask", mask)

    size = mask[0].numel()
    share = mask.sum((1, 2, 3, 4))
    invalid = (share == size) | (share == 0)
    invalid[n // 2] = True  # odd batch: the middle clip is its own mirror
    m = mask.clone()
    m[invalid] = 1
    inv = invalid.double().view(-1, 1, 1, 1, 1)
    mixed = weak * m + torch.flip(weak * (1 - m), dims=[0]) * (1 - m)
    put("mixed_strong", inv * strong + (1 - inv) * mixed)
    put("valid", (~invalid).double())

    logits_weak = 3 * torch.randn(n, classes)
    logits_weak[0, 2] = 12  # confident
    logits_weak[2, 1] = 12
    logits_weak[4, 0] = 12
    logits_strong = torch.randn(n, classes).requires_grad_(True)
    put("logits_weak", logits_weak)
    put("logits_strong", logits_strong)
    probs = F.softmax(logits_weak, dim=-1)
    select = (probs.max(1).values >= 0.95).nonzero(as_tuple=False).squeeze(1)
    labels = logits_weak.argmax(1)
    ratio = m.reshape(n, -1).sum(1) / m.reshape(n, -1).shape[1]
    weight = (-(ratio - 1) ** 4 + 1).unsqueeze(1)
    targets = weight * F.one_hot(labels, classes) + (1 - weight) * F.one_hot(labels.flip(0),
                                                                             classes)
    put("targets", targets)
    loss = -torch.mean(torch.sum(F.log_softmax(logits_strong[select], dim=1) * targets[select],
                                 dim=1)) * select.numel() / n
    put("loss", loss)
    put("grad_strong", torch.autograd.grad(loss, [logits_strong])[0])


if __name__ == "__main__":
    reference_tensors.run(main, __doc__)
