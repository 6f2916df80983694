"""AutoAugment (Cubuk et al., 2019), RandAugment (Cubuk et al., 2020) and TrivialAugment Wide
(Müller & Hutter, 2021), batched with per-sample randomness.

Each sample draws its own sub-policy (or ops), probabilities, signs and magnitude bins. A
"stage" is one op per sample; it is applied by grouping samples by op: all geometric samples
of the stage share one `grid_sample` call with their own matrices, every other op runs once on
its group. Sub-policies and magnitude spaces are those of torchvision's `AutoAugmentPolicy`,
`RandAugment` and `TrivialAugmentWide` (the 25 original sub-policies per dataset, with their
probabilities and magnitude bins), except that AutoAugment's enhance ops use the paper's
factor range (see `_autoaugment_space`); torchvision itself draws one op per call, i.e. per batch.

Colour on grayscale: `Color` (saturation) is the identity on 1-channel images, as in PIL and
torchvision; every other op works on any channel count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from medmnist_lab.augment import ops
from medmnist_lab.augment.ops import Draw

OP_NAMES: tuple[str, ...] = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
    "Invert",
)
OP = {name: i for i, name in enumerate(OP_NAMES)}
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")

# One op per sample, with its magnitude; (n,C,H,W) float 0..255 -> same.
PixelOp = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PIXEL_OPS: dict[str, PixelOp] = {
    "Brightness": lambda x, m: ops.brightness(x, 1 + m),
    "Color": lambda x, m: ops.saturation(x, 1 + m),
    "Contrast": lambda x, m: ops.contrast(x, 1 + m),
    "Sharpness": lambda x, m: ops.sharpness(x, 1 + m),
    "Posterize": lambda x, m: ops.posterize(x, m),
    "Solarize": lambda x, m: ops.solarize(x, m),
    "AutoContrast": lambda x, m: ops.autocontrast(x),
    "Equalize": lambda x, m: ops.equalize(x),
    "Invert": lambda x, m: ops.invert(x),
}


def _geometric_maps(op: torch.Tensor, mag: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 3, 3) inverse maps for samples whose op is geometric."""
    zero = torch.zeros_like(mag)
    is_ = {name: op == OP[name] for name in GEOMETRIC}
    shear = ops.shear_matrix(torch.where(is_["ShearX"], mag, zero), torch.where(is_["ShearY"], mag, zero))
    shift = ops.translate_matrix(torch.where(is_["TranslateX"], mag, zero), torch.where(is_["TranslateY"], mag, zero))
    rotate = ops.rotate_matrix(torch.where(is_["Rotate"], mag, zero), height, width)
    return shear @ shift @ rotate  # exactly one of them differs from the identity per sample


def apply_stage(x: torch.Tensor, op: torch.Tensor, mag: torch.Tensor, fill: torch.Tensor, mode: str) -> torch.Tensor:
    """Apply op[i] with magnitude mag[i] to x[i], for all i; returns a new, rounded tensor."""
    counts = torch.bincount(op, minlength=len(OP_NAMES)).tolist()  # the one host sync per stage
    groups = torch.split(torch.argsort(op, stable=True), counts)
    out = x.clone()
    geo = [groups[OP[name]] for name in GEOMETRIC if counts[OP[name]]]
    if geo:
        idx = torch.cat(geo)
        maps = _geometric_maps(op[idx], mag[idx], x.shape[2], x.shape[3])
        out[idx] = ops.warp(x[idx], maps, fill, mode)
    for name, fn in PIXEL_OPS.items():
        if counts[OP[name]]:
            idx = groups[OP[name]]
            out[idx] = fn(x[idx], mag[idx])
    # Back to integer values, as each op of the original works on uint8 images.
    return out.round_().clamp_(0, 255)


# --- magnitude spaces -----------------------------------------------------------------------


@dataclass(frozen=True)
class Space:
    """Magnitude bins per op, padded into one table so per-sample magnitudes are one gather."""

    table: torch.Tensor  # (n_ops, n_bins) float
    signed: torch.Tensor  # (n_ops,) bool: the sign is drawn at random

    def magnitudes(self, op: torch.Tensor, bins: torch.Tensor, draw: Draw) -> torch.Tensor:
        table, signed = self.table.to(op.device), self.signed.to(op.device)
        mag = table[op, bins]
        flip = signed[op] & (draw.randint(0, 2, op.shape[0]) == 0)
        return torch.where(flip, -mag, mag)


