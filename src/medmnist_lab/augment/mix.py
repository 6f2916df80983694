"""MixUp (Zhang et al., 2018) and CutMix (Yun et al., 2019) with soft targets, per sample.

Each sample i is paired with sample perm[i] of the same batch and draws its own lambda from
Beta(alpha, alpha). Targets mix with the same weight as the pixels (for CutMix: the share of
the area actually kept after clipping the box), so one-hot rows still sum to 1 and multi-hot
entries stay in [0, 1]: BCE on multi-label and soft-target cross-entropy both take them.
With both in the spec, each sample uses one of the two, at random with even odds.
"""

from __future__ import annotations

import numpy as np
import torch

from medmnist_lab.augment.ops import Draw


def beta(alpha: float, n: int, draw: Draw) -> torch.Tensor:
    """(n,) draws of Beta(alpha, alpha) from the generator (via a NumPy generator it seeds:
    torch's Beta sampler takes no generator)."""
    lam = np.random.default_rng(draw.seed()).beta(alpha, alpha, size=n)
    return torch.from_numpy(lam).float().to(draw.device)


def mixup(
    x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor, alpha: float, draw: Draw
) -> tuple[torch.Tensor, torch.Tensor]:
    lam = beta(alpha, x.shape[0], draw)
    lx = lam.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)
    ly = lam.view(-1, 1).to(y.dtype)
    return lx * x + (1 - lx) * x[perm], ly * y + (1 - ly) * y[perm]


def cutmix(
    x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor, alpha: float, draw: Draw
) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, h, w = x.shape
    lam = beta(alpha, n, draw)
    # A box of area (1 - lam) * H * W centred at a random pixel, clipped to the image.
    ratio = torch.sqrt(1 - lam)
    ch, cw = (h * ratio).floor(), (w * ratio).floor()
    cy, cx = draw.randint(0, h, n).float(), draw.randint(0, w, n).float()
    y1, y2 = (cy - ch // 2).clamp(0, h), (cy + ch - ch // 2).clamp(0, h)
    x1, x2 = (cx - cw // 2).clamp(0, w), (cx + cw - cw // 2).clamp(0, w)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    box = (
        (rows >= y1.view(-1, 1, 1))
        & (rows < y2.view(-1, 1, 1))
        & (cols >= x1.view(-1, 1, 1))
        & (cols < x2.view(-1, 1, 1))
    ).unsqueeze(1)  # (n, 1, H, W)
    kept = 1 - box.flatten(1).float().mean(1)  # share of the own image that survives
    out = torch.where(box, x[perm], x)
    k = kept.view(-1, 1).to(y.dtype)
    return out, k * y + (1 - k) * y[perm]
