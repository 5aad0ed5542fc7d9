#!/usr/bin/python3
"""The unlabeled losses of FixMatch, MvPL and TG-FixMatch with LTG's reductions.

Usage: /usr/bin/python3 multiview_reference.py OUT_FILE

Written for semisup/semi_supervised_test.cc (MultiViewLossParity) from a
reading of LTG's official code (lambert-x/video-semisup, Xiao et al. CVPR
2022), without copying it. Each block follows one forward_train:

  fixmatch_*: mmaction/models/recognizers/recognizer3d_semi.py,
    SemiRecognizer3D.forward_train (framework 'fixmatch'): weak
    probabilities softmax(z_weak) under no_grad; the rows whose maximum is
    >= fixmatch_threshold are selected; pseudo-label = argmax of the weak
    logits; loss = cross_entropy(mean over the selected strong rows)
    * num_select / bz_unlabeled, 0 when nothing is selected. Also the
    google-research/fixmatch form (fixmatch.py: mean over all unlabeled rows
    of the per-row CE times the mask), which is the same number.

  mvpl_*: mmaction/models/recognizers/recognizer3d_semi_multiview.py,
    Semi_MV_Recognizer3D.forward_train: per view (rgb, diff) a labeled CE
    (mean) times 0.5; pseudo-label from softmax of the mean of the two
    views' weak logits (no_grad), thresholded as above; per view the
    selected strong rows' CE (mean) * num_select / bz_unlabeled times 0.5;
    the losses summed (BaseRecognizer._parse_losses adds every 'loss' key).

  tg_*: mmaction/models/recognizers/
    recognizer3d_semi_appsup_tempsup_simclr_crossclip_ptv.py,
    Semi_AppSup_TempSup_SimCLR_Crossclip_PTV_Recognizer3D.forward_train with
    the ucf101_main configs' train_cfg (pseudo_label_metric 'avg',
    cls_loss_weight 0.5 / 0.5, temp_align_indices (0, 1, 2, 3),
    align_loss_func 'Cosine', align_stop_grad 'tg' by default, no
    loss_clip_selection): the MvPL terms plus, for every stage, CosineSimiLoss
    (mmaction/models/losses/cosine_simi_loss.py: L2-normalise both along
    dim 1, 1 - mean of the cosine along dim 1) between the RGB stage features
    of the labeled + weak rows and the detached TG ones, plus the configs'
    cross-modal contrast (crossclip_contrast_loss ['crossview_sameclip'],
    crossclip_contrast_range ['weak'], one clip per video): the RGB and TG
    head outputs of the labeled + weak rows through SimCLRLoss_PTV_New
    (mmaction/models/losses/simclr_loss_ptv_new.py: loss_weight 0.5 times
    SimCLRLoss_PTV([a, b]) + SimCLRLoss_PTV([b, a]); simclr_loss_ptv.py:
    both L2-normalised, a b^T / temperature 0.5, cross_entropy against the
    row index), times contrast_loss_weight 1. The heads themselves
    (contrast_head.py) are ordinary layers and are not re-implemented here.

float64; gradients with respect to every logit and stage feature.
OUT_FILE: core/testing/reference_tensors.h's format.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "core",
                                "testing"))
import reference_tensors  # noqa: E402  (core/testing/reference_tensors.py)

torch = reference_tensors.import_torch("multiview_reference.py")  # float64 by default
import torch.nn.functional as F  # noqa: E402

NUM_LABELED, NUM_UNLABELED, NUM_CLASSES = 3, 6, 5
THRESHOLD = 0.5
# Stage feature maps [N, C, T, H, W] of a 4-stage network.
STAGE_SHAPES = [(4, 4, 3, 3), (6, 2, 2, 2), (8, 1, 1, 1), (5, 1, 2, 2)]
CONTRAST_DIM, CONTRAST_TEMPERATURE, CONTRAST_WEIGHT = 6, 0.5, 0.5


def selected_ce(weak_scores, strong, threshold):
    """LTG's thresholded CE: mean over selected rows * num_select / rows."""
    with torch.no_grad():
        prob = F.softmax(weak_scores, dim=-1)
    select = (torch.max(prob, 1).values >= threshold).nonzero(as_tuple=False).squeeze(1)
    num_select = select.shape[0]
    if num_select == 0:
        return strong.sum() * 0, 0
    labels = torch.index_select(weak_scores.argmax(1).detach().view(-1, 1), 0, select).squeeze(1)
    rows = torch.index_select(strong, 0, select)
    return F.cross_entropy(rows, labels) * num_select / strong.shape[0], num_select


def cosine_simi_loss(v1, v2):
    v1 = F.normalize(v1, dim=1)
    v2 = F.normalize(v2, dim=1)
    return 1 - F.cosine_similarity(v1, v2, dim=1).mean()


def simclr_ptv(a, b, temperature):
    """One direction: rows of a against all rows of b, the same row positive."""
    a = F.normalize(a, p=2, dim=1)
    b = F.normalize(b, p=2, dim=1)
    logits = torch.einsum("nc,kc->nk", [a, b]) / temperature
    return F.cross_entropy(logits, torch.arange(a.shape[0]))


