"""The policy registry, spec parsing and the `BatchAugment` the training engine calls.

A spec is policy names joined with "+": at most one image policy (none, simple, autoaugment-*,
randaugment, trivialaugment), optionally the corruption policy medmnist-c (applied after the image
policy), and optionally mixup and/or cutmix, e.g. "simple+mixup" or "trivialaugment+medmnist-c".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medmnist_lab.augment import autoaug, corruptions, mix, simple, volume
from medmnist_lab.augment.ops import Draw
from medmnist_lab.augment.params import Param, resolve
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.registry import Registry

ImageTransform = Callable[[torch.Tensor, Draw], torch.Tensor]  # float (B,C,H,W) 0..255 -> same
MixTransform = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, Draw], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class PolicyDef:
    name: str
    kind: str  # "image", "corruption" (after the image policy) or "mix"
    summary: str  # one line, for `augment list` and --help
    params: tuple[Param, ...]
    # (resolved magnitudes, image size, channels) -> transform; None means identity
    build: Callable[[dict[str, Any], int, int], Any]
    dims: tuple[int, ...] = (2,)  # spatial dimensions it works on: 2 (images), 3 (volumes)


POLICIES: Registry[PolicyDef] = Registry("augmentation policy")

FILL = Param("fill", 0, "colour of pixels moved in from outside the image", kind="fill")
INTERPOLATION = Param(
    "interpolation",
    "bilinear",
    "resampling of rotations and shears",
    kind="choice",
    choices=("bilinear", "nearest"),
)
GEOMETRY = (FILL, INTERPOLATION)


def _fill(m: dict[str, Any]) -> torch.Tensor:
    return torch.tensor(m["fill"], dtype=torch.float32)


def _add(name: str, kind: str, summary: str, params: tuple[Param, ...], build, aliases=(), dims=(2,)) -> None:
    POLICIES.add(name, PolicyDef(name, kind, summary, params, build, dims), aliases=aliases)


_add("none", "image", "identity: images are not changed", (), lambda m, size, ch: None, dims=(2, 3))
_add(
    "simple",
    "image",
    "flips, shifts, rotation, padded random crop, brightness/contrast (+colour) jitter, noise",
    (*simple.PARAMS, *GEOMETRY),
    lambda m, size, ch: simple.Simple(m, _fill(m), m["interpolation"]),
)
for _policy, _what in (
    ("imagenet", "ImageNet"),
    ("cifar10", "CIFAR-10"),
    ("svhn", "SVHN"),
):
    _add(
        f"autoaugment-{_policy}",
        "image",
        f"AutoAugment's 25 {_what} sub-policies (Cubuk et al. 2019), one per sample",
        GEOMETRY,
        lambda m, size, ch, p=_policy: autoaug.AutoAugment(p, size, _fill(m), m["interpolation"]),
    )
_add(
    "randaugment",
    "image",
    "RandAugment: num_ops random ops per sample at one magnitude (of 0..30)",
    (
        Param("num_ops", 2, "ops applied in a row to each sample (N)", 1, 14, "int"),
        Param("magnitude", 9, "magnitude bin of every op, 0..30 (M)", 0, 30, "int"),
        *GEOMETRY,
    ),
    lambda m, size, ch: autoaug.RandAugment(m["num_ops"], m["magnitude"], size, _fill(m), m["interpolation"]),
)
_add(
    "trivialaugment",
    "image",
    "TrivialAugment Wide: one random op per sample at a random magnitude",
    GEOMETRY,
    lambda m, size, ch: autoaug.TrivialAugment(_fill(m), m["interpolation"]),
    aliases=("trivialaugment-wide",),
)


_add(
    "volume",
    "image",
    "volumes only: flips and 90-degree rotations on the three axes, a small affine map, brightness/contrast",
    volume.PARAMS,
    lambda m, size, ch: volume.VolumeAugment(m),
    aliases=("volume3d",),
    dims=(3,),
)


class MedMNISTC:
    """AugMedMNIST-C (Di Salvo et al. 2024): per image, one of the dataset's MedMNIST-C corruptions
    or the identity, uniformly, at parameters uniform between its severity-1 and severity-5 values.
    Runs on the CPU in numpy (`augment.corruptions`); one seed per batch is drawn from the policy's
    generator, so a seed gives the same images on CPU and GPU."""

    def __init__(self, dataset: str) -> None:
        corruptions.corruptions_for(dataset)  # a dataset without a list fails here, at build time
        self.dataset = dataset

    def __call__(self, x: torch.Tensor, draw: Draw) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=draw.g, device=draw.g.device))
        images = x.round().clamp(0, 255).to(torch.uint8).cpu().numpy()  # (B, C, H, W)
        out = corruptions.augment_batch(images, self.dataset, np.random.default_rng(seed))
        return torch.from_numpy(out).to(x.device).float()


AUTO = "auto"  # medmnist-c's corruption list: the training dataset's (`build_augment(dataset=...)`)
_add(
    "medmnist-c",
    "corruption",
    "AugMedMNIST-C: per sample one of the dataset's MedMNIST-C corruptions or none, at a random severity",
    (
        Param(
            "corruptions",
            AUTO,
            "whose MedMNIST-C list to draw from: auto (the training dataset) or a 2D dataset flag",
            kind="choice",
            choices=(AUTO, *corruptions.DATASETS),
        ),
    ),
    lambda m, size, ch: MedMNISTC(m["corruptions"]),
    aliases=("augmedmnist-c", "medmnistc"),
)
_add(
    "mixup",
    "mix",
    "MixUp: blend each image and its target with another of the batch (soft targets)",
    (Param("mixup_alpha", 0.2, "Beta(alpha, alpha) of the mixing weight", 0.01, 10),),
    lambda m, size, ch: (mix.mixup, m["mixup_alpha"]),
    dims=(2, 3),
)
_add(
    "cutmix",
    "mix",
    "CutMix: paste a box from another image of the batch; targets by area (soft targets)",
    (Param("cutmix_alpha", 1.0, "Beta(alpha, alpha) of the kept area", 0.01, 10),),
    lambda m, size, ch: (mix.cutmix, m["cutmix_alpha"]),
)


def parse_spec(spec: str) -> list[str]:
    """Canonical policy names of a spec, image policy first."""
    parts = [p.strip() for p in str(spec).split("+")]
    if not all(parts):
        raise MedMNISTLabError(f"augment spec '{spec}' has an empty name; join names with '+', e.g. simple+mixup")
    names = [POLICIES.canonical(p) for p in parts]
    if len(set(names)) != len(names):
        raise MedMNISTLabError(f"augment spec '{spec}' names a policy twice")
    images = [n for n in names if POLICIES.get(n).kind == "image"]
    if len(images) > 1:
        valid = ", ".join(n for n in POLICIES if POLICIES.get(n).kind != "image")
        raise MedMNISTLabError(
            f"augment spec '{spec}' combines image policies {', '.join(images)}; use one image "
            f"policy, optionally with {valid}"
        )
    corrupt = [n for n in names if POLICIES.get(n).kind == "corruption"]
    return images + corrupt + [n for n in names if n not in images and n not in corrupt]


def check_dims(names: list[str], spatial_dims: int) -> None:
    """Refuse policies that do not work on images (2) or volumes (3) of this many spatial dims."""
    if wrong := [n for n in names if spatial_dims not in POLICIES.get(n).dims]:
        what = "volumes" if spatial_dims == 3 else "2D images"
        valid = ", ".join(n for n in POLICIES if spatial_dims in POLICIES.get(n).dims)
        raise MedMNISTLabError(
            f"augment policy {', '.join(wrong)} does not work on {what}; for {what} choose from: {valid}"
        )


class BatchAugment:
    """Per-sample augmentation of batches on their own device.

    `images(x, generator)`: x uint8 (B, C, H, W) on any device; returns uint8 of the same shape
    on the same device. `generator` may live on the CPU or on x's device: parameters are drawn
    there and moved (a CPU generator gives the same augmentations on CPU and CUDA; one on the
    device avoids small host-to-device copies). `none` returns x itself.

    `mix(x, targets, generator)`: float images and float (B, K) one-hot or multi-hot targets ->
    mixed images and soft targets; unchanged when the spec has no mixup/cutmix.
    """

    def __init__(
        self,
        spec: str,
        image_size: int,
        channels: int,
        dataset: str | None = None,
        spatial_dims: int = 2,
        **magnitudes: Any,
    ) -> None:
        if channels not in (1, 3):
            raise MedMNISTLabError(f"images must have 1 or 3 channels, got {channels}")
        if image_size < 1:
            raise MedMNISTLabError(f"image size must be positive, got {image_size}")
        self.names = parse_spec(spec)
        self.spec = "+".join(self.names)
        self.image_size, self.channels, self.spatial_dims = image_size, channels, spatial_dims
        check_dims(self.names, spatial_dims)
        defs = [POLICIES.get(n) for n in self.names]
        params = {p.name: (d.name, p) for d in defs for p in d.params}  # shared fill counted once
        given = {k: v for k, v in magnitudes.items() if v is not None}  # None: keep the default
        self.magnitudes = resolve([(owner, p) for owner, p in params.values()], given, image_size, channels, self.spec)
        if self.magnitudes.get("corruptions") == AUTO:
            if dataset is None:
                raise MedMNISTLabError(
                    f"augment '{self.spec}' draws from a dataset's MedMNIST-C corruptions; set corruptions=FLAG "
                    f"(one of: {', '.join(corruptions.DATASETS)})"
                )
            self.magnitudes["corruptions"] = dataset
        self._image: ImageTransform | None = None
        self._corrupt: ImageTransform | None = None
        self._mixers: list[tuple[MixTransform, float]] = []
        for d in defs:
            built = d.build(self.magnitudes, image_size, channels)
            if d.kind == "image":
                self._image = built
            elif d.kind == "corruption":
                self._corrupt = built
            else:
                self._mixers.append(built)

    @property
    def mixes(self) -> bool:
        return bool(self._mixers)

    def images(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.ndim != 2 + self.spatial_dims:
            layout = "(B, C, H, W)" if self.spatial_dims == 2 else "(B, C, D, H, W)"
            raise TypeError(f"expected uint8 {layout}, got {x.dtype} {tuple(x.shape)}")
        if x.shape[1] != self.channels:
            raise MedMNISTLabError(f"augment was built for {self.channels}-channel images, got {x.shape[1]} channels")
        if (self._image is None and self._corrupt is None) or x.shape[0] == 0:
            return x
        with torch.no_grad():
            draw = Draw(generator, x.device)
            out = x.float()
            for transform in (self._image, self._corrupt):
                if transform is not None:
                    out = transform(out, draw)
            return out.round_().clamp_(0, 255).to(torch.uint8)

    def mix(
        self, x: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._mixers or x.shape[0] == 0:
            return x, targets
        if targets.ndim != 2 or targets.shape[0] != x.shape[0] or not targets.is_floating_point():
            raise TypeError(
                f"targets must be float (B, K) for B={x.shape[0]}, got {targets.dtype} {tuple(targets.shape)}"
            )
        with torch.no_grad():
            draw = Draw(generator, x.device)
            perm = draw.randperm(x.shape[0])
            outs = [fn(x, targets, perm, alpha, draw) for fn, alpha in self._mixers]
            if len(outs) == 1:
                return outs[0]
            # mixup and cutmix: each sample takes one of the two
            pick = draw.bernoulli(0.5, x.shape[0])
            xi = torch.where(pick.view(-1, 1, 1, 1), outs[1][0], outs[0][0])
            yi = torch.where(pick.view(-1, 1), outs[1][1], outs[0][1])
            return xi, yi

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable record of what ran, for run configs."""
        out: dict[str, Any] = {
            "spec": self.spec,
            "policies": list(self.names),
            "image_size": self.image_size,
            "channels": self.channels,
            "magnitudes": dict(self.magnitudes),
            "per_sample": True,
        }
        if self.channels == 1 and self._image is not None:
            out["grayscale"] = "saturation/hue/Color ops are the identity on 1-channel images"
        return out

    def __repr__(self) -> str:
        return f"BatchAugment('{self.spec}', image_size={self.image_size}, channels={self.channels})"


def build_augment(
    spec: str, image_size: int, channels: int, dataset: str | None = None, spatial_dims: int = 2, **magnitudes: Any
) -> BatchAugment:
    """The augmentation named by `spec` ("none", "simple", "autoaugment-imagenet+mixup", ...).

    Unknown names and out-of-range or unknown magnitudes raise `MedMNISTLabError` listing what is
    valid. See `BatchAugment` for the call interface and where random numbers come from.
    `dataset`: the training dataset, whose MedMNIST-C list medmnist-c draws from (unless its
    `corruptions` magnitude names another). `spatial_dims` 3: volumes (B, C, D, H, W), which take the
    policies that say so (`augment list`).
    """
    return BatchAugment(spec, image_size, channels, dataset, spatial_dims, **magnitudes)


def policy_help() -> str:
    """Policy names with one-line descriptions, for --help texts."""
    width = max(len(n) for n in POLICIES)
    return "\n".join(f"  {n.ljust(width)}  {POLICIES.get(n).summary}" for n in POLICIES)
