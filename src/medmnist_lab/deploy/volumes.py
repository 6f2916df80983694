"""Volume files -> the uint8 (C, S, S, S) arrays a 3D model was trained on, one clear reason per bad input.

MedMNIST 3D volumes are 8-bit, one channel, (D, H, W) at 28 or 64 voxels a side. Inputs:

- `.npy`: one volume (D, H, W), or a stack (N, D, H, W) / (N, 1, D, H, W), named `FILE.npy#i`;
- `.npz`: an official-layout file (every `{split}_images` array, `FILE.npz#split/i`), or any other
  npz: each array of rank 3 is a volume (`FILE.npz#KEY`), of rank 4 a stack (`FILE.npz#KEY/i`);
  arrays of other ranks (labels, spacings) are ignored;
- NIfTI (`.nii`, `.nii.gz`, the nifti extra: nibabel): one 3D volume (a 4D file of one volume is
  taken as that volume), its voxel array in the stored axis order (i, j, k) as (D, H, W), the
  header's scaling (scl_slope/scl_inter) applied, not reoriented;
- a folder of DICOM slices (`.dcm`/`.dicom` files directly in it; the dicom extra: pydicom): one
  volume per folder, one series, parallel slices; slices sorted by their ImagePositionPatient
  projected on the slice normal (the cross product of ImageOrientationPatient's row and column
  directions), else by InstanceNumber; (D, H, W) = (slices, Rows, Columns); the modality LUT
  (RescaleSlope/Intercept) applied; MONOCHROME1 inverted.

Intensities: a uint8 volume is used as it is; any other (int16 CT, uint16, float) is mapped
linearly from the volume's own min..max onto 0..255 (one mapping for the whole volume, not per
slice). Size: a volume already S x S x S is used unchanged (so the volumes of an official npz give
exactly `evaluate`'s probabilities); any other is resampled to S x S x S with
`torch.nn.functional.interpolate(mode="trilinear", align_corners=False)`, after a box average
(`adaptive_avg_pool3d`) down to 2 S along any axis longer than 2 S, so that shrinking a 512-voxel
axis to 28 averages over the source voxels instead of sampling a few; then rounded to uint8.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medmnist_lab.deploy.images import (
    DICOM_SUFFIXES,
    IMAGE_SUFFIXES,
    NPZ_SUFFIX,
    InputSpec,
    Item,
    Unreadable,
    is_volume_file,
)

NPY_SUFFIX = ".npy"
NIFTI_NAMES = (".nii", ".nii.gz")
MIN_VOXELS = 2  # per axis: a volume needs at least two voxels along each axis to be one
WHAT = "volumes (.npy, .npz, .nii, .nii.gz, or a folder of DICOM slices)"

Volume = tuple[str, np.ndarray, str]  # (name, array (D, H, W), note)


def _is_dicom(path: Path) -> bool:
    return path.suffix.lower() in DICOM_SUFFIXES


def collect_volumes(paths: Sequence[str | os.PathLike[str]]) -> Iterator[Path | Item]:
    """Inputs in order: files as given; a folder gives every folder under it (itself included) that
    directly holds DICOM files, as one series each, and its volume files, recursively and sorted.
    A folder with none of these, and a path that does not exist, are error items."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = list(_walk(path))
            if found:
                yield from found
            else:
                yield Item(str(path), error=_empty_reason(path))
        elif path.is_file():
            yield path
        else:
            yield Item(str(path), error="no such file or folder")


def _walk(folder: Path) -> Iterator[Path]:
    for d in sorted([folder, *(p for p in folder.rglob("*") if p.is_dir())]):
        files = sorted(p for p in d.iterdir() if p.is_file())
        if any(_is_dicom(p) for p in files):
            yield d
        yield from (p for p in files if is_volume_file(p) or p.suffix.lower() == NPZ_SUFFIX)


def _empty_reason(folder: Path) -> str:
    images = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if images:
        return f"holds only 2D image files ({len(images)}, e.g. {images[0].name}); a 3D model needs {WHAT}"
    return "an empty folder: no DICOM slices or volume files (.npy, .npz, .nii, .nii.gz) in it"


def read_volumes(paths: Sequence[str | os.PathLike[str]], spec: InputSpec) -> Iterator[Item]:
    """Every input volume as an `Item` (pixels (C, S, S, S) uint8), in order; unreadable ones carry
    their reason and never stop the rest."""
    for entry in collect_volumes(paths):
        if isinstance(entry, Item):
            yield entry
            continue
        try:
            for name, array, note in _read(entry, spec):
                try:
                    pixels, more = conform_volume(array, spec)
                except Unreadable as exc:
                    yield Item(name, error=str(exc))
                    continue
                yield Item(name, pixels, "; ".join(n for n in (note, more) if n))
        except Unreadable as exc:
            yield Item(str(entry), error=str(exc))


