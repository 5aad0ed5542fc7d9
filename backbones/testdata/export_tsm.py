#!/usr/bin/python3
"""Writes TSM-ResNet18 references for backbones/tsm_test.cc.

Usage: /usr/bin/python3 export_tsm.py OUT_DIR

OUT_DIR/tsm_r18_weights.pt  plain dict: torchvision resnet18(num_classes=10)
                            parameter/buffer name -> tensor
OUT_DIR/tsm_r18_io.pt       plain dict: "input" [1,3,4,64,64] clip,
                            "feature_map" [1,512,4,2,2] (layer4 per frame,
                            stacked over time), "features" [1,512],
                            "logits" [1,10] (TSM: per-frame logits, average
                            consensus) at shift_div 8, "logits_div4" [1,10]
                            at shift_div 4, "logits_noshift" [1,10] of the
                            plain per-frame resnet18 (no shift)

The temporal shift is TSM's official implementation (mit-han-lab/
temporal-shift-module, ops/temporal_shift.py: TemporalShift.shift, and
make_temporal_shift with place 'blockres', which wraps each BasicBlock's conv1
so that only the residual branch sees the shifted input). The model is seeded,
with randomised BatchNorm statistics and affine parameters and a random fc
bias, in eval mode. Plain dicts rather than state_dict()'s OrderedDict, because
LibTorch's unpickler cannot rebuild an OrderedDict.
"""

import os
import sys

try:
    import torch
    import torchvision
except ImportError as e:  # the C++ test prints this line
    sys.exit("export_tsm.py: cannot import torch/torchvision with %s: %s"
             % (sys.executable, e))

NUM_CLASSES = 10
FRAMES = 4


def shift(x, n_segment, fold_div):
    # TSM's TemporalShift.shift (inplace=False).
    nt, c, h, w = x.size()
    n_batch = nt // n_segment
    x = x.view(n_batch, n_segment, c, h, w)
    fold = c // fold_div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]  # shift left
    out[:, 1:, fold: 2 * fold] = x[:, :-1, fold: 2 * fold]  # shift right
    out[:, :, 2 * fold:] = x[:, :, 2 * fold:]  # not shift
    return out.view(nt, c, h, w)


class TemporalShift(torch.nn.Module):
    # TSM's TemporalShift wrapper: shift, then the wrapped layer.
    def __init__(self, net, n_segment, n_div):
        super().__init__()
        self.net = net
        self.n_segment = n_segment
        self.fold_div = n_div

    def forward(self, x):
        return self.net(shift(x, self.n_segment, self.fold_div))


def make_temporal_shift_blockres(net, n_segment, n_div):
    # make_temporal_shift(place='blockres') for torchvision resnet18.
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        for b in layer:
            b.conv1 = TemporalShift(b.conv1, n_segment, n_div)


def randomise(model):
    # Fresh BatchNorm layers are the identity in eval mode; randomise them so
    # that parity also checks every buffer.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, ())))
        model.fc.bias.normal_(0.0, 0.1)


def run(weights, clip, n_div):
    """TSM forward: (feature_map [B,D,T,h,w], features [B,D], logits [B,K])."""
    model = torchvision.models.resnet18(num_classes=NUM_CLASSES)
    model.load_state_dict(weights)
    if n_div is not None:
        make_temporal_shift_blockres(model, FRAMES, n_div)
    model.eval()
    b, c, t, h, w = clip.shape
    frames = clip.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    with torch.no_grad():
        x = model.maxpool(model.relu(model.bn1(model.conv1(frames))))
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            x = layer(x)
        feature_map = x.view(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)
        features = feature_map.mean(dim=(2, 3, 4))
        # TSM's head: per-frame logits, then average consensus over time.
        logits = model(frames).view(b, t, -1).mean(dim=1)
    return feature_map.contiguous(), features, logits


def main(out_dir):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=NUM_CLASSES)
    randomise(model)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    clip = torch.randn(1, 3, FRAMES, 64, 64)
    feature_map, features, logits = run(weights, clip, 8)
    _, _, logits_div4 = run(weights, clip, 4)
    _, _, logits_noshift = run(weights, clip, None)
    torch.save(weights, os.path.join(out_dir, "tsm_r18_weights.pt"),
               _use_new_zipfile_serialization=True)
    torch.save({"input": clip, "feature_map": feature_map,
                "features": features, "logits": logits,
                "logits_div4": logits_div4, "logits_noshift": logits_noshift},
               os.path.join(out_dir, "tsm_r18_io.pt"),
               _use_new_zipfile_serialization=True)
    print("export_tsm.py: torch %s, torchvision %s, %d parameters, "
          "logits max |.| %.4f, max |shift - noshift| %.4f"
          % (torch.__version__, torchvision.__version__,
             sum(p.numel() for p in model.parameters()),
             float(logits.abs().max()),
             float((logits - logits_noshift).abs().max())))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
