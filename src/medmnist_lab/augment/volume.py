"""Augmentation of volumes (B, C, D, H, W), batched on the device like the 2D policies.

Each volume independently: a flip on each of the three axes, a 90-degree rotation in one of the
three planes (axial, coronal, sagittal), a small affine map (rotation about each axis, scaling,
shift; resampled once, trilinear), and brightness/contrast jitter. Flips and 90-degree rotations
move voxels exactly; only the small affine interpolates. Values stay float 0..255 like 2D.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from medmnist_lab.augment.ops import Draw
from medmnist_lab.augment.params import Param

PARAMS: tuple[Param, ...] = (
    Param("p_flip", 0.5, "probability of a flip, each axis on its own", 0, 1),
    Param("p_rot90", 0.5, "probability of a 90/180/270-degree rotation in a random plane", 0, 1),
    Param("p_affine", 0.5, "probability of a small affine map", 0, 1),
    Param("rotate", 10.0, "largest rotation about each axis in degrees, either way", 0, 45),
    Param("scale", 0.1, "scale factor drawn from [1-s, 1+s]", 0, 0.5),
    Param("shift", 0.05, "largest shift as a fraction of the side, each axis", 0, 0.25),
    Param("p_jitter", 0.8, "probability of brightness/contrast jitter", 0, 1),
    Param("brightness", 0.1, "brightness factor drawn from [1-b, 1+b]", 0, 1),
    Param("contrast", 0.1, "contrast factor drawn from [1-c, 1+c]", 0, 1),
)

# (dims rotated by torch.rot90) for the planes of a volume (B, C, D, H, W): axial (H, W),
# coronal (D, W), sagittal (D, H).
PLANES = ((3, 4), (2, 4), (2, 3))


def _rotation(angles: torch.Tensor) -> torch.Tensor:
    """(n, 3, 3) rotations about the three axes by angles (n, 3) in radians, composed z @ y @ x."""
    c, s = angles.cos(), angles.sin()
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])

    def mat(rows: list[list[torch.Tensor]]) -> torch.Tensor:
        return torch.stack([torch.stack(r, -1) for r in rows], -2)

    rx = mat([[one, zero, zero], [zero, c[:, 0], -s[:, 0]], [zero, s[:, 0], c[:, 0]]])
    ry = mat([[c[:, 1], zero, s[:, 1]], [zero, one, zero], [-s[:, 1], zero, c[:, 1]]])
    rz = mat([[c[:, 2], -s[:, 2], zero], [s[:, 2], c[:, 2], zero], [zero, zero, one]])
    return rz @ ry @ rx


class VolumeAugment:
    def __init__(self, m: dict[str, Any]) -> None:
        self.m = m

    def _flips_and_rot90(self, x: torch.Tensor, draw: Draw) -> torch.Tensor:
        n = x.shape[0]
        flips = draw.bernoulli(self.m["p_flip"], n, 3).cpu()
        rot_on = draw.bernoulli(self.m["p_rot90"], n).cpu()
        planes, turns = draw.randint(0, 3, n).cpu(), draw.randint(1, 4, n).cpu()
        out = []
        # Exact voxel moves are views and copies: a loop over the batch costs nothing next to a step.
        for i in range(n):
            v = x[i : i + 1]
            dims = [2 + a for a in range(3) if flips[i, a]]
            if dims:
                v = v.flip(dims)
            if rot_on[i] and v.shape[2] == v.shape[3] == v.shape[4]:  # cubes keep their shape
                v = torch.rot90(v, int(turns[i]), PLANES[int(planes[i])])
            out.append(v)
        return torch.cat(out)

    def _affine(self, x: torch.Tensor, draw: Draw) -> torch.Tensor:
        n, m = x.shape[0], self.m
        on = draw.bernoulli(m["p_affine"], n)
        if not bool(on.any()):
            return x
        idx = on.nonzero().flatten()
        k = idx.numel()
        angles = draw.uniform(-m["rotate"], m["rotate"], k, 3) * (math.pi / 180)
        scale = draw.uniform(1 - m["scale"], 1 + m["scale"], k)
        shift = draw.uniform(-2 * m["shift"], 2 * m["shift"], k, 3)  # in [-1, 1] grid units
        # affine_grid maps output to input positions: the inverse of the drawn map.
        theta = torch.cat([_rotation(angles) / scale.view(-1, 1, 1), shift.unsqueeze(-1)], dim=2)
        sub = x[idx]
        grid = F.affine_grid(theta.to(x.dtype), list(sub.shape), align_corners=False)
        x = x.clone()
        x[idx] = F.grid_sample(sub, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return x

    def _jitter(self, x: torch.Tensor, draw: Draw) -> torch.Tensor:
        n, m = x.shape[0], self.m
        on = draw.bernoulli(m["p_jitter"], n).float()
        b = 1 + on * draw.uniform(-m["brightness"], m["brightness"], n)
        c = 1 + on * draw.uniform(-m["contrast"], m["contrast"], n)
        shape = (-1,) + (1,) * (x.dim() - 1)
        x = x * b.view(shape)
        mean = x.mean(dim=tuple(range(1, x.dim())), keepdim=True)  # contrast about the volume's mean
        return ((x - mean) * c.view(shape) + mean).clamp_(0, 255)

    def __call__(self, x: torch.Tensor, draw: Draw) -> torch.Tensor:
        x = self._flips_and_rot90(x, draw)
        x = self._affine(x, draw)
        return self._jitter(x, draw).round_()
