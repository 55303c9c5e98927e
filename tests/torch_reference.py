"""The original PyTorch networks in their original layout, for golden files and live checks.

Written from the released code (nets/audio_net.py, nets/vision_net.py, nets/cls_net.py) and
torchvision's ResNet18, without torchvision (whose PyPI wheel does not import beside the CPU torch
used here). State_dict keys equal the originals': `features.*` for the sound and frame nets, `fc1.*`
for the classifier, torchvision names for the plain ResNet18.
"""
import torch
import torch.nn.functional as F
from torch import nn


class ANet(nn.Module):
    def __init__(self, width=1.0):
        super().__init__()
        chans = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]
        layers, cin = [], 1
        for c in chans:
            for _ in range(2):
                layers += [nn.Conv1d(cin, c, 3, 2, 1), nn.BatchNorm1d(c), nn.ReLU()]
                cin = c
            layers.append(nn.MaxPool1d(2, 2))
        self.features = nn.Sequential(*layers)
        self.out_dim = chans[-1]

    def forward(self, x):
        x = self.features(x)
        return F.adaptive_max_pool1d(x, 1).view(x.size(0), self.out_dim)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision.models.resnet18 (same children, names and order)."""

    def __init__(self, num_classes=1000, width=1.0):
        super().__init__()
        chans = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, chans[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(chans[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = chans[0]
        for i, c in enumerate(chans, start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, c, stride), BasicBlock(c, c, 1)))
            cin = c
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class FrameNet(nn.Module):
    """The original `Resnet` wrapper: features = children()[:-1] (avgpool kept), then max pool 1x1."""

    def __init__(self, resnet):
        super().__init__()
        self.features = nn.Sequential(*list(resnet.children())[:-1])

    def forward(self, x, pool=True):
        x = self.features(x)
        if not pool:
            return x
        x = F.adaptive_max_pool2d(x, 1)
        return x.view(x.size(0), x.size(1))


class ClassifierConcat(nn.Module):
    def __init__(self, num_classes, in_dim=1024):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, num_classes)

    def forward(self, feat_img, feat_sound):
        return self.fc1(torch.cat((feat_img, feat_sound), dim=-1))


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(pixels_nchw):
    mean = torch.tensor(IMAGENET_MEAN, dtype=pixels_nchw.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=pixels_nchw.dtype).view(1, 3, 1, 1)
    return (pixels_nchw - mean) / std


def frame_stages(frame_net, x):
    """Outputs of the stem (after maxpool) and layer1..4 of the original frame net."""
    feats = frame_net.features
    out = {}
    x = feats[3](feats[2](feats[1](feats[0](x))))
    out["stem"] = x
    for i in range(1, 5):
        x = feats[3 + i](x)
        out[f"layer{i}"] = x
    return out


def sound_stages(sound_net, x):
    """Outputs of ANet's four blocks (after each max pool)."""
    out = {}
    for block in range(4):
        for layer in sound_net.features[7 * block: 7 * block + 7]:
            x = layer(x)
        out[f"block{block + 1}"] = x
    return out
