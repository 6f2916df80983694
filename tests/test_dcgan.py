"""DCGAN nets: shapes, the paper's architecture rules, init statistics, conditioning."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medmnist_lab.data.registry import get_dataset
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.gan.modes import MODES, build_nets, make_spec
from medmnist_lab.models.dcgan import Discriminator, Generator, PerClass, spatial_plan

POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.LPPool2d)


pytestmark = pytest.mark.usefixtures("one_thread")


def _spec(flag: str, mode: str, size: int, width: int = 4, nz: int = 8):
    return make_spec(get_dataset(flag), mode, size, nz=nz, width=width)


def test_spatial_plan() -> None:
    assert spatial_plan(28) == [4, 7, 14, 28]
    assert spatial_plan(64) == [4, 8, 16, 32, 64]
    with pytest.raises(MedMNISTLabError, match="28, 64"):
        spatial_plan(128)


@pytest.mark.parametrize("mode", ["per-class", "conditional"])
@pytest.mark.parametrize("size", [28, 64])
@pytest.mark.parametrize("flag", ["breastmnist", "dermamnist"])  # 1 channel / 2 classes, 3 / 7
def test_output_shapes(flag: str, size: int, mode: str) -> None:
    spec = _spec(flag, mode, size)
    g, d = build_nets(spec)
    y = torch.arange(5) % spec.n_classes  # mixed classes: per-class nets must route them
    x = g(torch.randn(5, spec.nz), y)
    assert x.shape == (5, spec.channels, size, size)
    assert x.min() >= -1 and x.max() <= 1
    logits = d(x, y)
    assert logits.shape == (5,)
    assert torch.isfinite(logits).all()


def _layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if not isinstance(m, (nn.Sequential, nn.ModuleList, PerClass))]


@pytest.mark.parametrize("size", [28, 64])
@pytest.mark.parametrize("conditional", [False, True])
def test_architecture_follows_the_paper(size: int, conditional: bool) -> None:
    k = 3 if conditional else 0
    g, d = Generator(1, size, nz=8, width=4, n_classes=k), Discriminator(1, size, width=4, n_classes=k)
    for net in (g, d):
        kinds = _layers(net)
        assert not any(isinstance(m, nn.Linear) for m in kinds), "no fully connected layers"
        assert not any(isinstance(m, POOLS) for m in kinds), "no pooling"
        assert any(isinstance(m, nn.BatchNorm2d) for m in kinds)

    gl = [m for m in g.net]
    convs = [m for m in gl if isinstance(m, nn.ConvTranspose2d)]
    assert len(convs) == len(spatial_plan(size))  # 1x1 -> 4x4, then one per doubling
    assert all(c.stride == (2, 2) for c in convs[1:])  # fractionally strided upsampling
    assert isinstance(gl[-1], nn.Tanh) and isinstance(gl[-2], nn.ConvTranspose2d)  # no BN on output
    for i, m in enumerate(gl[:-2]):  # every hidden conv: BN then ReLU
        if isinstance(m, nn.ConvTranspose2d):
            assert isinstance(gl[i + 1], nn.BatchNorm2d) and isinstance(gl[i + 2], nn.ReLU)
    assert not any(isinstance(m, nn.LeakyReLU) for m in gl)

    dl = [m for m in d.features]
    assert isinstance(dl[0], nn.Conv2d) and isinstance(dl[1], nn.LeakyReLU)  # no BN on the input layer
    dconvs = [m for m in dl if isinstance(m, nn.Conv2d)]
    assert all(c.stride == (2, 2) for c in dconvs)  # strided downsampling
    assert sum(isinstance(m, nn.BatchNorm2d) for m in dl) == len(dconvs) - 1
    assert all(m.negative_slope == 0.2 for m in dl if isinstance(m, nn.LeakyReLU))
    assert not any(isinstance(m, nn.ReLU) for m in dl)
    assert isinstance(d.head, nn.Conv2d) and d.head.kernel_size == (4, 4)


def test_init_statistics() -> None:
    torch.manual_seed(0)
    g, d = build_nets(_spec("dermamnist", "conditional", 64, width=32, nz=100))
    for net in (g, d):
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Embedding)) and m.weight.numel() > 2000:
                assert abs(m.weight.mean().item()) < 0.003
                assert m.weight.std().item() == pytest.approx(0.02, rel=0.1)
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None:
                assert torch.all(m.bias == 0)
            if isinstance(m, nn.BatchNorm2d) and m.weight.numel() >= 64:
                assert m.weight.mean().item() == pytest.approx(1.0, abs=0.01)
                assert m.weight.std().item() == pytest.approx(0.02, rel=0.35)
                assert torch.all(m.bias == 0)


def test_conditioning_changes_outputs() -> None:
    torch.manual_seed(0)
    g, d = build_nets(_spec("dermamnist", "conditional", 28))
    g.eval(), d.eval()
    z = torch.randn(1, 8).repeat(2, 1)
    y = torch.tensor([0, 1])
    with torch.no_grad():
        for m in d.modules():  # larger weights than the init, so the logits are far from 0
            if isinstance(m, (nn.Conv2d, nn.Embedding)):
                m.weight.normal_(0, 0.5)
        x = g(z, y)
        assert not torch.allclose(x[0], x[1]), "the label must reach the generator"
        logits = d(x[:1].repeat(2, 1, 1, 1), y)
        # projection: the logits differ by exactly <embed(0) - embed(1), h(x)>
        h = d.features(x[:1]).flatten()
        expected = ((d.embed.weight[0] - d.embed.weight[1]) * h).sum()
        assert (logits[0] - logits[1]).item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-9)
        assert expected.abs() > 1e-3
    with pytest.raises(ValueError, match="labels"):
        g(z)


def test_per_class_routes_each_sample_to_its_net() -> None:
    torch.manual_seed(0)
    g, _ = build_nets(_spec("dermamnist", "per-class", 28))
    g.eval()
    z, y = torch.randn(6, 8), torch.tensor([3, 0, 3, 6, 0, 1])
    with torch.no_grad():
        out = g(z, y)
        for i in range(6):
            assert torch.allclose(out[i], g.nets[int(y[i])](z[i : i + 1])[0], atol=1e-6)


def test_mode_registry() -> None:
    assert set(MODES.names()) == {"per-class", "conditional"}
    assert MODES.canonical("per_class") == "per-class"
    with pytest.raises(MedMNISTLabError, match=r"unknown GAN mode 'conditionl'.*did you mean 'conditional'"):
        MODES.get("conditionl")


@pytest.mark.parametrize("mode", ["per-class", "conditional"])
def test_multilabel_is_refused_with_the_reason(mode: str) -> None:
    with pytest.raises(MedMNISTLabError, match=r"chestmnist is multi-label.*undefined"):
        make_spec(get_dataset("chestmnist"), mode, 28)