def main(put):
    torch.manual_seed(31)
    nl, nu, c = NUM_LABELED, NUM_UNLABELED, NUM_CLASSES
    n = nl + 2 * nu
    put("threshold", torch.tensor(THRESHOLD))

    # --- FixMatch: weak logits of varied confidence, strong logits.
    weak = (torch.randn(nu, c) * torch.linspace(0.2, 4.0, nu).unsqueeze(1))
    strong = torch.randn(nu, c).requires_grad_(True)
    put("fixmatch_weak", weak)
    put("fixmatch_strong", strong)
    loss, num_select = selected_ce(weak, strong, THRESHOLD)
    assert 0 < num_select < nu, num_select
    (grad,) = torch.autograd.grad(loss, [strong])
    put("fixmatch_loss", loss)
    put("fixmatch_grad_strong", grad)
    mask = (F.softmax(weak, dim=-1).max(1).values >= THRESHOLD).to(torch.float64)
    per_row = F.cross_entropy(strong, weak.argmax(1), reduction="none")
    put("fixmatch_google_loss", (per_row * mask).mean())

    # --- MvPL and TG-FixMatch: logits of [labeled; weak; strong] per view.
    scale = torch.cat([torch.full((nl,), 1.5), torch.linspace(0.3, 4.0, nu),
                       torch.full((nu,), 1.5)]).unsqueeze(1)
    z = {v: (torch.randn(n, c) * scale).requires_grad_(True) for v in ("rgb", "tg")}
    labels = torch.randint(0, c, (nl,))
    put("labels", labels)
    for v in ("rgb", "tg"):
        put("logits_" + v, z[v])
    stages = {v: [torch.randn((n,) + s).requires_grad_(True) for s in STAGE_SHAPES]
              for v in ("rgb", "tg")}
    for v in ("rgb", "tg"):
        for i, t in enumerate(stages[v]):
            put("stage%d_%s" % (i, v), t)

    def classification(prefix):
        total = 0
        weak_avg = (z["rgb"][nl:nl + nu] + z["tg"][nl:nl + nu]) * 0.5
        for v in ("rgb", "tg"):
            ce = F.cross_entropy(z[v][:nl], labels) * 0.5
            u, num_select = selected_ce(weak_avg, z[v][nl + nu:], THRESHOLD)
            assert 0 < num_select < nu, num_select
            put(prefix + "ce_" + v, ce / 0.5)
            put(prefix + "u_" + v, u)
            total = total + ce + 0.5 * u
        with torch.no_grad():
            put(prefix + "pseudo_labels", weak_avg.argmax(1))
            put(prefix + "mask", (F.softmax(weak_avg, -1).max(1).values >= THRESHOLD).double())
        return total

    mvpl = classification("mvpl_")
    grads = torch.autograd.grad(mvpl, [z["rgb"], z["tg"]])
    put("mvpl_loss", mvpl)
    put("mvpl_grad_rgb", grads[0])
    put("mvpl_grad_tg", grads[1])

    tg = classification("tg_")
    align = []
    for i in range(len(STAGE_SHAPES)):
        a = cosine_simi_loss(stages["rgb"][i][:nl + nu], stages["tg"][i][:nl + nu].detach())
        put("tg_align%d" % i, a)
        align.append(a)
    tg = tg + sum(align)
    emb = {v: (torch.randn(nl + nu, CONTRAST_DIM) * 2).requires_grad_(True) for v in ("rgb", "tg")}
    put("contrast_temperature", torch.tensor(CONTRAST_TEMPERATURE))
    put("contrast_weight", torch.tensor(CONTRAST_WEIGHT))
    for v in ("rgb", "tg"):
        put("contrast_embedding_" + v, emb[v])
    contrast = (simclr_ptv(emb["rgb"], emb["tg"], CONTRAST_TEMPERATURE) +
                simclr_ptv(emb["tg"], emb["rgb"], CONTRAST_TEMPERATURE))
    put("tg_contrast", contrast)
    tg = tg + CONTRAST_WEIGHT * contrast
    inputs = [z["rgb"], z["tg"]] + stages["rgb"] + stages["tg"] + [emb["rgb"], emb["tg"]]
    grads = torch.autograd.grad(tg, inputs, allow_unused=True)
    put("tg_loss", tg)
    put("tg_grad_logits_rgb", grads[0])
    put("tg_grad_logits_tg", grads[1])
    for i in range(len(STAGE_SHAPES)):
        for j, v in enumerate(("rgb", "tg")):
            g = grads[2 + j * len(STAGE_SHAPES) + i]
            put("tg_grad_stage%d_%s" % (i, v),
                torch.zeros_like(stages[v][i]) if g is None else g)
    put("tg_grad_contrast_rgb", grads[-2])
    put("tg_grad_contrast_tg", grads[-1])

    # --- MvPL with its three views (RGB, TG, optical flow; drawn last so the
    # values above do not change): LTG's reductions over three views, the
    # pseudo-label from the mean of the three weak logits.
    z["flow"] = (torch.randn(n, c) * scale).requires_grad_(True)
    put("logits_flow", z["flow"])
    views3 = ("rgb", "tg", "flow")
    weak_avg = sum(z[v][nl:nl + nu] for v in views3) / 3
    mvpl3 = 0
    for v in views3:
        ce = F.cross_entropy(z[v][:nl], labels) * 0.5
        u, num_select = selected_ce(weak_avg, z[v][nl + nu:], THRESHOLD)
        assert 0 < num_select < nu, num_select
        put("mvpl3_ce_" + v, ce / 0.5)
        put("mvpl3_u_" + v, u)
        mvpl3 = mvpl3 + ce + 0.5 * u
    with torch.no_grad():
        put("mvpl3_pseudo_labels", weak_avg.argmax(1))
        put("mvpl3_mask", (F.softmax(weak_avg, -1).max(1).values >= THRESHOLD).double())
    put("mvpl3_loss", mvpl3)
    for v, g in zip(views3, torch.autograd.grad(mvpl3, [z[v] for v in views3])):
        put("mvpl3_grad_" + v, g)


if __name__ == "__main__":
    reference_tensors.run(main, __doc__)
