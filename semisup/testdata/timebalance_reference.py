#!/usr/bin/python3
"""TimeBalance's student loss with the official reductions.

Usage: /usr/bin/python3 timebalance_reference.py OUT_FILE

Written for semisup/timebalance_trainer_test.cc from a reading of the
official DAVEISHAN/TimeBalance train_semisup.py (train_epoch and the
criterion set-up in train_classifier), without copying it:
  - teachers: softmax of each teacher's logits, mixed per video as
    (1 - fd_score) * p_dist + fd_score * p_inv (fd_score = our s);
  - supervised: nn.CrossEntropyLoss() (mean) on the labeled logits;
  - teacher_supervision 'l2' (configs/conf_semisup.py's default):
    nn.MSELoss(reduction='mean')(softmax(student), p_T);
  - teacher_supervision 'kld': nn.KLDivLoss(reduction='mean',
    log_target=False)(log_softmax(student), p_T), a mean over all B * C
    elements;
  - loss = supervised_weight * CE + labeled_teacher_loss_weight * D_l
    + unlabeled_teacher_loss_weight * D_u with weights 1, 50, 100.
Also KLDivLoss(reduction='batchmean') for our KL_BATCHMEAN option. float64;
gradients with respect to the student's logits.

OUT_FILE: core/testing/reference_tensors.h's format.
"""

import os
import sys
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "core",
                                "testing"))
import reference_tensors  # noqa: E402  (core/testing/reference_tensors.py)

torch = reference_tensors.import_torch("timebalance_reference.py")  # float64 by default
import torch.nn as nn  # noqa: E402
# KLDivLoss warns that 'mean' is not 'batchmean': that is the point here.
warnings.filterwarnings("ignore", message="reduction: 'mean' divides")


def main(put):
    torch.manual_seed(23)

    num_labeled, num_unlabeled, num_classes = 3, 4, 5
    logits_l = (2 * torch.randn(num_labeled, num_classes)).requires_grad_(True)
    logits_u = (2 * torch.randn(num_unlabeled, num_classes)).requires_grad_(True)
    inv_l, inv_u = 2 * torch.randn(num_labeled, num_classes), 2 * torch.randn(
        num_unlabeled, num_classes)
    dist_l, dist_u = 2 * torch.randn(num_labeled, num_classes), 2 * torch.randn(
        num_unlabeled, num_classes)
    label = torch.randint(0, num_classes, (num_labeled,))
    fd_l, fd_u = torch.rand(num_labeled).unsqueeze(1), torch.rand(num_unlabeled).unsqueeze(1)
    for name, t in [("logits_l", logits_l), ("logits_u", logits_u), ("inv_l", inv_l),
                    ("inv_u", inv_u), ("dist_l", dist_l), ("dist_u", dist_u),
                    ("label", label), ("s_l", fd_l.squeeze(1)), ("s_u", fd_u.squeeze(1))]:
        put(name, t)

    softmax = nn.functional.softmax
    teacher_l = (1 - fd_l) * softmax(dist_l, dim=1) + fd_l * softmax(inv_l, dim=1)
    teacher_u = (1 - fd_u) * softmax(dist_u, dim=1) + fd_u * softmax(inv_u, dim=1)
    put("teacher_l", teacher_l)
    put("teacher_u", teacher_u)

    supervised = nn.CrossEntropyLoss()(logits_l, label)
    put("ce", supervised)
    criteria = {
        "mse": (nn.MSELoss(reduction="mean"), lambda x: softmax(x, dim=1)),
        "kl": (nn.KLDivLoss(reduction="mean", log_target=False),
               lambda x: nn.functional.log_softmax(x, dim=1)),
        "kl_batchmean": (nn.KLDivLoss(reduction="batchmean", log_target=False),
                         lambda x: nn.functional.log_softmax(x, dim=1)),
    }
    for name, (criterion, student) in criteria.items():
        d_l = criterion(student(logits_l), teacher_l)
        d_u = criterion(student(logits_u), teacher_u)
        loss = 1 * supervised + 50 * d_l + 100 * d_u
        grad_l, grad_u = torch.autograd.grad(loss, [logits_l, logits_u], retain_graph=True)
        put(name + "_d_l", d_l)
        put(name + "_d_u", d_u)
        put(name + "_loss", loss)
        put(name + "_grad_logits", torch.cat([grad_l, grad_u]))


if __name__ == "__main__":
    reference_tensors.run(main, __doc__)