def _space(values: dict[str, tuple[torch.Tensor, bool]], n_bins: int) -> Space:
    table = torch.zeros(len(OP_NAMES), n_bins)
    signed = torch.zeros(len(OP_NAMES), dtype=torch.bool)
    for name, (v, s) in values.items():
        table[OP[name]] = v.float()
        signed[OP[name]] = s
    return Space(table, signed)


def _standard_space(n_bins: int, size: int) -> Space:
    """AutoAugment's and RandAugment's ranges (torchvision's reading of the original code)."""
    lin = torch.linspace
    translate = lin(0.0, 150.0 / 331.0 * size, n_bins).trunc()  # integer pixels, as torchvision
    return _space(
        {
            "ShearX": (lin(0.0, 0.3, n_bins), True),
            "ShearY": (lin(0.0, 0.3, n_bins), True),
            "TranslateX": (translate, True),
            "TranslateY": (translate, True),
            "Rotate": (lin(0.0, 30.0, n_bins), True),
            "Brightness": (lin(0.0, 0.9, n_bins), True),
            "Color": (lin(0.0, 0.9, n_bins), True),
            "Contrast": (lin(0.0, 0.9, n_bins), True),
            "Sharpness": (lin(0.0, 0.9, n_bins), True),
            "Posterize": (8 - (torch.arange(n_bins) / ((n_bins - 1) / 4)).round(), False),
            "Solarize": (lin(255.0, 0.0, n_bins), False),
        },
        n_bins,
    )


def _autoaugment_space(size: int) -> Space:
    """The paper's 10 bins. Brightness/Color/Contrast/Sharpness take the paper's factor range
    0.1..1.9, unsigned (as the original code and timm): torchvision's 1 +/- 0.9*m/9 with a random
    sign makes ("Color", 0.4, 0) the identity instead of a near-grey image and turns the
    always-applied ("Contrast", 1.0, 8) into a factor of 0.2 (a flat grey image) half the time."""
    space = _standard_space(10, size)
    enhance = torch.linspace(0.1, 1.9, 10) - 1  # ops add 1 back: factor = 1 + magnitude
    for name in ("Brightness", "Color", "Contrast", "Sharpness"):
        space.table[OP[name]] = enhance
        space.signed[OP[name]] = False
    return space


def _wide_space(n_bins: int) -> Space:
    """TrivialAugment Wide's ranges (absolute pixels for translation, as in the paper)."""
    lin = torch.linspace
    return _space(
        {
            "ShearX": (lin(0.0, 0.99, n_bins), True),
            "ShearY": (lin(0.0, 0.99, n_bins), True),
            "TranslateX": (lin(0.0, 32.0, n_bins).trunc(), True),
            "TranslateY": (lin(0.0, 32.0, n_bins).trunc(), True),
            "Rotate": (lin(0.0, 135.0, n_bins), True),
            "Brightness": (lin(0.0, 0.99, n_bins), True),
            "Color": (lin(0.0, 0.99, n_bins), True),
            "Contrast": (lin(0.0, 0.99, n_bins), True),
            "Sharpness": (lin(0.0, 0.99, n_bins), True),
            "Posterize": (8 - (torch.arange(n_bins) / ((n_bins - 1) / 6)).round(), False),
            "Solarize": (lin(255.0, 0.0, n_bins), False),
        },
        n_bins,
    )


# The ops RandAugment and TrivialAugment choose from (all but Invert).
RAND_OPS = tuple(name for name in OP_NAMES if name != "Invert")

# --- the three AutoAugment policies: 25 sub-policies of two (op, probability, magnitude bin) ----

SubPolicy = tuple[tuple[str, float, int | None], tuple[str, float, int | None]]

