#!/usr/bin/python3
"""MemDPC's prediction head and dense contrastive loss, for ssl/memdpc_objective_test.cc.

Usage: /usr/bin/python3 memdpc_reference.py OUT_FILE

Written from a reading of the official code (github.com/TengdaHan/MemDPC,
memdpc/model.py MemDPC_BD.forward and get_loss, backbone/convrnn.py
ConvGRUCell), without copying it, and deliberately in another form than the
C++ (ssl/memdpc_objective.cc): 1x1 convolutions as channel einsums, the
cross-entropy as an explicit logsumexp per row.
  - features f [B, N, C, H, W] (the blocks' pooled feature maps);
  - ConvGRU cell, kernel 1: z = sigmoid(Wz [x, h] + bz), r = sigmoid(Wr [x, h]
    + br), o = tanh(Wo [x, r h] + bo), h' = h (1 - z) + o z, from h = 0;
  - the aggregator reads relu(f_t) for the first N - K blocks, then K times:
    p = softmax over slots of pred2(relu(pred1(h))), prediction = sum_m p_m
    memory_m, and (before the next prediction) one more step on
    relu(prediction);
  - loss: rows (b, k, h, w), logits <pred_row, target_row'>, CE with the
    row's own index as the class, mean over rows; targets are the last K
    blocks (not detached);
  - MemDPC_BD: the same on the time-reversed features with a second
    aggregator (shared predictor and memory), the two losses added.
No dropout (gru_dropout 0 in the test). float64 throughout.

OUT_FILE: core/testing/reference_tensors.h's format. Parameters are written
as "param.<name>" with the C++ module's parameter names.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "core",
                                "testing"))
import reference_tensors  # noqa: E402  (core/testing/reference_tensors.py)

torch = reference_tensors.import_torch("memdpc_reference.py")  # float64 by default


def conv1x1(weight, bias, x):
    """weight [O, I, 1, 1], bias [O], x [B, I, H, W] -> [B, O, H, W]."""
    return torch.einsum("oi,bihw->bohw", weight[:, :, 0, 0], x) + bias.view(1, -1, 1, 1)


def gru_step(params, prefix, x, h):
    w = lambda gate: (params[prefix + gate + ".weight"], params[prefix + gate + ".bias"])
    xh = torch.cat([x, h], 1)
    z = torch.sigmoid(conv1x1(*w("update_gate"), xh))
    r = torch.sigmoid(conv1x1(*w("reset_gate"), xh))
    o = torch.tanh(conv1x1(*w("out_gate"), torch.cat([x, r * h], 1)))
    return h * (1 - z) + o * z


def predict(params, prefix, feats, k):
    """feats [B, N, C, H, W] -> predictions of the last k blocks [B, k, C, H, W]."""
    n = feats.shape[1]
    h = torch.zeros_like(feats[:, 0])
    for t in range(n - k):
        h = gru_step(params, prefix, torch.relu(feats[:, t]), h)
    preds = []
    for j in range(k):
        if j > 0:
            h = gru_step(params, prefix, torch.relu(preds[-1]), h)
        hidden = torch.relu(conv1x1(params["predictor.0.weight"], params["predictor.0.bias"], h))
        logits = conv1x1(params["predictor.2.weight"], params["predictor.2.bias"], hidden)
        weights = torch.softmax(logits, 1)  # [B, M, H, W]
        preds.append(torch.einsum("bmhw,mc->bchw", weights, params["memory"]))
    return torch.stack(preds, 1)


def dense_loss(pred, target):
    """Mean over rows (b, k, h, w) of -log softmax(<pred_row, target_*>)[row]."""
    b, k, c, hh, ww = pred.shape
    rows_p = [pred[i, j, :, y, x] for i in range(b) for j in range(k) for y in range(hh)
              for x in range(ww)]
    rows_t = [target[i, j, :, y, x] for i in range(b) for j in range(k) for y in range(hh)
              for x in range(ww)]
    total = 0.0
    correct = 0
    for r, p in enumerate(rows_p):
        scores = torch.stack([torch.dot(p, t) for t in rows_t])
        total = total + torch.logsumexp(scores, 0) - scores[r]
        correct += int(torch.argmax(scores).item() == r)
    return total / len(rows_p), correct / len(rows_p)


def main(put):
    torch.manual_seed(20)

    # The loss alone.
    pred = torch.randn(2, 2, 3, 2, 2, requires_grad=True)
    target = torch.randn(2, 2, 3, 2, 2, requires_grad=True)
    put("dense_pred", pred)
    put("dense_target", target)
    loss, top1 = dense_loss(pred, target)
    put("dense_loss", loss)
    put("dense_top1", top1)
    gp, gt = torch.autograd.grad(loss, [pred, target])
    put("dense_grad_pred", gp)
    put("dense_grad_target", gt)

    # The head: B 2, N 4 blocks, C 3, 2x2 maps, M 5 slots, K 2.
    b, n, c, hw, m, k = 2, 4, 3, 2, 5, 2
    shapes = {}
    for agg in ["aggregate_forward.", "aggregate_backward."]:
        for gate in ["reset_gate", "update_gate", "out_gate"]:
            shapes[agg + gate + ".weight"] = (c, 2 * c, 1, 1)
            shapes[agg + gate + ".bias"] = (c,)
    shapes["predictor.0.weight"] = (c, c, 1, 1)
    shapes["predictor.0.bias"] = (c,)
    shapes["predictor.2.weight"] = (m, c, 1, 1)
    shapes["predictor.2.bias"] = (m,)
    shapes["memory"] = (m, c)
    params = {name: (0.7 * torch.randn(*shape)).requires_grad_(True)
              for name, shape in sorted(shapes.items())}
    feats = torch.randn(b, n, c, hw, hw, requires_grad=True)
    put("head_k", k)
    put("head_features", feats)
    for name, p in params.items():
        put("param." + name, p)

    fwd_pred = predict(params, "aggregate_forward.", feats, k)
    put("head_pred_forward", fwd_pred)
    fwd, fwd_top1 = dense_loss(fwd_pred, feats[:, n - k:])
    rev = torch.flip(feats, [1])
    bwd_pred = predict(params, "aggregate_backward.", rev, k)
    put("head_pred_backward", bwd_pred)
    bwd, bwd_top1 = dense_loss(bwd_pred, rev[:, n - k:])
    total = fwd + bwd
    put("head_forward", fwd)
    put("head_backward", bwd)
    put("head_top1_forward", fwd_top1)
    put("head_top1_backward", bwd_top1)
    put("head_loss", total)
    leaves = [feats] + list(params.values())
    grads = torch.autograd.grad(total, leaves, retain_graph=True)
    put("head_grad_features", grads[0])
    for name, g in zip(params.keys(), grads[1:]):
        put("grad." + name, g)
    # Forward direction only (bidirectional: false): its gradients.
    fwd_leaves = [feats] + [p for name, p in params.items() if "backward" not in name]
    g_fwd = torch.autograd.grad(fwd, fwd_leaves)
    put("forward_only_grad_features", g_fwd[0])


if __name__ == "__main__":
    reference_tensors.run(main, __doc__)
