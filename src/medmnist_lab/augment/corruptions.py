"""MedMNIST-C corruptions (Di Salvo et al. 2024, arXiv 2406.17536), written anew on numpy,
OpenCV and Pillow: each 2D dataset's list of corruptions at five severities, as the paper's package
defines them (parameters copied as facts; docs/robustness.md has the table and why not `medmnistc`).

    images = corrupt(x, "breastmnist", "speckle_noise", severity=3, seed=0)  # uint8 (N, C, H, W)
    corruptions_for("retinamnist")  # the names, in the paper's order

The paper's parameters are set on 224 px images. Lengths in pixels (blur radii and sigmas, motion
length, bubble radii, stain and text sizes) are scaled by width/224, so a corruption covers the
same part of the anatomy at 28, 64, 128 and 224 px; factors, qualities and noise levels are not.
Random draws (noise, angles, positions) come from one numpy generator seeded by the caller, so the
same seed gives the same images.
"""

from __future__ import annotations

import io
import math
import string
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from medmnist_lab.data.registry import get_dataset
from medmnist_lab.errors import MedMNISTLabError, unknown_name
from medmnist_lab.registry import Registry

REFERENCE_SIZE = 224  # the paper's images
SEVERITIES = (1, 2, 3, 4, 5)
Params = tuple[float, ...]
# (H, W, C) uint8 image, one severity's parameters, a generator, pixel scale (width / 224) -> same
CorruptFn = Callable[[np.ndarray, Params, np.random.Generator, float], np.ndarray]


@dataclass(frozen=True)
class CorruptionKind:
    name: str
    family: str  # the paper's groups: digital, noise, blur, color, task-specific
    fields: tuple[str, ...]  # what each parameter is (docs, records)
    library: str  # the call that does the work (docs/robustness.md)
    fn: CorruptFn
    integers: tuple[bool, ...] = ()  # parameters drawn as integers by the augmentation


KINDS: Registry[CorruptionKind] = Registry("corruption")


