#!/usr/bin/python3
"""Writes torchvision R(2+1)D references for backbones/r2plus1d_parity_test.cc.

Usage: /usr/bin/python3 export_r2plus1d.py OUT_DIR

OUT_DIR/r2plus1d18_weights.pt  plain dict: torchvision r2plus1d_18
                               (num_classes=10) parameter/buffer name -> tensor
OUT_DIR/r2plus1d18_io.pt       plain dict: "input" [1,3,8,56,56], "features"
                               [1,512] (pooled layer4), "logits" [1,10]
OUT_DIR/r2plus1d34_weights.pt  the same for torchvision's VideoResNet(
OUT_DIR/r2plus1d34_io.pt         BasicBlock, [Conv2Plus1D] * 4, [3, 4, 6, 3],
                                 R2Plus1dStem, num_classes=10)

Both models are seeded, with randomised BatchNorm statistics and affine
parameters and a random fc bias, in eval mode. Plain dicts rather than
state_dict()'s OrderedDict, because LibTorch's unpickler cannot rebuild an
OrderedDict.
"""

import os
import sys

try:
    import torch
    import torchvision
    from torchvision.models.video.resnet import (BasicBlock, Conv2Plus1D,
                                                 R2Plus1dStem, VideoResNet)
except ImportError as e:  # the C++ test prints this line
    sys.exit("export_r2plus1d.py: cannot import torch/torchvision with %s: %s"
             % (sys.executable, e))

NUM_CLASSES = 10


def build(depth):
    if depth == 18:
        return torchvision.models.video.r2plus1d_18(num_classes=NUM_CLASSES)
    return VideoResNet(block=BasicBlock, conv_makers=[Conv2Plus1D] * 4,
                       layers=[3, 4, 6, 3], stem=R2Plus1dStem,
                       num_classes=NUM_CLASSES)


def randomise(model):
    # Fresh BatchNorm layers are the identity in eval mode and a fresh fc has
    # zero bias; randomise them so that parity also checks every buffer.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, ())))
        model.fc.bias.normal_(0.0, 0.1)


def export(depth, seed, out_dir):
    torch.manual_seed(seed)
    model = build(depth)
    randomise(model)
    model.eval()
    clip = torch.randn(1, 3, 8, 56, 56)
    with torch.no_grad():
        x = model.stem(clip)
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            x = layer(x)
        features = model.avgpool(x).flatten(1)
        logits = model(clip)
    name = "r2plus1d%d" % depth
    torch.save({k: v.clone() for k, v in model.state_dict().items()},
               os.path.join(out_dir, name + "_weights.pt"),
               _use_new_zipfile_serialization=True)
    torch.save({"input": clip, "features": features, "logits": logits},
               os.path.join(out_dir, name + "_io.pt"),
               _use_new_zipfile_serialization=True)
    print("export_r2plus1d.py: %s torch %s, torchvision %s, %d parameters, "
          "logits max |.| %.4f"
          % (name, torch.__version__, torchvision.__version__,
             sum(p.numel() for p in model.parameters()),
             float(logits.abs().max())))


def main(out_dir):
    export(18, 0, out_dir)
    export(34, 1, out_dir)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
