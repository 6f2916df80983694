"""The 2D -> 3D converter (models.volumetric), layer by layer against acsconv's own definitions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.models import CONVERSIONS, create_model, create_volumetric_model
from medmnist_lab.models.volumetric import to_volumetric

acsconv = pytest.importorskip("acsconv")
from acsconv.converters import ACSConverter, Conv2_5dConverter, Conv3dConverter  # noqa: E402

# acsconv's converters work on a model of convolutions alone (their BatchNorm step is what fails on
# torch >= 2.6), so each of our converted convolutions is compared with theirs on the same weights.
THEIRS = {"acs": ACSConverter, "2.5d": Conv2_5dConverter}


def _conv(cin: int = 3, cout: int = 7, k: int = 3, stride: int = 1, padding: int = 1, bias: bool = False) -> nn.Conv2d:
    torch.manual_seed(0)
    return nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=bias)


@pytest.mark.parametrize("conv", ["acs", "2.5d"])
@pytest.mark.parametrize(
    "stride,k,padding,bias", [(1, 3, 1, False), (2, 3, 1, True), (1, 1, 0, False), (2, 1, 0, False)]
)
def test_each_convolution_equals_acsconv(conv, stride, k, padding, bias):
    ours = nn.Sequential(_conv(k=k, stride=stride, padding=padding, bias=bias))
    reference = nn.Sequential(_conv(k=k, stride=stride, padding=padding, bias=bias))
    theirs = THEIRS[conv](reference).model
    ours.add_module("0", CONVERSIONS.get(conv).conv(ours[0]))
    assert type(ours[0]) is type(theirs[0])
    for name, p in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[name], p), name
    x = torch.randn(2, 3, 9, 10, 11)
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)


def test_3d_convolution_has_acsconv_shape():
    c = _conv(stride=2, bias=True)
    theirs = Conv3dConverter(nn.Sequential(_conv(stride=2, bias=True))).model[0]
    ours = CONVERSIONS.get("3d").conv(c)
    assert isinstance(ours, nn.Conv3d)
    for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    assert ours.weight.shape == theirs.weight.shape and ours.bias is not None


def test_batchnorm_and_pools_keep_their_settings_and_state():
    model = create_model("resnet18", 1, 2, 28, width=4, stem="imagenet")
    model.bn1.running_mean.fill_(0.25)
    model.bn1.weight.data.fill_(2.0)
    to_volumetric(model, "acs")
    assert isinstance(model.bn1, nn.BatchNorm3d)
    assert torch.all(model.bn1.running_mean == 0.25) and torch.all(model.bn1.weight == 2.0)
    assert isinstance(model.maxpool, nn.MaxPool3d) and model.maxpool.kernel_size == 3
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool3d)
    assert not any(isinstance(m, nn.Conv2d | nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("model", ["resnet18", "resnet50"])
@pytest.mark.parametrize("conv", ["2.5d", "3d", "acs"])
def test_whole_resnets_take_volumes(model, conv):
    net = create_volumetric_model(model, 1, 3, 16, conv, width=4)
    out = net(torch.randn(2, 1, 16, 16, 16))
    assert out.shape == (2, 3)
    assert net.forward_features(torch.randn(2, 1, 16, 16, 16)).shape == (2, net.feature_dim)
    out.sum().backward()  # trainable end to end
    assert net.conv == conv


def test_2_5d_sees_each_slice_alone():
    """2.5D kernels are 1 x k x k: before pooling, changing one slice changes only that slice."""
    net = create_volumetric_model("resnet18", 1, 2, 8, "2.5d", width=4).eval()
    stem = nn.Sequential(net.conv1, net.bn1, net.relu)
    x = torch.randn(1, 1, 8, 8, 8)
    y = x.clone()
    y[:, :, 3] += 1
    changed = (stem(x) - stem(y)).abs().sum(dim=(0, 1, 3, 4)) > 0
    assert changed.tolist() == [i == 3 for i in range(8)]


def test_names_and_errors():
    assert CONVERSIONS.canonical("ACSConv") == "acs" and CONVERSIONS.canonical("conv2_5d") == "2.5d"
    with pytest.raises(MedMNISTLabError, match="convolution type"):
        create_volumetric_model("resnet18", 1, 2, 16, "4d", width=4)
    with pytest.raises(MedMNISTLabError, match="has no 3D form"):
        to_volumetric(nn.Sequential(nn.Conv2d(1, 2, 3)), "acs")
