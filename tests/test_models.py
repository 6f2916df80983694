"""Model registry, ResNet-18/50 architecture facts, and the optional timm family."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from medmnist_lab.errors import MedMNISTLabError, UnknownNameError
from medmnist_lab.models import MODELS, create_model, list_models
from medmnist_lab.models.resnet import Bottleneck


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [28, 64, 128, 224])
def test_output_shapes(name: str, channels: int, size: int) -> None:
    model = create_model(name, channels, 7, size, width=4).eval()
    x = torch.randn(2, channels, size, size)
    with torch.inference_mode():
        assert model(x).shape == (2, 7)
        feats = model.forward_features(x)
    expansion = 4 if name == "resnet50" else 1
    assert model.feature_dim == 4 * 8 * expansion
    assert feats.shape == (2, model.feature_dim)


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
@pytest.mark.parametrize("size", [28, 64, 224])
def test_both_stems_at_any_size(stem: str, size: int) -> None:
    model = create_model("resnet18", 3, 4, size, stem=stem, width=4).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 4)
    assert model.stem == stem


@pytest.mark.parametrize(
    ("size", "stem"),
    [(28, "cifar"), (64, "cifar"), (65, "imagenet"), (128, "imagenet"), (224, "imagenet")],
)
def test_default_stem_follows_image_size(size: int, stem: str) -> None:
    model = create_model("resnet50", 1, 2, size, width=4)
    assert model.stem == stem
    if stem == "cifar":
        assert isinstance(model.maxpool, nn.Identity)
        assert (model.conv1.kernel_size, model.conv1.stride) == ((3, 3), (1, 1))
    else:
        assert isinstance(model.maxpool, nn.MaxPool2d)
        assert (model.conv1.kernel_size, model.conv1.stride) == ((7, 7), (2, 2))


def test_stem_override_and_spatial_size() -> None:
    # CIFAR stem: 28 px reaches layer4 as 4x4 (strides 1,1,2,2,2); ImageNet stem: 1x1.
    seen: dict[str, tuple[int, ...]] = {}
    for stem in ("cifar", "imagenet"):
        model = create_model("resnet18", 1, 2, 28, stem=stem, width=4).eval()
        model.layer4.register_forward_hook(lambda m, i, o, s=stem: seen.__setitem__(s, o.shape))
        with torch.inference_mode():
            model(torch.randn(1, 1, 28, 28))
    assert seen["cifar"][-2:] == (4, 4)
    assert seen["imagenet"][-2:] == (1, 1)


def test_bottleneck_stride_on_3x3_conv() -> None:
    model = create_model("resnet50", 3, 10, 224, width=8)
    strided = [b for b in model.modules() if isinstance(b, Bottleneck) and b.conv2.stride == (2, 2)]
    assert len(strided) == 3  # first block of layer2, layer3, layer4
    for block in model.modules():
        if isinstance(block, Bottleneck):
            assert block.conv1.stride == (1, 1) and block.conv3.stride == (1, 1)
            assert block.conv1.kernel_size == (1, 1) and block.conv2.kernel_size == (3, 3)
    first = model.layer2[0]
    assert first.downsample[0].stride == (2, 2)  # the shortcut downsamples with the block


@pytest.mark.parametrize(("name", "tv_name"), [("resnet18", "resnet18"), ("resnet50", "resnet50")])
def test_same_parameters_as_torchvision(name: str, tv_name: str) -> None:
    """Width 64 + ImageNet stem is the standard architecture: same tensors, names and shapes."""
    import torchvision

    ours = create_model(name, 3, 10, 224, stem="imagenet")
    theirs = getattr(torchvision.models, tv_name)(num_classes=10)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    if name == "resnet18":
        assert n_params(ours) == 11_181_642  # torchvision's 11.69M minus 990 fc outputs
    # The CIFAR stem only swaps the 7x7 conv1 for a 3x3 one.
    small = create_model(name, 3, 10, 28)
    assert n_params(ours) - n_params(small) == 64 * 3 * (49 - 9)


def test_in_channels_and_width() -> None:
    model = create_model("resnet18", 5, 3, 32, width=8)
    assert model.conv1.in_channels == 5
    assert model.conv1.out_channels == 8
    assert model.layer4[-1].conv2.out_channels == 64
    assert model.fc.out_features == 3


def test_kaiming_init_and_zero_init_residual() -> None:
    torch.manual_seed(0)
    model = create_model("resnet18", 3, 2, 28, width=16)
    w = model.layer1[0].conv1.weight  # fan_out = 16 * 9
    assert abs(w.std().item() - (2 / (16 * 9)) ** 0.5) < 0.02
    assert torch.all(model.layer1[0].bn2.weight == 1)
    zero = create_model("resnet50", 3, 2, 28, width=4, zero_init_residual=True)
    assert torch.all(zero.layer1[0].bn3.weight == 0)
    assert torch.all(zero.layer1[0].bn2.weight == 1)


def test_names_case_insensitive_and_seed_spelling() -> None:
    for name in ("ResNet18", "RESNET50", "resnet18"):
        assert isinstance(create_model(name, 1, 2, 28, width=4), nn.Module)
    assert {"resnet18", "resnet50"} <= set(MODELS.names())
    assert "timm:<name>" in list_models()


def test_unknown_model_lists_choices() -> None:
    with pytest.raises(UnknownNameError) as e:
        create_model("resnet19", 1, 2, 28)
    msg = str(e.value)
    assert "resnet19" in msg and "resnet18" in msg and "resnet50" in msg
    assert isinstance(e.value, MedMNISTLabError)
    with pytest.raises(UnknownNameError, match=r"unknown model family 'tim'.*timm"):
        create_model("tim:resnet18", 1, 2, 28)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"stem": "cifar10"}, r"unknown stem 'cifar10'.*cifar, imagenet"),
        ({"width": 0}, r"width must be a positive integer, got 0"),
        ({"width": -4}, r"width must be a positive integer, got -4"),
        ({"width": 2.5}, r"width must be a positive integer, got 2.5"),
        ({"depth": 3}, r"unknown ResNet option\(s\) 'depth'; choose from: stem, width"),
    ],
)
def test_bad_kwargs(kw: dict, match: str) -> None:
    with pytest.raises(MedMNISTLabError, match=match):
        create_model("resnet18", 1, 2, 28, **kw)


@pytest.mark.parametrize("arg", ["in_channels", "num_classes", "image_size"])
def test_bad_sizes(arg: str) -> None:
    args = {"in_channels": 1, "num_classes": 2, "image_size": 28, arg: 0}
    with pytest.raises(MedMNISTLabError, match=f"{arg} must be a positive integer, got 0"):
        create_model("resnet18", **args)


def test_timm_missing_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` raise ImportError
    with pytest.raises(MedMNISTLabError, match=r'pip install "medmnist-lab\[timm\]"'):
        create_model("timm:resnet18", 1, 2, 28)


class _FakeTimmNet(nn.Module):
    """Mimics timm's model API: forward_features (maps), forward_head, num_features."""

    def __init__(self, in_chans: int, num_classes: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.num_features = 6
        self.drop_rate = drop_rate
        self.body = nn.Conv2d(in_chans, 6, 3, padding=1)
        self.head = nn.Linear(6, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def test_timm_family_with_fake_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict]] = []
    fake = types.ModuleType("timm")
    fake.is_model = lambda name: name == "fakenet"  # type: ignore[attr-defined]
    fake.list_models = lambda: ["fakenet", "othernet"]  # type: ignore[attr-defined]

    def create(name: str, **kw: object) -> nn.Module:
        calls.append((name, kw))
        return _FakeTimmNet(**kw)  # type: ignore[arg-type]

    fake.create_model = create  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "timm", fake)

    model = create_model("TIMM:fakenet", 3, 5, 28, drop_rate=0.1)
    assert calls == [("fakenet", {"in_chans": 3, "num_classes": 5, "drop_rate": 0.1})]
    x = torch.randn(2, 3, 28, 28)
    assert model(x).shape == (2, 5)
    assert model.feature_dim == 6
    assert model.forward_features(x).shape == (2, 6)

    with pytest.raises(UnknownNameError, match=r"unknown timm model 'fakenett'.*'fakenet'"):
        create_model("timm:fakenett", 3, 5, 28)
    with pytest.raises(MedMNISTLabError, match="names no model"):
        create_model("timm:", 3, 5, 28)
