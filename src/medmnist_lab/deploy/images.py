"""Image files -> the uint8 (C, S, S) arrays a model was trained on, one clear reason per bad file.

MedMNIST images are 8-bit, grayscale or RGB, square, at 28/64/128/224 px. A file is converted the
same way: 16-bit data is mapped onto 0..255 by value / 257 (65535 -> 255; a 16-bit file written
from a MedMNIST image, value x 257, comes back exactly), palette/CMYK/YCbCr images become RGB, an
alpha channel is dropped, and an RGB file with three equal channels counts as grayscale. A file of
another size is resized to S x S (the whole image, no crop) with Pillow's bicubic filter, which
antialiases when it shrinks: the MedMNIST paper resizes each source to 28 px without naming one
filter for all 12 datasets, and a plain bicubic/area-like filter is what shrinking a 500 px scan
to 28 px needs. Images already at the model's size are used unchanged, so the images of an
official npz written out as PNG files give exactly the predictions of `evaluate`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom")
NPZ_SUFFIX = ".npz"
VOLUME_NAMES = (".npy", ".nii", ".nii.gz")  # volume files: for 3D models (deploy/volumes.py)
MIN_SIDE = 8  # below this an image holds too little to resize into a MedMNIST-like one


@dataclass(frozen=True)
class InputSpec:
    """What the model expects: `channels` of the dataset's images (1 or 3), at `size` px along each
    of its `spatial_dims` axes (2: images, read here; 3: volumes, read by deploy/volumes.py);
    `as_rgb` models (grayscale data repeated to 3 channels) get grayscale images repeated too."""

    dataset: str
    size: int
    channels: int
    as_rgb: bool = False
    spatial_dims: int = 2


@dataclass
class Item:
    """One input: its name (a path, or `file.npz#test/17`), pixels (C, S, S) uint8 (a volume:
    (C, S, S, S)) when readable, else `error`; `note` says what conversion was applied."""

    name: str
    pixels: np.ndarray | None = None
    note: str = ""
    error: str | None = None


class Unreadable(Exception):
    """A file that cannot be used; the message is the reason shown to the user."""


def is_volume_file(path: Path) -> bool:
    """A .npy or NIfTI file (.nii, .nii.gz): volumes, which only a 3D model takes."""
    return path.name.lower().endswith(VOLUME_NAMES)


def collect(paths: Sequence[str | os.PathLike[str]]) -> Iterator[Path | Item]:
    """Files to read, in order: a folder gives its image/DICOM/npz files, recursively and sorted
    (other files in it are ignored); a path that does not exist is an error item."""
    wanted = (*IMAGE_SUFFIXES, *DICOM_SUFFIXES, NPZ_SUFFIX)
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in wanted)
        elif path.is_file():
            yield path
        else:
            yield Item(str(path), error="no such file or folder")


def read_inputs(paths: Sequence[str | os.PathLike[str]], spec: InputSpec) -> Iterator[Item]:
    """Every input as an `Item`, in order; unreadable ones carry their reason and never stop the rest."""
    for entry in collect(paths):
        if isinstance(entry, Item):
            yield entry
            continue
        suffix = entry.suffix.lower()
        try:
            if is_volume_file(entry):
                raise Unreadable(
                    f"a volume file ({entry.name}), but {spec.dataset} is a 2D dataset: give 2D images, or a 3D model"
                )
            if suffix == NPZ_SUFFIX:
                yield from read_npz(entry, spec)
                continue
            array, note = read_dicom(entry) if suffix in DICOM_SUFFIXES else read_image_file(entry)
            pixels, more = conform(array, spec)
            yield Item(str(entry), pixels, "; ".join(n for n in (note, more) if n))
        except Unreadable as exc:
            yield Item(str(entry), error=str(exc))


def read_image_file(path: Path) -> tuple[np.ndarray, str]:
    """(H, W) or (H, W, 3) uint8 and a note on the conversion."""
    if path.stat().st_size == 0:
        raise Unreadable("empty file")
    try:
        with Image.open(path) as img:
            img.load()
            return _to_uint8(img)
    except UnidentifiedImageError:
        raise Unreadable(
            f"not an image file Pillow can read (is it really a {path.suffix.lstrip('.').upper()}?)"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise Unreadable(f"truncated or corrupt image ({exc})") from None


def _to_uint8(img: Image.Image) -> tuple[np.ndarray, str]:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.int64)
        if arr.min() < 0 or arr.max() > 65535:
            raise Unreadable(f"{mode} image with values outside 0..65535 ({arr.min()}..{arr.max()})")
        return np.rint(arr / 257).astype(np.uint8), "16-bit values mapped to 0..255 (value / 257)"
    if mode == "F":
        raise Unreadable("a floating-point image; save it as an 8- or 16-bit image")
    if mode in ("1", "L"):
        return np.asarray(img.convert("L")), ""
    if mode in ("LA", "La"):
        return np.asarray(img.convert("L")), "alpha channel dropped"
    if mode == "RGB":
        return np.asarray(img), ""
    if mode in ("RGBA", "RGBa", "P", "PA"):
        note = "palette image converted to RGB" if mode.startswith("P") else "alpha channel dropped"
        return np.asarray(img.convert("RGB")), note
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(img.convert("RGB")), f"{mode} converted to RGB"
    raise Unreadable(f"unsupported image mode {mode}")


def read_dicom(path: Path) -> tuple[np.ndarray, str]:
    """A single-frame DICOM image as uint8, its stored values (after the modality LUT) mapped
    linearly from their min..max onto 0..255 (MONOCHROME1 inverted)."""
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut
    except ImportError:
        raise Unreadable("DICOM files need the dicom extra: pip install 'medmnist-lab[dicom]'") from None
    try:
        ds = pydicom.dcmread(path)
        arr = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    except Exception as exc:  # pydicom raises many types for bad files; each is a per-file reason
        raise Unreadable(f"not a readable DICOM image ({type(exc).__name__}: {exc})") from None
    if (arr.ndim == 3 and arr.shape[-1] != 3) or arr.ndim > 3:
        raise Unreadable(f"a multi-frame DICOM ({arr.shape}); give one frame per file")
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        arr = arr.max() - arr
    lo, hi = float(arr.min()), float(arr.max())
    scaled = np.zeros_like(arr) if hi == lo else (arr - lo) * 255.0 / (hi - lo)
    return np.rint(scaled).astype(np.uint8), f"DICOM values {lo:g}..{hi:g} mapped to 0..255"


def conform(array: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, str]:
    """(H, W[, 3]) uint8 -> (C, S, S) uint8 for `spec`; the note lists what changed."""
    notes = []
    if array.ndim == 3 and spec.channels == 1:
        if not (np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2])):
            raise Unreadable(f"a colour (RGB) image, but {spec.dataset} images are grayscale")
        array = array[..., 0]
        notes.append("equal RGB channels read as grayscale")
    if array.ndim == 2 and spec.channels == 3:
        raise Unreadable(f"a grayscale image, but {spec.dataset} images are RGB")
    h, w = array.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise Unreadable(f"{w}x{h} px is too small (at least {MIN_SIDE} px per side)")
    if (h, w) != (spec.size, spec.size):
        img = Image.fromarray(array).resize((spec.size, spec.size), Image.Resampling.BICUBIC)
        array = np.asarray(img)
        notes.append(f"resized from {w}x{h}" + (" (aspect ratio changed)" if h != w else ""))
    chw = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    if spec.as_rgb and chw.shape[0] == 1:
        chw = np.repeat(chw, 3, axis=0)
    return np.ascontiguousarray(chw), "; ".join(notes)


def read_npz(path: Path, spec: InputSpec) -> Iterator[Item]:
    """Every `{split}_images` array of an npz of the official layout, as `file.npz#split/index` items."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = [k for k in ("train_images", "val_images", "test_images") if k in npz.files]
            if not keys:
                raise Unreadable(f"holds no train/val/test _images arrays (found {', '.join(npz.files) or 'nothing'})")
            arrays = {k.removesuffix("_images"): npz[k] for k in keys}
    except Unreadable:
        raise
    except Exception as exc:  # zip, pickle and format errors of a foreign file: one reason for it
        raise Unreadable(f"not a readable npz archive ({type(exc).__name__}: {exc})") from None
    for split, images in arrays.items():
        want = (spec.size, spec.size) if spec.channels == 1 else (spec.size, spec.size, spec.channels)
        if images.ndim == 4 and images.shape[-1] not in (1, 3):
            raise Unreadable(
                f"{split}_images is {images.dtype} {tuple(images.shape)}: volumes, but {spec.dataset} is a 2D "
                "dataset: give 2D images, or a 3D model"
            )
        if images.dtype != np.uint8 or tuple(images.shape[1:]) != want:
            raise Unreadable(
                f"{split}_images is {images.dtype} {tuple(images.shape)}; this model needs uint8 (N, "
                f"{', '.join(map(str, want))})"
            )
        for i, image in enumerate(images):
            pixels, _ = conform(image, spec)
            yield Item(f"{path}#{split}/{i}", pixels)
