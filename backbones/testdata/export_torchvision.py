#!/usr/bin/python3
"""Writes a torchvision r3d_18 reference for backbones/r3d_parity_test.cc.

Usage: /usr/bin/python3 export_torchvision.py OUT_DIR

OUT_DIR/r3d18_weights.pt  plain dict: parameter/buffer name -> tensor
OUT_DIR/r3d18_io.pt       plain dict: "input" [2,3,8,56,56], "features"
                          [2,512] (pooled layer4), "logits" [2,10]
OUT_DIR/ordered_dict.pt   model.fc.state_dict() as saved by habit (an
                          OrderedDict), to check the reader's error message

Plain dicts rather than state_dict()'s OrderedDict, because LibTorch's
unpickler cannot rebuild an OrderedDict.
"""

import os
import sys

try:
    import torch
    import torchvision
except ImportError as e:  # the C++ test prints this line
    sys.exit("export_torchvision.py: cannot import torch/torchvision with %s: %s"
             % (sys.executable, e))

NUM_CLASSES = 10


def main(out_dir):
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18(num_classes=NUM_CLASSES)
    # Fresh BatchNorm layers are the identity in eval mode (mean 0, var 1,
    # weight 1, bias 0) and a fresh fc has zero bias; randomise them so the
    # parity test also checks that every buffer lands in the right place.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, ())))
        model.fc.bias.normal_(0.0, 0.1)
    model.eval()

    clip = torch.randn(2, 3, 8, 56, 56)
    with torch.no_grad():
        x = model.stem(clip)
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            x = layer(x)
        features = model.avgpool(x).flatten(1)
        logits = model(clip)
    torch.save({k: v.clone() for k, v in model.state_dict().items()},
               os.path.join(out_dir, "r3d18_weights.pt"),
               _use_new_zipfile_serialization=True)
    torch.save({"input": clip, "features": features, "logits": logits},
               os.path.join(out_dir, "r3d18_io.pt"),
               _use_new_zipfile_serialization=True)
    torch.save(model.fc.state_dict(), os.path.join(out_dir, "ordered_dict.pt"))
    print("export_torchvision.py: torch %s, torchvision %s, logits max |.| %.4f"
          % (torch.__version__, torchvision.__version__, float(logits.abs().max())))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