def _unit(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / 255.0


def _byte(u: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(u * 255.0), 0, 255).astype(np.uint8)


def _pil(x: np.ndarray) -> Image.Image:
    return Image.fromarray(x[..., 0] if x.shape[-1] == 1 else x)


def _array(img: Image.Image, channels: int) -> np.ndarray:
    a = np.asarray(img, dtype=np.uint8)
    return a.reshape(*a.shape[:2], channels)


def _cv(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """OpenCV drops a single channel axis: put it back."""
    return out.reshape(x.shape)


def _add(name: str, family: str, fields: tuple[str, ...], library: str, integers: tuple[bool, ...] = ()):
    def deco(fn: CorruptFn) -> CorruptFn:
        KINDS.add(name, CorruptionKind(name, family, fields, library, fn, integers or (False,) * len(fields)))
        return fn

    return deco


# -- digital ---------------------------------------------------------------------------------------
@_add("pixelate", "digital", ("resize factor",), "PIL Image.resize(BOX) down by the factor and back")
def pixelate(x: np.ndarray, p: Params, rng: np.random.Generator, s: float) -> np.ndarray:
    h, w = x.shape[:2]
    small = _pil(x).resize((max(1, int(w * p[0])), max(1, int(h * p[0]))), Image.Resampling.BOX)
    return _array(small.resize((w, h), Image.Resampling.BOX), x.shape[-1])


@_add("jpeg_compression", "digital", ("JPEG quality",), "PIL Image.save(format='JPEG', quality=q)", (True,))
def jpeg_compression(x: np.ndarray, p: Params, rng: np.random.Generator, s: float) -> np.ndarray:
    buf = io.BytesIO()
    _pil(x).save(buf, format="JPEG", quality=int(p[0]))
    return _array(Image.open(buf), x.shape[-1])


# -- noise -----------------------------------------------------------------------------------------
@_add("gaussian_noise", "noise", ("std (of 0..1 pixels)",), "numpy Generator.normal, added")
def gaussian_noise(x: np.ndarray, p: Params, rng: np.random.Generator, s: float) -> np.ndarray:
    return _byte(_unit(x) + rng.normal(0.0, p[0], x.shape))


@_add("speckle_noise", "noise", ("std of the multiplicative noise",), "numpy Generator.normal, x + x * n")
def speckle_noise(x: np.ndarray, p: Params, rng: np.random.Generator, s: float) -> np.ndarray:
    u = _unit(x)
    return _byte(u + u * rng.normal(0.0, p[0], x.shape))


@_add("impulse_noise", "noise", ("fraction of values set to 0 or 1",), "numpy Generator.random masks (salt & pepper)")
def impulse_noise(x: np.ndarray, p: Params, rng: np.random.Generator, s: float) -> np.ndarray:
    u = _unit(x)
    hit = rng.random(x.shape) < p[0]
    salt = rng.random(x.shape) < 0.5  # skimage's random_noise('s&p') default salt_vs_pepper
    u[hit & salt], u[hit & ~salt] = 1.0, 0.0
    return _byte(u)


@_add("shot_noise", "noise", ("photons per unit intensity",), "numpy Generator.poisson(x * k) / k")
def shot_noise(x: np.ndarray, p: Params, rng: np.random.Generator, s: float) -> np.ndarray:
    return _byte(rng.poisson(_unit(x) * p[0]) / p[0])


# -- blur ------------------------------------------------------------------------------------------
@_add(
    "defocus_blur",
    "blur",
    ("disk radius px@224", "alias sigma px@224"),
    "disk kernel smoothed by cv2.GaussianBlur, applied with cv2.filter2D",
)
def defocus_blur(x: np.ndarray, p: Params, rng: np.random.Generator, s: float) -> np.ndarray:
    radius, alias = p[0] * s, p[1] * s
    half = math.ceil(radius) + 3  # room for the anti-aliasing blur: no mass reflected back in
    grid = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(grid, grid)
    kernel = (xx**2 + yy**2 <= radius**2).astype(np.float32)
    kernel[half, half] = 1.0  # a radius under one pixel keeps the centre
    if alias > 0:
        k = 3 if p[0] <= 8 else 5  # the paper's anti-aliasing kernel sizes
        kernel = cv2.GaussianBlur(kernel, (k, k), sigmaX=alias)
    kernel /= kernel.sum()
    return _cv(x, _byte(cv2.filter2D(_unit(x), -1, kernel)))


@_add(
    "motion_blur",
    "blur",
    ("radius px@224", "sigma px@224"),
    "one-sided Gaussian line kernel at a random angle in [-45, 45] deg (ImageMagick's -motion-blur), cv2.filter2D",
)
def motion_blur(x: np.ndarray, p: Params, rng: np.random.Generator, s: float) -> np.ndarray:
    radius, sigma = max(p[0] * s, 0.5), max(p[1] * s, 0.5)
    angle = math.radians(rng.uniform(-45.0, 45.0))
    taps = np.arange(2 * math.ceil(radius) + 1)  # ImageMagick's kernel width for a radius
    weights = np.exp(-(taps**2) / (2 * sigma**2))
    weights /= weights.sum()
    dx, dy = np.rint(taps * math.cos(angle)).astype(int), np.rint(taps * math.sin(angle)).astype(int)
    pad = int(taps[-1])
    kernel = np.zeros((2 * pad + 1, 2 * pad + 1), np.float32)
    np.add.at(kernel, (pad + dy, pad + dx), weights)  # out(y, x) = sum_i w_i * x(y + dy_i, x + dx_i)
    out = cv2.filter2D(_unit(x), -1, kernel, borderType=cv2.BORDER_REPLICATE)
    return _cv(x, _byte(out))


@_add(
    "zoom_blur",
    "blur",
    ("largest zoom", "zoom step"),
    "cv2.resize(INTER_LINEAR) of the centre crop, for zooms 1, 1+step, ... < largest; averaged with the image",
)
def zoom_blur(x: np.ndarray, p: Params, rng: np.random.Generator, s: float) -> np.ndarray:
    u = _unit(x)
    h, w = x.shape[:2]
    zooms = np.arange(1.0, p[0], p[1])
    out = u.copy()
    for z in zooms:
        ch, cw = math.ceil(h / z), math.ceil(w / z)
        top, left = (h - ch) // 2, (w - cw) // 2
        crop = u[top : top + ch, left : left + cw]
        big = cv2.resize(crop, (round(cw * z), round(ch * z)), interpolation=cv2.INTER_LINEAR).reshape(
            round(ch * z), round(cw * z), -1
        )  # as scipy.ndimage.zoom(order=1), about 20x faster
        t, le = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
        out += big[t : t + h, le : le + w]
    return _byte(out / (len(zooms) + 1))


@_add(
    "gaussian_blur",
    "blur",
    ("kernel size px@224",),
    "cv2.GaussianBlur with torchvision's sigma for that kernel, 0.3 * ((k - 1) / 2 - 1) + 0.8",
    (True,),
)
def gaussian_blur(x: np.ndarray, p: Params, rng: np.random.Generator, s: float) -> np.ndarray:
    sigma = (0.3 * ((p[0] - 1) * 0.5 - 1) + 0.8) * s
    return _cv(x, cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101))


# -- color -----------------------------------------------------------------------------------------
@_add("brightness", "color", ("factor",), "PIL ImageEnhance.Brightness(img).enhance(f)")
def brightness(x: np.ndarray, p: Params, rng: np.random.Generator, s: float) -> np.ndarray:
    return _array(ImageEnhance.Brightness(_pil(x)).enhance(p[0]), x.shape[-1])


@_add("contrast", "color", ("factor",), "PIL ImageEnhance.Contrast(img).enhance(f)")
def contrast(x: np.ndarray, p: Params, rng: np.random.Generator, s: float) -> np.ndarray:
    return _array(ImageEnhance.Contrast(_pil(x)).enhance(p[0]), x.shape[-1])


@_add("saturate", "color", ("added HSV saturation",), "cv2.cvtColor RGB<->HSV (float), S + c clipped")
def saturate(x: np.ndarray, p: Params, rng: np.random.Generator, s: float) -> np.ndarray:
    if x.shape[-1] != 3:
        return x.copy()  # no saturation in a grey image
    hsv = cv2.cvtColor(_unit(x), cv2.COLOR_RGB2HSV)
    hsv[..., 1] = np.clip(hsv[..., 1] + p[0], 0.0, 1.0)
    return _byte(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))


