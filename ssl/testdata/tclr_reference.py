#!/usr/bin/python3
"""TCLR / TimeBalance teacher-pretraining losses with the official reductions.

Usage: /usr/bin/python3 tclr_reference.py OUT_FILE

Written for ssl/losses_test.cc (TclrReferenceTest) from a reading of the
official code, without copying it:
  - DAVEISHAN/TCLR tclr_pretraining/contrastive_loss/nt_xent_original.py,
    NTXentLoss.forward: dot-product logits of the (already L2-normalised)
    2N rows, positive first, the 2N - 2 others as negatives, cross-entropy
    summed over the 2N anchors and divided by 2N;
  - .../global_local_temporal_contrastive.py, global_local_temporal_contrastive:
    bmm of the [B, 4, D] slices with the [B, 4, D] dense clips, the [B, 4, 4]
    matrices stacked with their transposes, cross-entropy with target t summed
    over all 2 * B * 4 rows and divided by 2B;
  - tclr_pretraining/train_gen_all_step.py, train_epoch (the same loop is
    TimeBalance's pretraining.py, train_epoch): loss_ic2 on the sparse clips,
    loss_ic1 summed over the ordered pairs of distinct (aug, chunk) dense clips
    and divided by 4, loss_local_local SUMMED over the videos of the batch
    (an NT-Xent with batch size 4 per video), loss_global_local summed over
    the 2 x 2 (aug, aug') pairs; TimeBalance weighs them ic, ic, tcl, tcg.
The model's MLP L2-normalises every output (tclr_pretraining/mlp.py), so the
inputs here are raw leaves normalised first; gradients are with respect to
the raw leaves. float64 throughout. S = 4 timesteps, as the official code
hard-codes.

OUT_FILE: core/testing/reference_tensors.h's format.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "core",
                                "testing"))
import reference_tensors  # noqa: E402  (core/testing/reference_tensors.py)

torch = reference_tensors.import_torch("tclr_reference.py")  # float64 by default
import torch.nn.functional as F  # noqa: E402
S = 4  # timesteps (dense clips, sparse slices)


def nt_xent_sum_over_2n(zi, zj, tau):
    """NTXentLoss(batch_size=N, use_cosine_similarity=False) on normalised rows."""
    n = zi.shape[0]
    reps = torch.cat([zj, zi], 0)
    sim = reps @ reps.t()
    pos = torch.cat([torch.diagonal(sim, n), torch.diagonal(sim, -n)]).view(2 * n, 1)
    keep = ~(torch.eye(2 * n, dtype=torch.bool)
             | torch.eye(2 * n, dtype=torch.bool).roll(n, 1))
    neg = sim[keep].view(2 * n, -1)
    logits = torch.cat([pos, neg], 1) / tau
    target = torch.zeros(2 * n, dtype=torch.long)
    return F.cross_entropy(logits, target, reduction="sum") / (2 * n)


def global_local_call(lsr, gdr, tau):
    """One call of the official function: lsr, gdr [B, S, D], normalised."""
    b = lsr.shape[0]
    m = torch.bmm(lsr, gdr.transpose(1, 2))
    rows = torch.cat([m, m.transpose(1, 2)], 0).reshape(-1, S) / tau
    target = torch.arange(S).repeat(2 * b)
    return F.cross_entropy(rows, target, reduction="sum") / (2 * b)


def tclr_terms(sparse_raw, slices_raw, dense_raw, tau):
    """sparse_raw [2, B, D]; slices_raw [2, S, B, D]; dense_raw [2, S, B, D].

    Returns (loss_ic2 + loss_ic1, loss_local_local, loss_global_local)."""
    unit = lambda x: F.normalize(x, p=2, dim=-1)
    gsr = [unit(sparse_raw[a]) for a in range(2)]
    lsr = [unit(slices_raw[a]).transpose(0, 1) for a in range(2)]  # [B, S, D]
    dense = [[unit(dense_raw[a][t]) for t in range(S)] for a in range(2)]
    loss_ic2 = nt_xent_sum_over_2n(gsr[0], gsr[1], tau)
    loss_ic1 = 0.0
    for ii in range(2):
        for jj in range(2):
            for c in range(S):
                for c1 in range(S):
                    if ii == jj and c == c1:
                        continue
                    loss_ic1 = loss_ic1 + nt_xent_sum_over_2n(dense[ii][c], dense[jj][c1], tau)
    loss_ic1 = loss_ic1 / 4
    per_video = [torch.stack(dense[a], 1) for a in range(2)]  # [B, S, D]
    loss_ll = 0.0
    for v in range(per_video[0].shape[0]):
        loss_ll = loss_ll + nt_xent_sum_over_2n(per_video[0][v], per_video[1][v], tau)
    loss_gl = 0.0
    for ii in range(2):
        for jj in range(2):
            loss_gl = loss_gl + global_local_call(lsr[ii], per_video[jj], tau)
    return loss_ic2 + loss_ic1, loss_ll, loss_gl


def main(put):
    torch.manual_seed(16)
    tau = 0.1

    b, d = 3, 5
    sparse = torch.randn(2, b, d, requires_grad=True)
    slices = torch.randn(2, S, b, d, requires_grad=True)
    dense = torch.randn(2, S, b, d, requires_grad=True)
    put("sparse", sparse)
    put("slices", slices)
    put("dense", dense)
    terms = tclr_terms(sparse, slices, dense, tau)
    for name, loss in zip(["ic", "ll", "gl"], terms):
        put(name, loss)
        for leaf_name, leaf in [("sparse", sparse), ("slices", slices), ("dense", dense)]:
            grad = torch.autograd.grad(loss, leaf, retain_graph=True, allow_unused=True)[0]
            put("%s_grad_%s" % (name, leaf_name),
                torch.zeros_like(leaf) if grad is None else grad)
    # TimeBalance's pretraining.py total with its three configs' weights
    # (ic_weight, tcl_weight, tcg_weight): conf_ssl (1, 1, 1),
    # conf_inv_teacher (1, 0, 0), conf_dist_teacher (0, 1, 1).
    for name, (w_ic, w_tcl, w_tcg) in [("total_ssl", (1, 1, 1)), ("total_inv", (1, 0, 0)),
                                        ("total_dist", (0, 1, 1))]:
        put(name, w_ic * terms[0] + w_tcl * terms[1] + w_tcg * terms[2])

    # The scale at initialisation: the reference's batch of 40 videos, random
    # 128-d projections (cosines near 0).
    b, d = 40, 128
    sparse = torch.randn(2, b, d)
    slices = torch.randn(2, S, b, d)
    dense = torch.randn(2, S, b, d)
    put("init_sparse", sparse)
    put("init_slices", slices)
    put("init_dense", dense)
    for name, loss in zip(["init_ic", "init_ll", "init_gl"],
                          tclr_terms(sparse, slices, dense, tau)):
        put(name, loss)


if __name__ == "__main__":
    reference_tensors.run(main, __doc__)