def _read(path: Path, spec: InputSpec) -> Iterator[Volume]:
    name = path.name.lower()
    if path.is_dir():
        array, note = read_dicom_series(path)
        yield str(path), array, note
    elif name.endswith(NPY_SUFFIX):
        yield from read_npy(path, spec)
    elif name.endswith(NPZ_SUFFIX):
        yield from read_npz_volumes(path, spec)
    elif name.endswith(NIFTI_NAMES):
        array, note = read_nifti(path, spec)
        yield str(path), array, note
    elif path.suffix.lower() in DICOM_SUFFIXES:
        raise Unreadable("a single DICOM file; for a 3D model give the folder holding the series' slices")
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        raise Unreadable(f"a 2D image file, but {spec.dataset} is a 3D dataset: give {WHAT}")
    else:
        raise Unreadable(f"not a volume file; a 3D model takes {WHAT}")


def _nonempty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise Unreadable("empty file")


def _shape(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def _not_a_volume(shape: Sequence[int], spec: InputSpec, stack: str = "") -> Unreadable:
    if len(shape) == 2:
        return Unreadable(f"a 2D image ({_shape(shape)}), but {spec.dataset} is a 3D dataset: give volumes (D, H, W)")
    return Unreadable(f"an array of shape {_shape(shape)}; a 3D model needs one volume (D, H, W){stack}")


def read_npy(path: Path, spec: InputSpec) -> Iterator[Volume]:
    """A (D, H, W) volume, or each volume of an (N, D, H, W) or (N, 1, D, H, W) stack as `FILE.npy#i`."""
    _nonempty(path)
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as exc:  # a foreign or damaged file: numpy raises several types; one reason for it
        raise Unreadable(f"not a readable .npy array ({type(exc).__name__}: {exc})") from None
    yield from _volumes_of(str(path), array, spec)


def _volumes_of(name: str, array: np.ndarray, spec: InputSpec, sep: str = "#") -> Iterator[Volume]:
    if array.ndim == 5 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 3:
        yield name, np.asarray(array), ""
    elif array.ndim == 4:
        for i in range(len(array)):
            yield f"{name}{sep}{i}", np.asarray(array[i]), ""
    else:
        raise _not_a_volume(array.shape, spec, " or a stack of them (N, D, H, W)")


def read_npz_volumes(path: Path, spec: InputSpec) -> Iterator[Volume]:
    """An official-layout npz's `{split}_images` (FILE.npz#split/i), or any npz's arrays of rank 3
    (FILE.npz#KEY) and 4 (FILE.npz#KEY/i); everything is checked before the first volume is given."""
    _nonempty(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = [k for k in ("train_images", "val_images", "test_images") if k in npz.files]
            arrays = {k: npz[k] for k in (keys or npz.files)}
    except Exception as exc:  # zip, pickle and format errors of a foreign file: one reason for it
        raise Unreadable(f"not a readable npz archive ({type(exc).__name__}: {exc})") from None
    if keys:
        for key, images in arrays.items():
            if images.ndim != 4:
                kind = "2D images" if images.ndim == 3 else "not volumes"
                raise Unreadable(
                    f"{key} is {images.dtype} {tuple(images.shape)}: {kind}, but {spec.dataset} is a 3D dataset "
                    "that needs volumes (N, D, H, W)"
                )
        for key, images in arrays.items():
            yield from _volumes_of(f"{path}#{key.removesuffix('_images')}", images, spec, "/")
        return
    found = {k: a for k, a in arrays.items() if a.ndim in (3, 4)}
    if not found:
        listed = ", ".join(f"{k} {_shape(a.shape)}" for k, a in arrays.items()) or "nothing"
        raise Unreadable(f"holds no volume (an array of rank 3, or a stack of rank 4); found {listed}")
    for key, array in found.items():
        yield from _volumes_of(f"{path}#{key}", array, spec, "/")


def read_nifti(path: Path, spec: InputSpec) -> tuple[np.ndarray, str]:
    """The voxel array of a 3D NIfTI file (a 4D one holding one volume is that volume)."""
    try:
        import nibabel as nib
    except ImportError:
        raise Unreadable("NIfTI files need the nifti extra: pip install 'medmnist-lab[nifti]'") from None
    _nonempty(path)
    try:
        data = np.asanyarray(nib.load(path).dataobj)
    except Exception as exc:  # nibabel raises many types for bad files; each is a per-file reason
        raise Unreadable(f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    shape = data.shape
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 4:
        raise Unreadable(f"a 4D NIfTI holding {data.shape[3]} volumes ({_shape(shape)}); give one volume per file")
    if data.ndim != 3:
        if data.ndim == 2:
            raise Unreadable(f"a 2D NIfTI ({_shape(shape)}), but {spec.dataset} is a 3D dataset: give one volume")
        raise Unreadable(f"a NIfTI of shape {_shape(shape)}; a 3D model needs one volume (3 axes)")
    return data, "NIfTI axes (i, j, k) as (D, H, W)"


def read_dicom_series(folder: Path) -> tuple[np.ndarray, str]:
    """The DICOM files directly in `folder` as one (D, H, W) volume, sorted along the slice normal."""
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut
    except ImportError:
        raise Unreadable("DICOM files need the dicom extra: pip install 'medmnist-lab[dicom]'") from None
    files = sorted(p for p in folder.iterdir() if p.is_file() and _is_dicom(p))
    slices = []
    for f in files:
        try:
            ds = pydicom.dcmread(f)
            pixels = apply_modality_lut(ds.pixel_array, ds)
        except Exception as exc:  # pydicom raises many types for bad files; each is a per-folder reason
            raise Unreadable(f"{f.name} is not a readable DICOM image ({type(exc).__name__}: {exc})") from None
        if pixels.ndim != 2:
            shape = _shape(pixels.shape)
            raise Unreadable(f"{f.name} holds {shape} pixels; a series needs one grayscale frame per file")
        slices.append((ds, pixels))
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for ds, _ in slices}
    if len(series) > 1:
        raise Unreadable(
            f"mixed series: {len(series)} SeriesInstanceUIDs among its {len(files)} files; one series per folder"
        )
    shapes = {p.shape for _, p in slices}
    if len(shapes) > 1:
        raise Unreadable(f"slices of different sizes ({', '.join(sorted(_shape(s) for s in shapes))})")
    order, how = _slice_order([ds for ds, _ in slices])
    volume = np.stack([slices[i][1] for i in order])
    if any(getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1" for ds, _ in slices):
        volume = volume.max() - volume.astype(np.float64)
        how += "; MONOCHROME1 inverted"
    return volume, f"DICOM series of {len(files)} slices {how}"


def _slice_order(datasets: list) -> tuple[list[int], str]:
    orient = [getattr(ds, "ImageOrientationPatient", None) for ds in datasets]
    where = [getattr(ds, "ImagePositionPatient", None) for ds in datasets]
    if all(o is not None and len(o) == 6 for o in orient) and all(p is not None and len(p) == 3 for p in where):
        o = np.asarray(orient, dtype=np.float64)
        if np.abs(o - o[0]).max() > 1e-4:
            kinds = len({tuple(np.round(r, 4)) for r in o})
            raise Unreadable(f"mixed orientations: {kinds} different ImageOrientationPatient among its slices")
        normal = np.cross(o[0, :3], o[0, 3:])
        along = np.asarray(where, dtype=np.float64) @ normal
        if len(np.unique(np.round(along, 4))) < len(along):
            raise Unreadable("two slices at the same position along the slice normal (more than one acquisition?)")
        return [int(i) for i in np.argsort(along)], "sorted by ImagePositionPatient along the slice normal"
    numbers = [getattr(ds, "InstanceNumber", None) for ds in datasets]
    if all(n is not None for n in numbers):
        if len(set(map(int, numbers))) < len(numbers):
            raise Unreadable("no ImagePositionPatient, and two slices share an InstanceNumber: their order is unknown")
        return sorted(range(len(numbers)), key=lambda i: int(numbers[i])), "sorted by InstanceNumber"
    raise Unreadable("its slices have neither ImagePositionPatient/ImageOrientationPatient nor InstanceNumber")


def intensities(array: np.ndarray) -> tuple[np.ndarray, str]:
    """uint8 as it is; anything else as float64 mapped from its min..max onto 0..255."""
    if array.dtype == np.uint8:
        return array, ""
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise Unreadable(f"values of type {array.dtype}; a volume needs numbers")
    values = np.asarray(array, dtype=np.float64)
    if not np.isfinite(values).all():
        raise Unreadable("holds NaN or infinite values")
    lo, hi = float(values.min()), float(values.max())
    scaled = np.zeros_like(values) if hi == lo else (values - lo) * (255.0 / (hi - lo))
    return scaled, f"{array.dtype} values {lo:g}..{hi:g} mapped to 0..255"


def resample(values: np.ndarray, size: int) -> np.ndarray:
    """float (D, H, W) -> float32 (S, S, S): a box average down to 2 S along any longer axis, then
    trilinear (align_corners=False) to S (see the module)."""
    x = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None]
    box = tuple(min(n, 2 * size) for n in values.shape)
    if box != tuple(values.shape):
        x = F.adaptive_avg_pool3d(x, box)
    return F.interpolate(x, size=(size,) * 3, mode="trilinear", align_corners=False)[0, 0].numpy()


def conform_volume(array: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, str]:
    """(D, H, W) of any numeric type -> (C, S, S, S) uint8 for `spec`; the note lists what changed."""
    if array.ndim != 3:
        raise _not_a_volume(array.shape, spec)
    if 1 in array.shape and max(array.shape) > 1:
        raise Unreadable(f"a single slice ({_shape(array.shape)}), not a volume")
    if min(array.shape) < MIN_VOXELS:
        raise Unreadable(f"{_shape(array.shape)} voxels is too small (at least {MIN_VOXELS} per axis)")
    values, note = intensities(array)
    notes = [note] if note else []
    if array.shape != (spec.size,) * 3:
        values = resample(values, spec.size)
        cube = len(set(array.shape)) == 1
        notes.append(f"resampled from {_shape(array.shape)} (trilinear)" + ("" if cube else " (aspect ratio changed)"))
    if values.dtype != np.uint8:
        values = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    cdhw = np.repeat(values[None], 3 if spec.as_rgb else 1, axis=0)
    return np.ascontiguousarray(cdhw), "; ".join(notes)