@_add("gamma_correction", "task-specific", ("gamma",), "numpy 255 * (x / 255) ** gamma")
def gamma_correction(x: np.ndarray, p: Params, rng: np.random.Generator, s: float) -> np.ndarray:
    return _byte(_unit(x) ** p[0])


# -- task-specific ---------------------------------------------------------------------------------
def _blob(k: int, rng: np.random.Generator) -> np.ndarray:
    """A soft, irregular ink blot (k, k) in 0..1: a disc with a noisy, smoothed edge."""
    grid = (np.arange(k) - (k - 1) / 2) / max(k / 2, 1e-6)
    xx, yy = np.meshgrid(grid, grid)
    noise = cv2.GaussianBlur(rng.random((k, k)).astype(np.float32), (0, 0), sigmaX=max(k / 8, 0.5))
    noise = (noise - noise.mean()) / (noise.std() + 1e-6)
    return np.clip(1.5 - 1.6 * np.hypot(xx, yy) + 0.25 * noise, 0.0, 1.0).astype(np.float32)


@_add(
    "stain_deposit",
    "task-specific",
    ("most marks", "ink blot px@224"),
    "random ink blots (noise smoothed by cv2.GaussianBlur), multiplied in: x * (1 - ink)",
    (True, True),
)
def stain_deposit(x: np.ndarray, p: Params, rng: np.random.Generator, s: float) -> np.ndarray:
    most = int(p[0])
    marks = int(rng.integers(1, most + 1)) if most > 1 else most
    k = max(2, round(p[1] * s))
    h, w = x.shape[:2]
    margin = round(10 * s)
    u = _unit(x)
    for _ in range(marks):
        top = int(rng.integers(margin, max(margin, h - k - margin) + 1))
        left = int(rng.integers(margin, max(margin, w - k - margin) + 1))
        ink = _blob(k, rng)[: h - top, : w - left, None]
        u[top : top + ink.shape[0], left : left + ink.shape[1]] *= 1.0 - ink
    return _byte(u)


