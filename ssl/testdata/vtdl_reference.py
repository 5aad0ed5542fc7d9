#!/usr/bin/python3
"""VTDL's contrastive loss with the official shapes and reductions.

Usage: /usr/bin/python3 vtdl_reference.py OUT_FILE

Written for ssl/losses_test.cc (VtdlReferenceTest) from a reading of the
official code (FingerRec/Self-Supervised-Temporal-Discriminative-
Representation-Learning-for-Video-Action-Recognition), without copying it:
  - src/model/r3d.py, ResNet.forward with with_classifier=False: the
    embedding is id_head = pool, one Linear to 128-d, Normalize(2); the
    inputs here are that Linear's raw outputs, normalised first;
  - src/NCE/NCEAverage.py, MemoryMoCo.forward (use_softmax, i.e. --softmax):
    per query b the logits row [q_b . k_b, q_b . queue_1..K, q_b . n_b] / T,
    keys detached, the queue a detached copy of the memory;
  - NCESoftmaxLoss, imported from src/NCE/NCECriterion.py (the repository
    holds that module only as bytecode; it is CMC's class of the same name):
    cross-entropy with target 0, mean over the batch;
  - src/train_temporal_dis.py, train_moco: q = model(anchor), k = model_ema
    (positive) under no_grad, n = model(negative): the online model in a
    forward of its own, WITH gradient; the triplet loss is
    nn.TripletMarginLoss(margin=1.0, p=2)(q, k, n) (computed, but the loop
    adds only the contrastive loss; we expose it as triplet_weight).
Gradients are with respect to the raw q and n (k gets none). float64.

OUT_FILE: core/testing/reference_tensors.h's format.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "core",
                                "testing"))
import reference_tensors  # noqa: E402  (core/testing/reference_tensors.py)

torch = reference_tensors.import_torch("vtdl_reference.py")  # float64 by default
import torch.nn.functional as F  # noqa: E402


def normalize(x):
    """Normalize(2) of src/model/model.py: x / ||x||_2 per row."""
    return x / x.pow(2).sum(1, keepdim=True).pow(0.5)


def memory_moco_logits(q, k, n, memory, temperature):
    """MemoryMoCo.forward's logits with use_softmax: [B, 1 + K + 1] / T."""
    batch = q.shape[0]
    k = k.detach()
    l_pos = torch.bmm(q.view(batch, 1, -1), k.view(batch, -1, 1)).view(batch, 1)
    l_neg = torch.mm(memory.clone().detach(), q.t()).t()
    l_temporal = torch.bmm(q.view(batch, 1, -1), n.view(batch, -1, 1)).view(batch, 1)
    return torch.cat((l_pos, l_neg, l_temporal), dim=1) / temperature


def nce_softmax_loss(logits):
    """NCESoftmaxLoss: CE against label 0, mean over the batch."""
    label = torch.zeros(logits.shape[0], dtype=torch.long)
    return F.cross_entropy(logits.squeeze(), label)


def main(put):
    torch.manual_seed(7)
    temperature = 0.07
    b, d, queue_size = 4, 6, 9
    q_raw = torch.randn(b, d, requires_grad=True)
    k_raw = torch.randn(b, d)
    n_raw = torch.randn(b, d, requires_grad=True)
    # The memory holds enqueued (normalised) keys; the official random
    # initial rows are not normalised, a difference that ends once the queue
    # has been filled.
    memory = normalize(torch.randn(queue_size, d))
    for name, t in (("q", q_raw), ("k", k_raw), ("n", n_raw), ("queue", memory)):
        put(name, t)

    q, k, n = normalize(q_raw), normalize(k_raw), normalize(n_raw)
    nce = nce_softmax_loss(memory_moco_logits(q, k, n, memory, temperature))
    grad_q, grad_n = torch.autograd.grad(nce, (q_raw, n_raw), retain_graph=True)
    put("nce", nce)
    put("nce_grad_q", grad_q)
    put("nce_grad_n", grad_n)

    triplet = torch.nn.TripletMarginLoss(margin=1.0, p=2)(q, k, n)
    grad_q, grad_n = torch.autograd.grad(triplet, (q_raw, n_raw))
    put("triplet", triplet)
    put("triplet_grad_q", grad_q)
    put("triplet_grad_n", grad_n)


if __name__ == "__main__":
    reference_tensors.run(main, __doc__)
