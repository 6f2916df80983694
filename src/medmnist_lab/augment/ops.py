"""Batched image ops with one parameter per sample.

Images are float32 (B, C, H, W) holding values in 0..255 (policies round back to integers after
each stage, so bit-level ops such as Posterize see what they would see on uint8). Parameters
are (B,) tensors on the images' device. Nothing here loops over samples in Python: geometric ops
become one `grid_sample` with per-sample matrices, colour ops broadcast per-sample factors.

Coordinates: continuous pixel coordinates with the origin at the top-left *corner* of the image
(pixel (i, j) has its centre at (j + 0.5, i + 0.5)), x to the right, y down. A geometric op is
given as its inverse map: the 3x3 matrix taking an output position to the input position it
samples, which is what `affine_grid` wants.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# ITU-R 601 luma, as PIL's "L" conversion and torchvision's rgb_to_grayscale.
LUMA = (0.2989, 0.587, 0.114)


class Draw:
    """Random draws from one generator, landing on the images' device.

    Numbers are drawn on the generator's device (CPU or the images' device) and moved, so a CPU
    generator gives the same parameters whether the images are on CPU or CUDA.
    """

    def __init__(self, generator: torch.Generator, device: torch.device) -> None:
        self.g = generator
        self.device = device

    def _to(self, t: torch.Tensor) -> torch.Tensor:
        if t.device == self.device:
            return t
        # non_blocking only towards the GPU: a non-blocking copy to the CPU may be read unfinished
        return t.to(self.device, non_blocking=self.device.type == "cuda")

    def rand(self, *shape: int) -> torch.Tensor:
        return self._to(torch.rand(shape, generator=self.g, device=self.g.device))

    def uniform(self, lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * self.rand(*shape)

    def randn(self, *shape: int) -> torch.Tensor:
        return self._to(torch.randn(shape, generator=self.g, device=self.g.device))

    def randint(self, low: int, high: int, *shape: int) -> torch.Tensor:
        """Integers in [low, high)."""
        return self._to(torch.randint(low, high, shape, generator=self.g, device=self.g.device))

    def bernoulli(self, p: float, *shape: int) -> torch.Tensor:
        return self.rand(*shape) < p

    def randperm(self, n: int) -> torch.Tensor:
        return self._to(torch.randperm(n, generator=self.g, device=self.g.device))

    def seed(self) -> int:
        """A 63-bit seed for a NumPy generator, for distributions torch cannot draw with a
        generator (Beta)."""
        return int(torch.randint(0, 2**62, (1,), generator=self.g, device=self.g.device).item())


# --- geometric ops: (n, 3, 3) inverse maps in pixel coordinates ---------------------------------


def eye(n: int, device: torch.device) -> torch.Tensor:
    return torch.eye(3, device=device).repeat(n, 1, 1)


def translate_matrix(dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Content moves by (+dx, +dy) pixels: right and down for positive values."""
    m = eye(dx.shape[0], dx.device)
    m[:, 0, 2] = -dx
    m[:, 1, 2] = -dy
    return m


