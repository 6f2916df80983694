"""GAN modes and losses, in registries: what gets built for a dataset and how it is trained.

- `per-class`: one unconditional DCGAN per class, each trained only on its class's images (what
  the seed did). Class balance of the output is then exact by construction, but every GAN sees
  only its class: 147 images for BreastMNIST's malignant class.
- `conditional`: one DCGAN for all classes; the label enters the generator (one-hot next to z)
  and the discriminator (projection). All images train the shared layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medmnist_lab.data.registry import DatasetInfo
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.models.dcgan import Discriminator, Generator, PerClass, dcgan_init_, spatial_plan
from medmnist_lab.registry import Registry


@dataclass(frozen=True)
class GANSpec:
    """Everything needed to rebuild the nets of a checkpoint (plain types only)."""

    dataset: str
    mode: str
    size: int
    channels: int
    n_classes: int
    class_names: tuple[str, ...]
    nz: int = 100
    width: int = 64

    def to_dict(self) -> dict:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GANSpec:
        return cls(**{**d, "class_names": tuple(d["class_names"])})


@dataclass(frozen=True)
class GANMode:
    name: str
    summary: str
    build: Callable[[GANSpec], tuple[nn.Module, nn.Module]]
    # per-class GANs train on class-pure batches, so each class's nets see only their class
    class_pure_batches: bool


MODES: Registry[GANMode] = Registry("GAN mode")


def _build_per_class(s: GANSpec) -> tuple[nn.Module, nn.Module]:
    gens = [Generator(s.channels, s.size, s.nz, s.width) for _ in range(s.n_classes)]
    discs = [Discriminator(s.channels, s.size, s.width) for _ in range(s.n_classes)]
    return PerClass(gens), PerClass(discs)


def _build_conditional(s: GANSpec) -> tuple[nn.Module, nn.Module]:
    return (
        Generator(s.channels, s.size, s.nz, s.width, n_classes=s.n_classes),
        Discriminator(s.channels, s.size, s.width, n_classes=s.n_classes),
    )


MODES.add(
    "per-class",
    GANMode("per-class", "one unconditional DCGAN per class (the seed's scheme)", _build_per_class, True),
    aliases=("per_class", "perclass"),
)
MODES.add(
    "conditional",
    GANMode(
        "conditional",
        "one class-conditional DCGAN: one-hot label into G, projection discriminator",
        _build_conditional,
        False,
    ),
    aliases=("cgan", "cond"),
)


def make_spec(info: DatasetInfo, mode: str, size: int, nz: int = 100, width: int = 64) -> GANSpec:
    """Validate the request and describe the nets; refuses multi-label datasets (see below)."""
    mode = MODES.canonical(mode)
    if info.is_multilabel:
        # A per-class GAN needs one class per image, and every sampling option counts images per
        # class: with 14 findings that co-occur, "N per class" or "balance the classes" has no
        # single meaning (adding a 'nodule' image also adds to 'mass' when both are present).
        raise MedMNISTLabError(
            f"{info.flag} is multi-label ({info.n_classes} findings an image can carry together): "
            f"GAN modes generate and count images per class, which is undefined when classes "
            f"overlap; GAN synthesis supports single-label datasets only"
        )
    spatial_plan(size)  # raises for unsupported sizes
    if nz <= 0 or width <= 0:
        raise MedMNISTLabError(f"nz and width must be positive, got nz={nz}, width={width}")
    return GANSpec(info.flag, mode, size, info.n_channels, info.n_classes, info.label_names, nz, width)


def build_nets(spec: GANSpec) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator), both called as net(inputs, y), with the DCGAN init applied."""
    g, d = MODES.get(spec.mode).build(spec)
    g.apply(dcgan_init_)
    d.apply(dcgan_init_)
    return g, d


@dataclass(frozen=True)
class GANLoss:
    name: str
    d: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (real logits, fake logits) -> loss
    g: Callable[[torch.Tensor], torch.Tensor]  # fake logits -> loss


def _bce_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros_like(fake)
    )


def _bce_g(fake: torch.Tensor) -> torch.Tensor:
    # Non-saturating form (maximise log D(G(z))), as in Goodfellow et al. and the DCGAN code.
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


LOSSES: Registry[GANLoss] = Registry("GAN loss")
LOSSES.add("bce", GANLoss("bce", _bce_d, _bce_g))
LOSSES.add(
    "hinge",
    GANLoss("hinge", lambda r, f: F.relu(1 - r).mean() + F.relu(1 + f).mean(), lambda f: -f.mean()),
)
