#!/usr/bin/python3
"""Reference values for ssl/losses_test.cc, computed independently.

Usage: /usr/bin/python3 ssl_reference.py OUT_FILE

Every loss is written out from its definition with explicit Python loops
over anchors, pairs and videos (scalar log-sum-exp per anchor), not with the
batched matrix formulation of ssl/losses.cc, in float64. Gradients come from
autograd through those loops.

OUT_FILE is plain text, one tensor per line:
    name ndim size_0 ... size_{ndim-1} value_0 value_1 ...
values in row-major order, printed with repr (round-trips float64 exactly).
"""

import math
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:  # the C++ test prints this line
    sys.exit("ssl_reference.py: cannot import torch with %s: %s" % (sys.executable, e))

torch.set_default_dtype(torch.float64)


def unit(v):
    return v / v.norm()


def cos(x, y):
    return torch.dot(unit(x), unit(y))


def anchor_ce(logits, target):
    """-log softmax(logits)[target] for a Python list of 0-d tensors."""
    stacked = torch.stack(logits)
    return torch.logsumexp(stacked, 0) - stacked[target]


def nt_xent(a, b, tau):
    z = [a[i] for i in range(a.shape[0])] + [b[i] for i in range(b.shape[0])]
    n = a.shape[0]
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        others = [k for k in range(2 * n) if k != i]
        logits = [cos(z[i], z[k]) / tau for k in others]
        total = total + anchor_ce(logits, others.index(pos))
    return total / (2 * n)


def instance_contrastive(sparse, dense, tau):
    loss = nt_xent(sparse[0], sparse[1], tau)
    clips = [(a, t) for a in range(dense.shape[0]) for t in range(dense.shape[1])]
    dense_sum = 0.0
    for (a, t) in clips:
        for (a2, t2) in clips:
            if (a, t) != (a2, t2):
                dense_sum = dense_sum + nt_xent(dense[a][t], dense[a2][t2], tau)
    return loss + dense_sum / dense.shape[1]


def local_local(dense, tau):
    num_steps, num_videos = dense.shape[1], dense.shape[2]
    total = 0.0
    for b in range(num_videos):
        anchors = [(a, t) for a in range(2) for t in range(num_steps)]
        video = 0.0
        for (a, t) in anchors:
            candidates = [(1 - a, t)] + [(a2, t2) for a2 in range(2)
                                         for t2 in range(num_steps) if t2 != t]
            logits = [cos(dense[a][t][b], dense[a2][t2][b]) / tau for (a2, t2) in candidates]
            video = video + anchor_ce(logits, 0)
        total = total + video / len(anchors)
    return total / num_videos


def global_local(slices, dense, tau):
    num_augs, num_steps, num_videos = slices.shape[0], slices.shape[1], slices.shape[2]
    total = 0.0
    for b in range(num_videos):
        for a in range(num_augs):
            for a2 in range(dense.shape[0]):
                m = [[cos(slices[a][t][b], dense[a2][t2][b]) / tau for t2 in range(num_steps)]
                     for t in range(num_steps)]
                row = sum(anchor_ce(m[t], t) for t in range(num_steps)) / num_steps
                col = sum(anchor_ce([m[t][t2] for t in range(num_steps)], t2)
                          for t2 in range(num_steps)) / num_steps
                total = total + row + col
    return total / num_videos


def info_nce(q, k, queue, tau, extra=None):
    total = 0.0
    for b in range(q.shape[0]):
        logits = [cos(q[b], k[b].detach()) / tau]
        logits += [cos(q[b], queue[j]) / tau for j in range(queue.shape[0])]
        if extra is not None:
            logits += [cos(q[b], extra[b][m]) / tau for m in range(extra.shape[1])]
        total = total + anchor_ce(logits, 0)
    return total / q.shape[0]


def byol(p, z):
    return sum(2 - 2 * cos(p[b], z[b].detach()) for b in range(p.shape[0])) / p.shape[0]


def sinkhorn(scores, eps, iterations):
    """SwAV's loop in exp space (with the max subtracted), on plain floats."""
    num_samples, num_protos = scores.shape
    s = scores.tolist()
    top = max(max(row) for row in s)
    q = [[math.exp((s[b][k] - top) / eps) for b in range(num_samples)]
         for k in range(num_protos)]
    total = sum(sum(row) for row in q)
    q = [[v / total for v in row] for row in q]
    for _ in range(iterations):
        for k in range(num_protos):
            row_sum = sum(q[k])
            q[k] = [v / row_sum / num_protos for v in q[k]]
        for b in range(num_samples):
            col_sum = sum(q[k][b] for k in range(num_protos))
            for k in range(num_protos):
                q[k][b] = q[k][b] / col_sum / num_samples
    return torch.tensor([[q[k][b] * num_samples for k in range(num_protos)]
                         for b in range(num_samples)])