@_add(
    "bubble",
    "task-specific",
    ("largest radius px@224", "most bubbles"),
    "PIL ImageDraw.ellipse alpha discs (alpha 100, rim 130), white composited over the image",
    (True, True),
)
def bubble(x: np.ndarray, p: Params, rng: np.random.Generator, s: float) -> np.ndarray:
    h, w = x.shape[:2]
    largest, most = int(p[0]), int(p[1])
    alpha = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(alpha)
    border = 2 * s
    for _ in range(int(rng.integers(7, max(7, most) + 1))):
        r = int(rng.integers(3, max(3, largest) + 1))  # in 224 px units
        cx = rng.integers(r, max(r, REFERENCE_SIZE - r) + 1) * w / REFERENCE_SIZE
        cy = rng.integers(r, max(r, REFERENCE_SIZE - r) + 1) * h / REFERENCE_SIZE
        rr = r * s
        draw.ellipse((cx - rr - border, cy - rr - border, cx + rr + border, cy + rr + border), fill=130)
        draw.ellipse((cx - rr, cy - rr, cx + rr, cy + rr), fill=100)
    a = np.asarray(alpha, dtype=np.float32)[..., None] / 255.0
    return _byte(_unit(x) * (1.0 - a) + a)


@_add(
    "black_corner",
    "task-specific",
    ("circle radius / half width",),
    "cv2.circle mask; outside the centred circle set to 0",
)
def black_corner(x: np.ndarray, p: Params, rng: np.random.Generator, s: float) -> np.ndarray:
    h, w = x.shape[:2]
    cx, cy = w // 2, h // 2
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, (cx, cy), int(min(cx, cy, w - cx, h - cy) * p[0]), 255, thickness=-1)
    out = x.copy()
    out[mask == 0] = 0
    return out


@_add(
    "characters",
    "task-specific",
    ("most words", "most letters", "largest font scale@224"),
    "cv2.putText (FONT_HERSHEY_DUPLEX, LINE_AA) of random lowercase words in random colours",
    (True, True, False),
)
def characters(x: np.ndarray, p: Params, rng: np.random.Generator, s: float) -> np.ndarray:
    out = np.ascontiguousarray(x.copy())
    letters = np.array(list(string.ascii_lowercase))
    for _ in range(int(rng.integers(1, int(p[0]) + 1))):
        n = int(rng.integers(3, max(3, int(p[1])) + 1))
        scale = int(rng.integers(14, max(14, int(p[2] * 100)) + 1)) / 100 * s
        left = int(rng.integers(10, max(10, REFERENCE_SIZE - 8 * n) + 1) * s)
        bottom = int(rng.integers(10, REFERENCE_SIZE - 10 + 1) * s)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        text = "".join(rng.choice(letters, n))
        colour = colour if x.shape[-1] == 3 else (round(float(np.mean(colour))),)
        out = _cv(x, cv2.putText(out, text, (left, bottom), cv2.FONT_HERSHEY_DUPLEX, scale, colour, 1, cv2.LINE_AA))
    return out


# -- the paper's per-dataset lists -----------------------------------------------------------------
@dataclass(frozen=True)
class Corruption:
    """One named corruption of a dataset: a kind at five severities' parameters."""

    name: str
    kind: str
    params: tuple[Params, ...]  # severities 1..5

    def at(self, severity: int) -> Params:
        return self.params[severity - 1]


def _p(v: object) -> Params:
    return tuple(float(a) for a in v) if isinstance(v, tuple) else (float(v),)  # type: ignore[arg-type]


def _c(name: str, kind: str, *params: object) -> Corruption:
    assert len(params) == 5, (name, params)
    return Corruption(name, kind, tuple(_p(v) for v in params))


def _stain(*marks: int) -> tuple[tuple[int, int], ...]:
    # the package's ink sizes: 24 px for its severities 1-4, 32 px for 5
    return tuple((m, 24 if i < 4 else 32) for i, m in enumerate(marks))