AUTOAUGMENT_POLICIES: dict[str, tuple[SubPolicy, ...]] = {
    "imagenet": (
        (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
        (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
        (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
        (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
        (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
        (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
        (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
        (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
        (("Color", 0.4, 0), ("Equalize", 0.6, None)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    ),
    "cifar10": (
        (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
        (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
        (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
        (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
        (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
        (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
        (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
        (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
        (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
        (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
        (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
        (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
        (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
        (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
        (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
        (("Color", 0.9, 9), ("Equalize", 0.6, None)),
        (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
        (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
        (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
        (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
        (("Equalize", 0.8, None), ("Invert", 0.1, None)),
        (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
    ),
    "svhn": (
        (("ShearX", 0.9, 4), ("Invert", 0.2, None)),
        (("ShearY", 0.9, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.6, None), ("Solarize", 0.6, 6)),
        (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
        (("ShearX", 0.9, 4), ("AutoContrast", 0.8, None)),
        (("ShearY", 0.9, 8), ("Invert", 0.4, None)),
        (("ShearY", 0.9, 5), ("Solarize", 0.2, 6)),
        (("Invert", 0.9, None), ("AutoContrast", 0.8, None)),
        (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
        (("ShearX", 0.9, 4), ("Solarize", 0.3, 3)),
        (("ShearY", 0.8, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.9, None), ("TranslateY", 0.6, 6)),
        (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Contrast", 0.3, 3), ("Rotate", 0.8, 4)),
        (("Invert", 0.8, None), ("TranslateY", 0.0, 2)),
        (("ShearY", 0.7, 6), ("Solarize", 0.4, 8)),
        (("Invert", 0.6, None), ("Rotate", 0.8, 4)),
        (("ShearY", 0.3, 7), ("TranslateX", 0.9, 3)),
        (("ShearX", 0.1, 6), ("Invert", 0.6, None)),
        (("Solarize", 0.7, 2), ("TranslateY", 0.6, 7)),
        (("ShearY", 0.8, 4), ("Invert", 0.8, None)),
        (("ShearX", 0.7, 9), ("TranslateY", 0.8, 3)),
        (("ShearY", 0.8, 5), ("AutoContrast", 0.7, None)),
        (("ShearX", 0.7, 2), ("Invert", 0.1, None)),
    ),
}


class AutoAugment:
    """Each sample: one of the 25 sub-policies at random; each of its two ops applied with its
    own probability, at its magnitude bin (of 10), with a random sign where the op is signed."""

    def __init__(self, policy: str, size: int, fill: torch.Tensor, mode: str) -> None:
        subs = AUTOAUGMENT_POLICIES[policy]
        self.ops = torch.tensor([[OP[s[0]] for s in sub] for sub in subs])  # (25, 2)
        self.probs = torch.tensor([[s[1] for s in sub] for sub in subs])
        self.bins = torch.tensor([[s[2] or 0 for s in sub] for sub in subs])
        self.space = _autoaugment_space(size)
        self.fill, self.mode = fill, mode

    def __call__(self, x: torch.Tensor, draw: Draw) -> torch.Tensor:
        n, dev = x.shape[0], x.device
        sub = draw.randint(0, len(self.ops), n)
        ops_, probs, bins = self.ops.to(dev)[sub], self.probs.to(dev)[sub], self.bins.to(dev)[sub]
        apply = draw.rand(n, 2) < probs
        fill = self.fill.to(dev)
        for stage in range(2):
            op = torch.where(apply[:, stage], ops_[:, stage], OP["Identity"])
            mag = self.space.magnitudes(op, bins[:, stage], draw)
            x = apply_stage(x, op, mag, fill, self.mode)
        return x


class RandAugment:
    """Each sample: `num_ops` ops drawn uniformly (with replacement) from 14, all at bin
    `magnitude` of 31, with random signs."""

    def __init__(self, num_ops: int, magnitude: int, size: int, fill: torch.Tensor, mode: str) -> None:
        self.num_ops, self.magnitude = num_ops, magnitude
        self.choices = torch.tensor([OP[name] for name in RAND_OPS])
        self.space = _standard_space(31, size)
        self.fill, self.mode = fill, mode

    def __call__(self, x: torch.Tensor, draw: Draw) -> torch.Tensor:
        n, dev = x.shape[0], x.device
        fill = self.fill.to(dev)
        bins = torch.full((n,), self.magnitude, device=dev, dtype=torch.long)
        for _ in range(self.num_ops):
            op = self.choices.to(dev)[draw.randint(0, len(self.choices), n)]
            x = apply_stage(x, op, self.space.magnitudes(op, bins, draw), fill, self.mode)
        return x


class TrivialAugment:
    """Each sample: one op drawn uniformly from 14, at a bin drawn uniformly from 31 (wide
    ranges), with a random sign."""

    def __init__(self, fill: torch.Tensor, mode: str) -> None:
        self.choices = torch.tensor([OP[name] for name in RAND_OPS])
        self.space = _wide_space(31)
        self.fill, self.mode = fill, mode

    def __call__(self, x: torch.Tensor, draw: Draw) -> torch.Tensor:
        n, dev = x.shape[0], x.device
        op = self.choices.to(dev)[draw.randint(0, len(self.choices), n)]
        bins = draw.randint(0, 31, n)
        return apply_stage(x, op, self.space.magnitudes(op, bins, draw), self.fill.to(dev), self.mode)