def rotate_matrix(degrees: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Rotation about the image centre, counter-clockwise on screen for positive angles (as PIL
    and torchvision)."""
    a = torch.deg2rad(degrees)
    cos, sin = torch.cos(a), torch.sin(a)
    cx, cy = width / 2, height / 2
    m = eye(degrees.shape[0], degrees.device)
    # input = R (output - c) + c, with R the clockwise rotation in y-down coordinates
    m[:, 0, 0], m[:, 0, 1] = cos, -sin
    m[:, 1, 0], m[:, 1, 1] = sin, cos
    m[:, 0, 2] = cx - cos * cx + sin * cy
    m[:, 1, 2] = cy - sin * cx - cos * cy
    return m


def shear_matrix(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """AutoAugment's shear about the top-left corner: input = (x + sx*y, y + sy*x), as PIL's
    affine transform (1, level, 0, 0, 1, 0) in the original code."""
    m = eye(sx.shape[0], sx.device)
    m[:, 0, 1] = sx
    m[:, 1, 0] = sy
    return m


def flip_matrix(hflip: torch.Tensor, vflip: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Mirror where the (bool) flags are set; identity elsewhere."""
    m = eye(hflip.shape[0], hflip.device)
    sx = 1 - 2 * hflip.float()
    sy = 1 - 2 * vflip.float()
    m[:, 0, 0], m[:, 0, 2] = sx, hflip.float() * width
    m[:, 1, 1], m[:, 1, 2] = sy, vflip.float() * height
    return m


def warp(x: torch.Tensor, inverse_maps: torch.Tensor, fill: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Resample each image with its own inverse map; pixels from outside the image take `fill`.

    x: (n, C, H, W) float; inverse_maps: (n, 3, 3); fill: (C,) float.
    """
    n, c, h, w = x.shape
    # pixel -> normalised coordinates of affine_grid (align_corners=False: -1/+1 = image borders)
    to_norm = torch.tensor([[2 / w, 0, -1], [0, 2 / h, -1], [0, 0, 1]], device=x.device)
    from_norm = torch.tensor([[w / 2, 0, w / 2], [0, h / 2, h / 2], [0, 0, 1]], device=x.device)
    theta = (to_norm @ inverse_maps.float() @ from_norm)[:, :2, :]
    grid = F.affine_grid(theta, [n, c + 1, h, w], align_corners=False)
    # An extra all-ones channel tells how much of each output pixel came from inside the image,
    # so the fill is blended exactly, for any channel count (one grid_sample call, not two).
    ones = torch.ones(n, 1, h, w, device=x.device, dtype=x.dtype)
    out = F.grid_sample(torch.cat([x, ones], 1), grid, mode=mode, padding_mode="zeros", align_corners=False)
    img, inside = out[:, :c], out[:, c:]
    if mode == "nearest":
        inside = (inside > 0.5).to(x.dtype)
    return img * inside + fill.view(1, c, 1, 1) * (1 - inside)


# --- colour ops: factors broadcast per sample ---------------------------------------------------


def _per_sample(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(n, 1, H, W) luma; a 1-channel image is its own luma."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


def blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """factor * a + (1 - factor) * b, clamped: factor 1 keeps `a`, 0 gives `b`, >1 extrapolates."""
    f = _per_sample(factor)
    return (f * a + (1 - f) * b).clamp(0, 255)


def brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(x, torch.zeros_like(x), factor)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return blend(x, mean, factor)


def saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance.Color. Identity on 1-channel images: they have no saturation."""
    if x.shape[1] == 1:
        return x
    return blend(x, grayscale(x), factor)


def hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Shift the HSV hue by `shift` turns (-0.5..0.5), per sample. Identity on 1-channel images."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)  # (n, H, W) each
    v = x.amax(1)  # amax/amin, not max/min: no argmax needed, ~30x faster on CPU
    delta = v - x.amin(1)
    sat = torch.where(v > 0, delta / v.clamp_min(1e-6), torch.zeros_like(v))
    d = delta.clamp_min(1e-6)
    # hue sector by the largest channel (red wins ties, then green)
    h = torch.where(r == v, ((g - b) / d) % 6, torch.where(g == v, (b - r) / d + 2, (r - g) / d + 4)) / 6
    h = torch.where(delta > 0, h, torch.zeros_like(h))
    h = (h + shift.view(-1, 1, 1)) % 1.0
    # back to RGB: channel n (R=5, G=3, B=1) is v - v*s*clamp(min(k, 4 - k), 0, 1), k = (n + 6h) mod 6
    k = (torch.tensor([5.0, 3.0, 1.0], device=x.device).view(1, 3, 1, 1) + 6 * h.unsqueeze(1)) % 6
    ramp = torch.minimum(k, 4 - k).clamp(0, 1)
    return (v.unsqueeze(1) * (1 - sat.unsqueeze(1) * ramp)).clamp(0, 255)


def sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance.Sharpness: blend with a smoothed copy whose border pixels are kept."""
    _, c, h, w = x.shape
    if h <= 2 or w <= 2:
        return x
    kernel = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(c, 1, 3, 3)
    smooth = x.clone()
    smooth[..., 1:-1, 1:-1] = F.conv2d(x, kernel, groups=c).round()
    return blend(x, smooth, factor)


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top `bits` bits (1..8) of each value."""
    step = _per_sample(torch.pow(2.0, 8 - bits.float()))
    return torch.floor(x / step) * step


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert values at or above the threshold."""
    return torch.where(x >= _per_sample(threshold), 255 - x, x)


def invert(x: torch.Tensor) -> torch.Tensor:
    return 255 - x


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each image to 0..255; a flat channel is left alone."""
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    flat = hi <= lo
    scale = torch.where(flat, torch.ones_like(hi), 255 / (hi - lo).clamp_min(1e-6))
    lo = torch.where(flat, torch.zeros_like(lo), lo)
    return ((x - lo) * scale).clamp(0, 255)


def equalize(x: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per channel per image, PIL's (and torchvision's) algorithm, for all
    images at once: one (n*C, 256) histogram, one lookup table per row."""
    n, c, h, w = x.shape
    v = x.round().clamp(0, 255).long().view(n * c, h * w)
    hist = torch.zeros(n * c, 256, device=x.device, dtype=torch.long)
    hist.scatter_add_(1, v, torch.ones_like(v))
    # count of the highest value present (PIL leaves it out of the step)
    last = 255 - (hist.flip(1) > 0).long().argmax(1, keepdim=True)
    step = (h * w - hist.gather(1, last)) // 255  # (n*C, 1)
    safe = step.clamp_min(1)
    lut = (hist.cumsum(1) + safe // 2) // safe
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut[:, :-1]], 1).clamp(0, 255)
    out = torch.where(step > 0, lut.gather(1, v), v)
    return out.view(n, c, h, w).to(x.dtype)


def gaussian_noise(x: torch.Tensor, std: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Add `std * noise` and clamp: 254 + 4 stays 255 (the seed's uint8 arithmetic wrapped to 2)."""
    return (x + _per_sample(std) * noise).clamp(0, 255)
