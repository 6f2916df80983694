"""Turn a 2D ResNet into a volumetric one: 2.5D, 3D or ACS convolutions (MedMNIST v2's 3D models).

The official 3D benchmark builds the CIFAR-stem ResNet in 2D and converts it with the `acsconv`
package (Yang et al., "Reinforcing 2D Representations for 3D Medical Images", 2021). Its layers
work with the project's torch, but its model converter does not: it passes a BatchNorm layer's bias
*tensor* as the new `bias` flag of `BatchNorm3d.__init__` (torch >= 2.6), so the conversion fails.
This module is the converter, written for this project's ResNets; the convolutions themselves are
acsconv's (`ACSConv`, `Conv2_5d`) or torch's `Conv3d`, so the models are the official ones:

- ``2.5d``: each k x k kernel becomes 1 x k x k (acsconv's `Conv2_5d`, unsqueezed on depth): slices
  are convolved separately, and only pooling and the head see the third axis;
- ``3d``: k x k x k kernels (`nn.Conv3d`), freshly initialised like the 2D ones;
- ``acs``: the 2D kernels split into three groups along the output channels, one convolving axial,
  one coronal and one sagittal planes (`ACSConv`): 2D kernel sizes, 3D context.

Weights carry over as acsconv's converters carry them (2D kernels as they are for ACS, unsqueezed for
2.5D); BatchNorm and pooling layers become their 3D counterparts with the same settings and state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.models.resnet import ResNet
from medmnist_lab.models.zoo import create_model
from medmnist_lab.registry import Registry


@dataclass(frozen=True)
class Conversion:
    summary: str
    conv: Callable[[nn.Conv2d], nn.Module]  # a 2D convolution -> its volumetric counterpart


def _need_acsconv() -> None:
    try:
        import acsconv  # noqa: F401
    except ImportError:  # a dependency of the project; a broken environment gets one clear line
        raise MedMNISTLabError("2.5D and ACS convolutions need the `acsconv` package: `pip install ACSConv`") from None


def _conv_args(c: nn.Conv2d) -> dict:
    if c.padding_mode != "zeros" or isinstance(c.padding, str):
        raise MedMNISTLabError(f"cannot convert {c}: only zero padding given as numbers is supported")
    return dict(
        in_channels=c.in_channels,
        out_channels=c.out_channels,
        kernel_size=c.kernel_size[0],
        stride=c.stride[0],
        padding=c.padding[0],
        dilation=c.dilation[0],
        groups=c.groups,
        bias=c.bias is not None,
    )


def _square(c: nn.Conv2d) -> None:
    for what in ("kernel_size", "stride", "padding", "dilation"):
        a, b = getattr(c, what)
        if a != b:
            raise MedMNISTLabError(f"cannot convert {c}: its {what} differs between height and width")


def _copy(dst: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    with torch.no_grad():
        dst.weight.copy_(weight)
        if bias is not None:
            dst.bias.copy_(bias)
    return dst


def to_acs(c: nn.Conv2d) -> nn.Module:
    _need_acsconv()
    from acsconv.operators import ACSConv

    _square(c)
    return _copy(ACSConv(**_conv_args(c)), c.weight, c.bias)  # same (out, in, k, k) kernel


def to_2_5d(c: nn.Conv2d) -> nn.Module:
    _need_acsconv()
    from acsconv.operators import Conv2_5d

    _square(c)
    # unsqueeze_axis -3: the kernel is 1 x k x k, i.e. each depth slice is convolved on its own.
    return _copy(Conv2_5d(**_conv_args(c), unsqueeze_axis=-3), c.weight.unsqueeze(-3), c.bias)


def to_3d(c: nn.Conv2d) -> nn.Module:
    _square(c)
    conv = nn.Conv3d(**_conv_args(c))
    # The 2D kernel has no 3D meaning: initialised as the project's ResNets initialise theirs.
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


CONVERSIONS: Registry[Conversion] = Registry("convolution type")
CONVERSIONS.add(
    "2.5d",
    Conversion("2D kernels on each slice (1 x k x k), 3D pooling: acsconv Conv2_5d", to_2_5d),
    aliases=("conv2_5d",),
)
CONVERSIONS.add("3d", Conversion("k x k x k kernels, trained from scratch: torch Conv3d", to_3d), aliases=("conv3d",))
CONVERSIONS.add(
    "acs",
    Conversion("2D kernels split over the axial, coronal and sagittal planes: acsconv ACSConv", to_acs),
    aliases=("acsconv",),
)


def _batchnorm(b: nn.BatchNorm2d) -> nn.BatchNorm3d:
    new = nn.BatchNorm3d(b.num_features, b.eps, b.momentum, b.affine, b.track_running_stats)
    new.load_state_dict(b.state_dict())
    return new


def _max_pool(p: nn.MaxPool2d) -> nn.MaxPool3d:
    return nn.MaxPool3d(p.kernel_size, p.stride, p.padding, p.dilation, p.return_indices, p.ceil_mode)


def _adaptive_avg_pool(p: nn.AdaptiveAvgPool2d) -> nn.AdaptiveAvgPool3d:
    size = p.output_size
    if isinstance(size, tuple):
        if len(set(size)) != 1:
            raise MedMNISTLabError(f"cannot convert {p}: its output size is not the same on both axes")
        size = size[0]
    return nn.AdaptiveAvgPool3d(size)


# Layers whose meaning does not depend on the number of spatial axes: kept as they are.
DIMENSION_FREE = (nn.ReLU, nn.Identity, nn.Linear, nn.Flatten, nn.Dropout, nn.Sequential)


def _convert(module: nn.Module, conv: Callable[[nn.Conv2d], nn.Module]) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            new: nn.Module | None = conv(child)
        elif isinstance(child, nn.BatchNorm2d):
            new = _batchnorm(child)
        elif isinstance(child, nn.MaxPool2d):
            new = _max_pool(child)
        elif isinstance(child, nn.AdaptiveAvgPool2d):
            new = _adaptive_avg_pool(child)
        elif type(child).__module__.startswith("torch.nn") and not isinstance(child, DIMENSION_FREE):
            raise MedMNISTLabError(f"cannot convert layer {name} ({type(child).__name__}) to 3D")
        else:
            new = None
            _convert(child, conv)  # a container (a block, a stage): convert what is inside
        if new is not None:
            setattr(module, name, new)


def to_volumetric(model: nn.Module, conv: str) -> nn.Module:
    """Convert `model` (a 2D ResNet of this project) in place to take (B, C, D, H, W) volumes."""
    kind = CONVERSIONS.get(conv)
    if not isinstance(model, ResNet):
        raise MedMNISTLabError(
            f"{type(model).__name__} has no 3D form: --conv converts the ResNets (resnet18, resnet50) only"
        )
    _convert(model, kind.conv)
    model.conv = CONVERSIONS.canonical(conv)  # what the model is, for its repr and checks
    return model


def create_volumetric_model(
    name: str, in_channels: int, num_classes: int, image_size: int, conv: str, **kw: object
) -> nn.Module:
    """`create_model` for volumes (B, in_channels, size, size, size): the 2D model, converted."""
    return to_volumetric(create_model(name, in_channels, num_classes, image_size, **kw), conv)
