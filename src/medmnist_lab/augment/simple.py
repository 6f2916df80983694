"""The seed's "simple transformations", done right and applied online per sample.

Each sample independently: horizontal / vertical flip, a shift of up to `shift` pixels in each
axis (left/right/up/down), a rotation, a random crop of the image padded by `crop_padding`
pixels (the padding takes the fill colour), brightness/contrast jitter (plus saturation and hue
on RGB; skipped on grayscale, which has none), and Gaussian noise that is clamped to 0..255.
All geometric ops of a sample are composed into one matrix and resampled once (integer shifts,
crops and flips stay exact; only rotation interpolates).
"""

from __future__ import annotations

from typing import Any

import torch

from medmnist_lab.augment import ops
from medmnist_lab.augment.ops import Draw
from medmnist_lab.augment.params import Param, half_size, scaled

PARAMS: tuple[Param, ...] = (
    Param("p_hflip", 0.5, "probability of a horizontal flip", 0, 1),
    Param("p_vflip", 0.5, "probability of a vertical flip", 0, 1),
    Param("p_shift", 0.5, "probability of a shift", 0, 1),
    Param("shift", scaled(2), "largest shift in pixels, each axis (2 px at 28, scaled)", 0, half_size, "int"),
    Param("p_rotate", 0.5, "probability of a rotation", 0, 1),
    Param("rotate", 15.0, "largest rotation in degrees, either way", 0, 180),
    Param("p_crop", 0.5, "probability of a random crop of the padded image", 0, 1),
    Param("crop_padding", scaled(2), "padding in pixels before the crop (2 px at 28, scaled)", 0, half_size, "int"),
    Param("p_jitter", 0.8, "probability of brightness/contrast (and colour) jitter", 0, 1),
    Param("brightness", 0.2, "brightness factor drawn from [1-b, 1+b]", 0, 1),
    Param("contrast", 0.2, "contrast factor drawn from [1-c, 1+c]", 0, 1),
    Param("saturation", 0.2, "saturation factor from [1-s, 1+s]; RGB only", 0, 1),
    Param("hue", 0.03, "hue shift in turns from [-h, h]; RGB only", 0, 0.5),
    Param("p_noise", 0.5, "probability of Gaussian noise", 0, 1),
    Param("noise_std", 6.0, "noise standard deviation in grey levels (0..255)", 0, 128),
)


class Simple:
    def __init__(self, m: dict[str, Any], fill: torch.Tensor, mode: str) -> None:
        self.m, self.fill, self.mode = m, fill, mode

    def _geometry(self, n: int, h: int, w: int, draw: Draw) -> torch.Tensor:
        """(n, 3, 3) inverse maps: flip, then rotate, then shift, then crop."""
        m = self.m
        flip = ops.flip_matrix(draw.bernoulli(m["p_hflip"], n), draw.bernoulli(m["p_vflip"], n), h, w)
        angle = draw.uniform(-m["rotate"], m["rotate"], n) * draw.bernoulli(m["p_rotate"], n)
        rotate = ops.rotate_matrix(angle, h, w)
        s, pad = m["shift"], m["crop_padding"]
        on = draw.bernoulli(m["p_shift"], n)
        shift = ops.translate_matrix(draw.randint(-s, s + 1, n) * on, draw.randint(-s, s + 1, n) * on)
        # A crop of the padded image at a random offset == an integer translation by -pad..pad.
        on = draw.bernoulli(m["p_crop"], n)
        crop = ops.translate_matrix(draw.randint(-pad, pad + 1, n) * on, draw.randint(-pad, pad + 1, n) * on)
        # Inverse maps compose in the order the ops are applied (see ops.py).
        return flip @ rotate @ shift @ crop

    def _jitter(self, x: torch.Tensor, draw: Draw) -> torch.Tensor:
        m, n = self.m, x.shape[0]
        on = draw.bernoulli(m["p_jitter"], n).float()

        def factor(spread: float) -> torch.Tensor:
            return 1 + on * draw.uniform(-spread, spread, n)

        x = ops.brightness(x, factor(m["brightness"]))
        x = ops.contrast(x, factor(m["contrast"]))
        sat, turn = factor(m["saturation"]), on * draw.uniform(-m["hue"], m["hue"], n)
        if x.shape[1] == 3:  # grayscale has no saturation or hue: skipped, not an error
            x = ops.hue(ops.saturation(x, sat), turn)
        return x

    def __call__(self, x: torch.Tensor, draw: Draw) -> torch.Tensor:
        n, _, h, w = x.shape
        maps = self._geometry(n, h, w, draw)
        moved = (maps - torch.eye(3, device=x.device)).abs().amax(dim=(1, 2)) > 1e-6
        idx = moved.nonzero().flatten()
        if idx.numel():
            x = x.clone()
            x[idx] = ops.warp(x[idx], maps[idx], self.fill.to(x.device), self.mode)
        x = self._jitter(x, draw)
        std = draw.bernoulli(self.m["p_noise"], n) * self.m["noise_std"]
        return ops.gaussian_noise(x, std.float(), draw.randn(*x.shape)).round_().clamp_(0, 255)