def _organ() -> tuple[Corruption, ...]:
    return (
        _c("pixelate", "pixelate", 0.7, 0.6, 0.5, 0.40, 0.35),
        _c("jpeg_compression", "jpeg_compression", 50, 30, 15, 10, 7),
        _c("gaussian_noise", "gaussian_noise", 0.04, 0.08, 0.12, 0.16, 0.20),
        _c("speckle_noise", "speckle_noise", 0.05, 0.10, 0.20, 0.30, 0.40),
        _c("impulse_noise", "impulse_noise", 0.01, 0.02, 0.03, 0.05, 0.08),
        _c("shot_noise", "shot_noise", 200, 100, 50, 25, 15),
        _c("gaussian_blur", "gaussian_blur", 11, 13, 15, 17, 21),
        _c("brightness_up", "brightness", 1.2, 1.3, 1.4, 1.5, 1.6),
        _c("brightness_down", "brightness", 0.8, 0.75, 0.7, 0.65, 0.60),
        _c("contrast_up", "contrast", 1.3, 1.4, 1.6, 1.7, 1.8),
        _c("contrast_down", "contrast", 0.8, 0.7, 0.6, 0.55, 0.5),
        _c("gamma_corr_up", "gamma_correction", 1.3, 1.4, 1.6, 1.8, 2.0),
        _c("gamma_corr_down", "gamma_correction", 0.9, 0.8, 0.7, 0.6, 0.4),
    )


def _xray(pixelate: tuple, gauss: tuple, speckle: tuple, impulse: tuple, shot: tuple) -> tuple[Corruption, ...]:
    return (
        _c("pixelate", "pixelate", *pixelate),
        _c("jpeg_compression", "jpeg_compression", 50, 30, 15, 10, 7),
        _c("gaussian_noise", "gaussian_noise", *gauss),
        _c("speckle_noise", "speckle_noise", *speckle),
        _c("impulse_noise", "impulse_noise", *impulse),
        _c("shot_noise", "shot_noise", *shot),
        _c("gaussian_blur", "gaussian_blur", 3, 5, 7, 9, 11),
        _c("brightness_up", "brightness", 1.1, 1.2, 1.3, 1.4, 1.5),
        _c("brightness_down", "brightness", 0.9, 0.8, 0.7, 0.6, 0.5),
        _c("contrast_up", "contrast", 1.1, 1.2, 1.3, 1.4, 1.6),
        _c("contrast_down", "contrast", 0.9, 0.8, 0.7, 0.6, 0.4),
        _c("gamma_corr_up", "gamma_correction", 1.1, 1.2, 1.3, 1.4, 1.6),
        _c("gamma_corr_down", "gamma_correction", 0.9, 0.8, 0.7, 0.6, 0.4),
    )


