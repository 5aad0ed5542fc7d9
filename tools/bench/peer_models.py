"""The Python peers' R3D-18 at any width: torchvision's r3d_18 (VideoResNet: BasicStem, four
stages of two BasicBlocks with Conv3DSimple, strides 1, 2, 2, 2, adaptive average pool) with
every channel count multiplied by `width` (0.125: 8, 16, 32, 64, as the C++ backbone's
ScaledWidth rounds), dropout before the fc, torchvision's initialisation, and optionally TCLR's
layer4 (no temporal stride, temporally dilated layer4[0].conv1; backbones/r3d.h). At width 1 it
has torchvision's r3d_18's parameters, names aside. Shared by peer_train_loader.py and
peer_step.py.
"""

import torch.nn as nn


def conv_bn_relu(cin, cout, kernel, stride, padding, relu=True):
    layers = [nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, bias=False),
              nn.BatchNorm3d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """torchvision's video BasicBlock with Conv3DSimple (3x3x3)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = conv_bn_relu(cin, cout, 3, stride, 1)
        self.conv2 = conv_bn_relu(cout, cout, 3, 1, 1, relu=False)
        self.downsample = (conv_bn_relu(cin, cout, 1, stride, 0, relu=False)
                           if stride != 1 or cin != cout else None)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + residual)


class R3d18(nn.Module):
    """torchvision's r3d_18 (VideoResNet) with scaled widths and dropout before the fc."""

    def __init__(self, num_classes, width, dropout):
        super().__init__()
        widths = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]  # ScaledWidth
        self.stem = conv_bn_relu(3, widths[0], (3, 7, 7), (1, 2, 2), (1, 3, 3))
        layers, cin = [], widths[0]
        for s, cout in enumerate(widths):
            stride = 1 if s == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():  # torchvision's VideoResNet initialisation
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(self.dropout(self.avgpool(x).flatten(1)))


def tclr_layer4(model):
    """TCLR's layer4 on a torchvision-layout R3D-18 (R3dOptions.tclr_temporal_layer4)."""
    block = model.layer4[0]
    conv = block.conv1[0]
    conv.stride, conv.dilation, conv.padding = (1, 2, 2), (2, 1, 1), (2, 1, 1)
    block.downsample[0].stride = (1, 2, 2)
    return model