def swav(views, tau, eps, iterations):
    codes = [sinkhorn(v.detach(), eps, iterations) for v in views]
    total, pairs = 0.0, 0
    for i in range(len(views)):
        for j in range(len(views)):
            if i == j:
                continue
            term = 0.0
            for b in range(views[j].shape[0]):
                row = [views[j][b][k] / tau for k in range(views[j].shape[1])]
                lse = torch.logsumexp(torch.stack(row), 0)
                term = term - sum(codes[i][b][k] * (row[k] - lse) for k in range(len(row)))
            total = total + term / views[j].shape[0]
            pairs += 1
    return total / pairs


def temporal_similarity(feats):
    out = []
    for b in range(feats.shape[0]):
        n = feats.shape[1]
        vals = [cos(feats[b][p], feats[b][q]) for p in range(n) for q in range(n) if p != q]
        out.append(sum(vals) / len(vals))
    return torch.stack(out)


class Writer:
    def __init__(self):
        self.lines = []

    def put(self, name, t):
        t = t.detach().to(torch.float64).contiguous()
        fields = [name, str(t.dim())] + [str(s) for s in t.shape]
        fields += [repr(float(v)) for v in t.flatten().tolist()]
        self.lines.append(" ".join(fields))


def leaf(*shape):
    return torch.randn(*shape).requires_grad_(True)


def main(out_file):
    torch.manual_seed(0)
    w = Writer()
    tau = 0.1

    a, b = leaf(3, 5), leaf(3, 5)
    loss = nt_xent(a, b, tau)
    loss.backward()
    for name, t in [("ntxent_a", a), ("ntxent_b", b), ("ntxent", loss)]:
        w.put(name, t)
    w.put("ntxent_grad_a", a.grad)

    sparse, dense = leaf(2, 3, 5), leaf(2, 4, 3, 5)
    loss = instance_contrastive(sparse, dense, tau)
    loss.backward()
    for name, t in [("ic_sparse", sparse), ("ic_dense", dense), ("ic", loss)]:
        w.put(name, t)
    w.put("ic_grad_sparse", sparse.grad)
    w.put("ic_grad_dense", dense.grad)
    dense3 = torch.randn(3, 2, 3, 5)  # three augmentations of two clips
    w.put("ic3_dense", dense3)
    w.put("ic3", instance_contrastive(sparse, dense3, tau))

    dense = leaf(2, 4, 3, 5)
    loss = local_local(dense, tau)
    loss.backward()
    w.put("ll_dense", dense)
    w.put("ll", loss)
    w.put("ll_grad_dense", dense.grad)

    slices, dense = leaf(2, 4, 3, 5), leaf(2, 4, 3, 5)
    loss = global_local(slices, dense, tau)
    loss.backward()
    for name, t in [("gl_slices", slices), ("gl_dense", dense), ("gl", loss)]:
        w.put(name, t)
    w.put("gl_grad_slices", slices.grad)
    w.put("gl_grad_dense", dense.grad)

    q, k, queue, extra = leaf(3, 5), torch.randn(3, 5), torch.randn(6, 5), leaf(3, 1, 5)
    loss = info_nce(q, k, queue, 0.07, extra)
    loss.backward()
    for name, t in [("nce_q", q), ("nce_k", k), ("nce_queue", queue), ("nce_extra", extra),
                    ("nce", loss)]:
        w.put(name, t)
    w.put("nce_grad_q", q.grad)
    w.put("nce_grad_extra", extra.grad)
    w.put("nce_queue_only", info_nce(q, k, queue, 0.07))
    w.put("nce_extra_only", info_nce(q, k, queue[:0], 0.07, extra))

    anchor, pos, neg = torch.randn(4, 5), torch.randn(4, 5), torch.randn(4, 5)
    for name, t in [("tri_a", anchor), ("tri_p", pos), ("tri_n", neg)]:
        w.put(name, t)
    w.put("tri", F.triplet_margin_loss(F.normalize(anchor, dim=1), F.normalize(pos, dim=1),
                                       F.normalize(neg, dim=1), margin=1.0))

    p, z = torch.randn(4, 5), torch.randn(4, 5)
    w.put("byol_p", p)
    w.put("byol_z", z)
    w.put("byol", byol(p, z))

    scores = torch.randn(6, 4)
    w.put("sk_scores", scores)
    w.put("sk", sinkhorn(scores, 0.05, 3))

    views = [leaf(6, 4) for _ in range(3)]
    loss = swav(views, tau, 0.05, 3)
    loss.backward()
    for i, v in enumerate(views):
        w.put("swav_scores%d" % i, v)
        w.put("swav_grad%d" % i, v.grad)
    w.put("swav", loss)

    feats = torch.randn(3, 4, 5)
    w.put("tsim_feats", feats)
    w.put("tsim", temporal_similarity(feats))

    clips = torch.randn(4, 2, 2, 3, 3)
    rotations = torch.tensor([2, 0, 3, 1])
    w.put("rot_clips", clips)
    w.put("rot_k", rotations.to(torch.float64))
    w.put("rot", torch.stack([torch.rot90(clips[i], int(rotations[i]), dims=(2, 3))
                              for i in range(4)]))

    with open(out_file, "w") as f:
        f.write("\n".join(w.lines) + "\n")
    print("ssl_reference.py: torch %s, wrote %d tensors" % (torch.__version__, len(w.lines)))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