# Parameters of medmnistc 0.1 (corruptions/registry.py), the paper's package. Where it lists six
# values (RetinaMNIST defocus, ChestMNIST and PneumoniaMNIST gaussian blur), the paper's five
# severities use the first five, as its evaluation loop does.
MODALITY = {
    "pathmnist": "colon pathology",
    "bloodmnist": "blood cell microscopy",
    "dermamnist": "dermatoscopy",
    "retinamnist": "fundus camera",
    "tissuemnist": "kidney cortex microscopy",
    "octmnist": "retinal OCT",
    "breastmnist": "breast ultrasound",
    "chestmnist": "chest X-ray",
    "pneumoniamnist": "chest X-ray",
    "organamnist": "abdominal CT",
    "organcmnist": "abdominal CT",
    "organsmnist": "abdominal CT",
}
DATASETS: dict[str, tuple[Corruption, ...]] = {
    "pathmnist": (
        _c("pixelate", "pixelate", 0.8, 0.6, 0.40, 0.30, 0.25),
        _c("jpeg_compression", "jpeg_compression", 50, 30, 15, 10, 7),
        _c("defocus_blur", "defocus_blur", (3, 0.1), (4, 0.1), (5, 0.2), (6, 0.2), (7, 0.3)),
        _c("motion_blur", "motion_blur", (5, 5), (10, 5), (15, 5), (15, 8), (15, 12)),
        _c("brightness_up", "brightness", 1.1, 1.15, 1.2, 1.22, 1.25),
        _c("brightness_down", "brightness", 0.85, 0.80, 0.75, 0.72, 0.70),
        _c("contrast_up", "contrast", 1.1, 1.2, 1.3, 1.4, 1.6),
        _c("contrast_down", "contrast", 0.8, 0.7, 0.6, 0.55, 0.5),
        _c("saturate", "saturate", 0.05, 0.10, 0.15, 0.20, 0.25),
        _c("stain_deposit", "stain_deposit", *_stain(1, 2, 3, 4, 5)),
        _c("bubble", "bubble", (7, 15), (10, 15), (12, 15), (15, 20), (17, 25)),
    ),
    "bloodmnist": (
        _c("pixelate", "pixelate", 0.6, 0.5, 0.40, 0.30, 0.25),
        _c("jpeg_compression", "jpeg_compression", 50, 30, 15, 10, 7),
        _c("defocus_blur", "defocus_blur", (2, 0.01), (3, 0.1), (4, 0.1), (5, 0.1), (6, 0.1)),
        _c("motion_blur", "motion_blur", (3, 3), (5, 5), (10, 5), (10, 7), (10, 9)),
        _c("brightness_up", "brightness", 1.1, 1.2, 1.3, 1.35, 1.4),
        _c("brightness_down", "brightness", 0.9, 0.8, 0.7, 0.6, 0.5),
        _c("contrast_up", "contrast", 1.1, 1.15, 1.2, 1.25, 1.3),
        _c("contrast_down", "contrast", 0.9, 0.8, 0.7, 0.6, 0.5),
        _c("saturate", "saturate", 0.05, 0.10, 0.15, 0.17, 0.20),
        _c("stain_deposit", "stain_deposit", *_stain(1, 2, 3, 3, 3)),
        _c("bubble", "bubble", (5, 10), (7, 10), (10, 10), (12, 12), (15, 12)),
    ),
    "dermamnist": (
        _c("pixelate", "pixelate", 0.7, 0.5, 0.40, 0.30, 0.25),
        _c("jpeg_compression", "jpeg_compression", 30, 20, 15, 10, 7),
        _c("gaussian_noise", "gaussian_noise", 0.04, 0.08, 0.12, 0.18, 0.26),
        _c("speckle_noise", "speckle_noise", 0.05, 0.15, 0.2, 0.35, 0.45),
        _c("impulse_noise", "impulse_noise", 0.01, 0.03, 0.06, 0.09, 0.17),
        _c("shot_noise", "shot_noise", 60, 25, 18, 10, 5),
        _c("defocus_blur", "defocus_blur", (4, 0.1), (5, 0.2), (6, 0.3), (7, 0.4), (8, 0.5)),
        _c("motion_blur", "motion_blur", (10, 5), (15, 5), (15, 8), (15, 12), (20, 15)),
        _c("zoom_blur", "zoom_blur", (1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)),
        _c("brightness_up", "brightness", 1.1, 1.2, 1.3, 1.4, 1.5),
        _c("brightness_down", "brightness", 0.9, 0.8, 0.7, 0.6, 0.5),
        _c("contrast_up", "contrast", 1.1, 1.2, 1.3, 1.4, 1.6),
        _c("contrast_down", "contrast", 0.8, 0.7, 0.6, 0.5, 0.4),
        _c("black_corner", "black_corner", 1.10, 1.05, 1.00, 0.90, 0.95),
        _c("characters", "characters", (1, 6, 0.14), (2, 7, 0.15), (3, 8, 0.16), (4, 9, 0.17), (6, 10, 0.18)),
    ),
    "retinamnist": (
        _c("pixelate", "pixelate", 0.8, 0.60, 0.50, 0.40, 0.35),
        _c("jpeg_compression", "jpeg_compression", 30, 25, 20, 10, 5),
        _c("gaussian_noise", "gaussian_noise", 0.04, 0.08, 0.12, 0.16, 0.20),
        _c("speckle_noise", "speckle_noise", 0.10, 0.15, 0.20, 0.25, 0.30),
        _c("defocus_blur", "defocus_blur", (4, 0.1), (5, 0.2), (6, 0.3), (7, 0.4), (8, 0.5)),
        _c("motion_blur", "motion_blur", (8, 5), (15, 5), (15, 8), (15, 12), (20, 15)),
        _c("brightness_down", "brightness", 0.9, 0.8, 0.7, 0.6, 0.5),
        _c("contrast_down", "contrast", 0.9, 0.8, 0.7, 0.6, 0.4),
    ),
    "tissuemnist": (
        _c("pixelate", "pixelate", 0.40, 0.30, 0.20, 0.15, 0.10),
        _c("jpeg_compression", "jpeg_compression", 25, 20, 15, 10, 7),
        _c("impulse_noise", "impulse_noise", 0.01, 0.015, 0.02, 0.025, 0.03),
        _c("gaussian_blur", "gaussian_blur", 13, 15, 17, 21, 25),
        _c("brightness_up", "brightness", 1.3, 1.4, 1.5, 1.6, 1.7),
        _c("brightness_down", "brightness", 0.8, 0.7, 0.6, 0.5, 0.4),
        _c("contrast_up", "contrast", 1.1, 1.2, 1.3, 1.4, 1.6),
        _c("contrast_down", "contrast", 0.9, 0.8, 0.7, 0.6, 0.4),
    ),
    "octmnist": (
        _c("pixelate", "pixelate", 0.30, 0.25, 0.20, 0.15, 0.10),
        _c("jpeg_compression", "jpeg_compression", 30, 15, 10, 7, 5),
        _c("speckle_noise", "speckle_noise", 0.15, 0.30, 0.40, 0.50, 0.60),
        _c("defocus_blur", "defocus_blur", (0.5, 0.6), (1, 0.5), (1.5, 0.1), (2.0, 0.5), (2.5, 0.1)),
        _c("motion_blur", "motion_blur", (10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        _c("contrast_down", "contrast", 0.6, 0.4, 0.3, 0.2, 0.15),
    ),
    "breastmnist": (
        _c("pixelate", "pixelate", 0.30, 0.25, 0.20, 0.15, 0.10),
        _c("jpeg_compression", "jpeg_compression", 50, 30, 15, 10, 7),
        _c("speckle_noise", "speckle_noise", 0.10, 0.15, 0.20, 0.25, 0.30),
        _c("motion_blur", "motion_blur", (5, 5), (9, 7), (9, 10), (13, 10), (17, 12)),
        _c("brightness_up", "brightness", 1.4, 1.5, 1.6, 1.8, 2.0),
        _c("brightness_down", "brightness", 0.55, 0.5, 0.45, 0.4, 0.3),
        _c("contrast_down", "contrast", 0.9, 0.8, 0.7, 0.6, 0.4),
    ),
    "chestmnist": _xray(
        (0.30, 0.25, 0.20, 0.15, 0.10),
        (0.04, 0.08, 0.12, 0.18, 0.26),
        (0.05, 0.15, 0.2, 0.35, 0.45),
        (0.01, 0.03, 0.06, 0.09, 0.17),
        (60, 25, 18, 10, 5),
    ),
    "pneumoniamnist": _xray(
        (0.8, 0.7, 0.6, 0.5, 0.40),
        (0.04, 0.05, 0.06, 0.07, 0.08),
        (0.05, 0.07, 0.10, 0.15, 0.20),
        (0.005, 0.01, 0.013, 0.017, 0.02),
        (300, 200, 150, 100, 80),
    ),
    "organamnist": _organ(),
    "organcmnist": _organ(),
    "organsmnist": _organ(),
}


def _flag(dataset: str) -> str:
    flag = get_dataset(dataset, warn_alias=False).flag
    if flag not in DATASETS:
        raise MedMNISTLabError(
            f"MedMNIST-C defines no corruptions for {flag} (2D datasets only); datasets with corruptions: "
            f"{', '.join(DATASETS)}"
        )
    return flag


def corruptions_for(dataset: str) -> list[str]:
    """The corruption names of a 2D dataset, in the paper's order."""
    return [c.name for c in DATASETS[_flag(dataset)]]


def get_corruption(dataset: str, name: str) -> Corruption:
    table = {c.name: c for c in DATASETS[_flag(dataset)]}
    if name.lower() not in table:
        raise unknown_name(f"corruption for {_flag(dataset)}", name, table)
    return table[name.lower()]


def parse_corruptions(dataset: str, spec: str | Sequence[str]) -> list[str]:
    """ "all" or names (a comma-separated string or a list) -> the dataset's names, checked."""
    parts = [p.strip() for p in spec.split(",")] if isinstance(spec, str) else [str(p).strip() for p in spec]
    if parts == ["all"]:
        return corruptions_for(dataset)
    if not parts or not all(parts):
        raise MedMNISTLabError(f"corruptions '{spec}' has an empty name; give 'all' or names joined with ','")
    names = [get_corruption(dataset, p).name for p in parts]
    if len(set(names)) != len(names):
        raise MedMNISTLabError(f"corruptions '{spec}' names a corruption twice")
    return names


def parse_severities(spec: str | Sequence[int]) -> list[int]:
    """ "1-5", "1,3,5" or "2" (or a list of ints) -> sorted severities in 1..5."""
    bad = MedMNISTLabError(
        f"severities '{spec}' are not valid; give a range like 1-5 or a list like 1,3,5, each in 1..5"
    )
    try:
        if isinstance(spec, str):
            text = spec.replace(" ", "")
            if "-" in text:
                lo, hi = (int(v) for v in text.split("-"))
                values = list(range(lo, hi + 1)) if lo <= hi else []
            else:
                values = [int(v) for v in text.split(",")]
        else:
            values = [int(v) for v in spec]
    except ValueError:
        raise bad from None
    if not values or any(v not in SEVERITIES for v in values) or len(set(values)) != len(values):
        raise bad
    return sorted(values)


def seed_for(name: str, severity: int, seed: int = 0) -> int:
    """A stable seed for one cell: the same on every run and machine (no Python hash salt)."""
    return zlib.crc32(f"{name}:{severity}:{seed}".encode()) ^ (int(seed) & 0xFFFFFFFF)


def _apply(c: Corruption, x: np.ndarray, params: Params, rng: np.random.Generator) -> np.ndarray:
    """One (C, H, W) uint8 image -> corrupted (C, H, W) uint8."""
    hwc = np.ascontiguousarray(np.moveaxis(x, 0, -1))
    out = KINDS.get(c.kind).fn(hwc, params, rng, hwc.shape[1] / REFERENCE_SIZE)
    assert out.shape == hwc.shape and out.dtype == np.uint8, (c.name, out.shape, out.dtype)
    return np.moveaxis(out, -1, 0)


def _as_batch(images: np.ndarray) -> np.ndarray:
    a = np.asarray(images)
    if a.dtype != np.uint8 or a.ndim != 4 or a.shape[1] not in (1, 3):
        raise TypeError(f"expected uint8 images (N, C, H, W) with C 1 or 3, got {a.dtype} {a.shape}")
    return a


def corrupt(images: np.ndarray, dataset: str, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """uint8 (N, C, H, W) -> the same under `name` of `dataset` at `severity` (1..5); the same
    `seed` gives the same images (one numpy generator, images in order)."""
    a = _as_batch(images)
    c = get_corruption(dataset, name)
    (severity,) = parse_severities([severity])
    rng = np.random.default_rng(seed)
    return np.stack([_apply(c, x, c.at(severity), rng) for x in a]) if len(a) else a.copy()


def random_params(c: Corruption, rng: np.random.Generator) -> Params:
    """AugMedMNIST-C's draw: each parameter uniform between its severity-1 and severity-5 values."""
    ints = KINDS.get(c.kind).integers
    out = []
    for i, (a, b) in enumerate(zip(c.params[0], c.params[-1], strict=True)):
        v = rng.uniform(min(a, b), max(a, b))
        out.append(float(int(v)) if ints[i] else float(v))
    return tuple(out)


def augment_batch(images: np.ndarray, dataset: str, rng: np.random.Generator) -> np.ndarray:
    """AugMedMNIST-C on a batch: per image, one of the dataset's corruptions or the identity (chosen
    uniformly), at parameters drawn by `random_params`."""
    a = _as_batch(images)
    table = DATASETS[_flag(dataset)]
    out = a.copy()
    for i, pick in enumerate(rng.integers(0, len(table) + 1, len(a))):
        if pick < len(table):  # the last choice is the identity
            c = table[pick]
            out[i] = _apply(c, a[i], random_params(c, rng), rng)
    return out
