"""ResNet-18 and ResNet-50 (He et al., 2016) for any input size and channel count.

Three stems: `cifar` (3x3 conv, stride 1, no max-pool), what the official MedMNIST 28 px models
use, `imagenet` (7x7 conv stride 2 + 3x3 max-pool) for large inputs, and `strided` (the CIFAR stem
with stride 2) for volumes on small machines. The default follows the image size. Adaptive average
pooling makes the head size-independent. Module names match torchvision's (`conv1`, `bn1`,
`layer1`..`layer4`, `fc`), so state dicts line up with its ImageNet weights; the code is this
project's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.models.registry import register
from medmnist_lab.registry import Registry

# Up to this size the CIFAR stem keeps enough resolution: a 7x7/2 stem + max-pool would leave a
# 28 px image 7x7 before the first block and 1x1 at the end.
CIFAR_STEM_MAX_SIZE = 64


@dataclass(frozen=True)
class StemSpec:
    kernel: int
    stride: int
    max_pool: bool


STEMS: Registry[StemSpec] = Registry("stem")
STEMS.add("cifar", StemSpec(kernel=3, stride=1, max_pool=False))
STEMS.add("imagenet", StemSpec(kernel=7, stride=2, max_pool=True))
# The CIFAR stem with stride 2: a quarter of the positions in 2D, an eighth in 3D, where the CIFAR
# stem's full-resolution first stages dominate the cost (the `fast` recipe's 3D variant uses it).
STEMS.add("strided", StemSpec(kernel=3, stride=2, max_pool=False))


def default_stem(image_size: int) -> str:
    return "cifar" if image_size <= CIFAR_STEM_MAX_SIZE else "imagenet"


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, planes * self.expansion, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand. The stride sits on the 3x3 conv ("ResNet v1.5"): a strided
    1x1 conv, as in the original paper and the seed, skips three quarters of the input pixels."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, planes * self.expansion, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        in_channels: int,
        num_classes: int,
        image_size: int,
        *,
        stem: str | None = None,
        width: int = 64,
        zero_init_residual: bool = False,
        **unknown: object,
    ) -> None:
        super().__init__()
        if unknown:
            raise MedMNISTLabError(
                f"unknown ResNet option(s) {', '.join(map(repr, sorted(unknown)))}; "
                "choose from: stem, width, zero_init_residual"
            )
        if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
            raise MedMNISTLabError(f"ResNet width must be a positive integer, got {width!r}")
        self.stem = STEMS.canonical(stem) if stem is not None else default_stem(image_size)
        spec = STEMS.get(self.stem)
        self.width = width

        self.conv1 = nn.Conv2d(
            in_channels,
            width,
            spec.kernel,
            stride=spec.stride,
            padding=spec.kernel // 2,
            bias=False,
        )
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        # Identity has no parameters, so the state dict is the same with or without max-pool.
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if spec.max_pool else nn.Identity()
        cin = width
        stages = []
        for i, n_blocks in enumerate(layers):
            planes = width * 2**i
            blocks = []
            for j in range(n_blocks):
                blocks.append(block(cin, planes, stride=2 if i > 0 and j == 0 else 1))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = cin
        self.fc = nn.Linear(cin, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            # Each residual branch starts as zero, so every block starts as the identity
            # (Goyal et al., 2017): helps large-batch training.
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    nn.init.zeros_(m.last_bn().weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features, (B, feature_dim)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


@register("resnet18")
def resnet18(in_channels: int, num_classes: int, image_size: int, **kw: object) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), in_channels, num_classes, image_size, **kw)


@register("resnet50")
def resnet50(in_channels: int, num_classes: int, image_size: int, **kw: object) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), in_channels, num_classes, image_size, **kw)
