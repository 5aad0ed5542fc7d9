#!/usr/bin/python3
"""TCL's unlabeled losses with the official reductions.

Usage: /usr/bin/python3 tcl_reference.py OUT_FILE

Written for semisup/tcl_trainer_test.cc from a reading of the official
CVIR/TCL main.py (train, simclr_loss, get_group,
compute_group_contrastive_loss), re-implemented here without copying it:
  - the representation of a clip is softmax(logits); the base clip's
    (official output_fast) is detached;
  - simclr_loss(a, b): rows of cat(a, b) L2-normalised, exp(cos / T) over
    all pairs, each row's own term exp(1 / T) subtracted from its sum,
    -log(exp(cos(a_i, b_i) / T) / that sum), mean over the 2N rows;
  - groups: each speed's videos keyed by the argmax of their softmax; for
    the keys present in both speeds the mean softmax of the group in each
    speed; simclr_loss between the two lists of means (max with 0);
  - contrastive phase: gamma * instance + group (gamma 9, the README
    command), Temperature 0.5;
  - fine-tuning phase: (CE(base, argmax softmax(base).detach()) * mask).mean()
    with mask = max prob >= 0.8, times gamma_finetune 1.
float64; gradients with respect to both speeds' logits.

OUT_FILE: core/testing/reference_tensors.h's format.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "core",
                                "testing"))
import reference_tensors  # noqa: E402  (core/testing/reference_tensors.py)

torch = reference_tensors.import_torch("tcl_reference.py")  # float64 by default
F = torch.nn.functional

TEMPERATURE = 0.5
GAMMA = 9.0
THRESHOLD = 0.8


def nt_xent(a, b):
    rows = torch.cat([a, b])
    norms = rows.norm(dim=1, keepdim=True)
    sim = torch.exp(rows @ rows.t() / (norms @ norms.t()).clamp(min=1e-16) / TEMPERATURE)
    match = torch.exp((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)) / TEMPERATURE)
    match = torch.cat([match, match])
    denominator = sim.sum(1) - torch.exp(torch.ones(rows.size(0)) / TEMPERATURE)
    return torch.mean(-torch.log(match / denominator))


def group_means(p):
    groups = {}
    for label, row in zip(p.argmax(1).tolist(), p):
        groups.setdefault(label, []).append(row)
    return groups


def group_contrastive(p_base, p_slow):
    base, slow = group_means(p_base), group_means(p_slow)
    shared = [k for k in base if k in slow]
    if not shared:
        return torch.zeros(())
    g_base = torch.stack([torch.stack(base[k]).mean(0) for k in shared])
    g_slow = torch.stack([torch.stack(slow[k]).mean(0) for k in shared])
    return torch.clamp(nt_xent(g_base, g_slow), min=0)


def main(put):
    torch.manual_seed(5)
    n, classes = 6, 4
    logits_base = (3 * torch.randn(n, classes)).requires_grad_(True)
    logits_slow = (3 * torch.randn(n, classes)).requires_grad_(True)
    put("logits_base", logits_base)
    put("logits_slow", logits_slow)

    p_base = F.softmax(logits_base, dim=1).detach()
    p_slow = F.softmax(logits_slow, dim=1)
    instance = nt_xent(p_base, p_slow)
    group = group_contrastive(p_base, p_slow)
    put("instance", instance)
    put("group", group)
    put("groups", torch.tensor(float(len([k for k in group_means(p_base)
                                          if k in group_means(p_slow)]))))
    for name, loss in [("instance", instance), ("group", group),
                       ("contrastive", GAMMA * instance + group)]:
        grad_base, grad_slow = torch.autograd.grad(loss, [logits_base, logits_slow],
                                                   retain_graph=True, allow_unused=True)
        put(name + "_grad_base", torch.zeros(n, classes) if grad_base is None else grad_base)
        put(name + "_grad_slow", grad_slow)

    probs = F.softmax(logits_base, dim=1)
    max_probs, targets = probs.detach().max(1)
    mask = max_probs.ge(THRESHOLD).double()
    pl = (F.cross_entropy(logits_base, targets, reduction="none") * mask).mean()
    put("pl", pl)
    put("pl_mask", mask)
    put("pl_grad_base", torch.autograd.grad(pl, [logits_base])[0])


if __name__ == "__main__":
    reference_tensors.run(main, __doc__)
