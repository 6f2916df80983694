"""Load MedMNIST npz files into uint8 tensors (N, C, H, W), or (N, C, D, H, W) for the 3D
datasets' volumes, and int64 labels (N, L), with checks.

Small files (28/64 px, 2D and 3D) are read into memory: the largest 3D split, VesselMNIST3D-64
train, is ~350 MB, less than 2D 64 px splits that are read into memory (PathMNIST-64 train,
~1.1 GB). Large files (128/224 px; PathMNIST-224 is ~16 GB
as uint8) are converted once per split to a `.npy` cache and memory-mapped: numpy ignores
`mmap_mode` for `.npz`, so the official package's option loads everything into RAM. An npz
member *is* a `.npy` file, so the conversion streams its bytes to disk in constant memory.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from medmnist_lab.data.paths import ROOT_ENV, cache_dir, data_path
from medmnist_lab.data.registry import SPLITS, DatasetInfo, get_dataset
from medmnist_lab.errors import DataFileError
from medmnist_lab.outputs import OutputError, atomic_path, write_text_atomic

# Files written by medmnist-lab itself (offline augmentation, GAN samples, test fixtures) carry
# this key: a JSON string describing their origin. Official sample counts are not enforced on
# them, since an expanded or synthetic training split has its own size.
META_KEY = "medmnist_lab_meta"
MMAP_SIZES = (128, 224)

_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError)


class CorruptFileError(DataFileError):
    """An archive or array that cannot be read back (truncated, bad CRC, not an npz at all),
    as opposed to a readable file whose content does not match the registry."""


@dataclass
class SplitData:
    """One split of one dataset, ready for the batcher."""

    info: DatasetInfo
    split: str
    size: int
    images: torch.Tensor  # (N, C, H, W) or, 3D, (N, C, D, H, W) uint8; a view of a memory map for large files
    labels: torch.Tensor  # (N, L) int64
    source: Path
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def memory_mapped(self) -> bool:
        return bool(self.meta.get("memory_mapped", False))


def _how_to_get(info: DatasetInfo, size: int, root: Path) -> str:
    size_flag = "" if size == 28 else f" --size {size}"
    return (
        f"run `medmnist-lab datasets download {info.flag}{size_flag} --root {root}`, or download "
        f"{info.urls[size]} by hand (MD5 {info.md5s[size]}) and place it at "
        f"{root / info.filename(size)}"
    )


USER_FILE_HINT = (
    "a file given as --train-npz/--synthetic must be an npz archive (e.g. from np.savez) holding "
    "train_images (N, H, W) or (N, H, W, C) uint8 (3D datasets: volumes (N, D, H, W)) and "
    "train_labels (N, L) integers"
)


def _fix(info: DatasetInfo, size: int, path: Path, user: bool) -> str:
    """What to do about a bad file: download advice for the official files only."""
    return USER_FILE_HINT if user else f"delete it and {_how_to_get(info, size, path.parent)}"


def open_npz(path: Path, info: DatasetInfo, size: int, *, user: bool = False) -> np.lib.npyio.NpzFile:
    root = path.parent
    if user and not path.is_file():
        raise DataFileError(f"{path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    if not path.is_file():
        raise DataFileError(
            f"{info.flag} ({size} px) not found at {path} (files are looked up in --root, else "
            f"${ROOT_ENV}, else ~/.medmnist); {_how_to_get(info, size, root)}"
        )
    try:
        npz = np.load(path, allow_pickle=False)
    except _CORRUPT as exc:
        raise CorruptFileError(
            f"{path} is not a readable npz archive ({type(exc).__name__}: {exc}); it is truncated or corrupt: "
            f"{_fix(info, size, path, user)}"
        ) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):  # a bare .npy loads as one array
        raise CorruptFileError(
            f"{path} holds a single array, not an npz archive of splits; {_fix(info, size, path, user)}"
        )
    return npz


def read_meta(npz: np.lib.npyio.NpzFile, path: Path | None = None) -> dict:
    """The medmnist-lab metadata of a file this project wrote; {} for an official file."""
    if META_KEY not in npz.files:
        return {}
    try:
        meta = json.loads(str(read_member(npz, META_KEY, path or Path("<npz>"))))
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{path}: '{META_KEY}' is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise DataFileError(f"{path}: '{META_KEY}' must be a JSON object, got {type(meta).__name__}")
    return meta


def is_official(npz: np.lib.npyio.NpzFile) -> bool:
    # Presence of the key, not a non-empty value, marks our own files: `{}` is a valid marker.
    return META_KEY not in npz.files


def require_key(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> None:
    if key not in npz.files:
        raise DataFileError(
            f"{path} has no array '{key}'; found {', '.join(sorted(npz.files)) or 'nothing'}. "
            "A MedMNIST file holds train/val/test _images and _labels"
        )


def read_member(npz: np.lib.npyio.NpzFile, key: str, path: Path, user: bool = False) -> np.ndarray:
    require_key(npz, key, path)
    try:
        return npz[key]
    except _CORRUPT as exc:
        fix = "write it again" if user else "re-download it"
        raise CorruptFileError(f"{path}: array '{key}' is truncated or corrupt ({exc}); {fix}") from None


def _cached_member(path: Path, key: str, cache: Path) -> np.ndarray:
    """Memory-map `key` from a `.npy` copy of the npz member, writing the copy on first use."""
    target = cache / f"{key}.npy"
    st = path.stat()
    stamp = f"{st.st_size}:{st.st_mtime_ns}"
    stamp_file = cache / f"{key}.source"
    if not (target.is_file() and stamp_file.is_file() and stamp_file.read_text() == stamp):
        try:
            # atomic_path's temporary name is per process: two processes converting the same split
            # do not interleave, and a copy killed midway never becomes the cache.
            with atomic_path(target) as tmp:
                try:
                    with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as src, open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst, length=16 << 20)  # constant memory; CRC checked at EOF
                except _CORRUPT as exc:
                    if isinstance(exc, OSError) and exc.errno is not None:
                        raise  # the cache's folder or disk, not the archive: reported below
                    raise CorruptFileError(
                        f"{path}: array '{key}' is truncated or corrupt ({exc}); re-download it"
                    ) from None
            write_text_atomic(stamp_file, stamp)
        except OutputError as exc:
            raise DataFileError(
                f"cannot write the memory-map cache {cache} ({exc}); large files are converted "
                "once to .npy there: use a writable --root, or load with mmap=False"
            ) from None
    try:
        # mode "c" (copy-on-write) gives a writable array, so torch.from_numpy does not warn,
        # while pages are read from disk only when touched and never written back.
        return np.load(target, mmap_mode="c", allow_pickle=False)
    except _CORRUPT as exc:  # a member whose header promises more data than it holds
        raise CorruptFileError(f"{path}: array '{key}' cannot be memory-mapped ({exc})") from None


def validate_split(
    info: DatasetInfo,
    size: int,
    split: str,
    images: np.ndarray,
    labels: np.ndarray,
    path: Path,
    official: bool,
) -> None:
    """Check shape, dtype, sample count and label range against the registry."""
    c = info.n_channels
    want = info.spatial_shape(size) + (() if c == 1 else (c,))  # on disk: channels last, if any
    if images.dtype != np.uint8:
        raise DataFileError(f"{path}: {split}_images has dtype {images.dtype}, expected uint8")
    _check_dims(info, size, split, images.shape, want, path)
    if images.ndim != len(want) + 1 or tuple(images.shape[1:]) != want:
        raise DataFileError(
            f"{path}: {split}_images has shape {tuple(images.shape)}, "
            f"expected (N, {', '.join(map(str, want))}) for {info.flag} at {size} px"
        )
    n = images.shape[0]
    if labels.ndim != 2 or labels.shape[0] != n or labels.shape[1] != info.label_width:
        raise DataFileError(
            f"{path}: {split}_labels has shape {tuple(labels.shape)}, expected ({n}, {info.label_width})"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataFileError(f"{path}: {split}_labels has dtype {labels.dtype}, expected an integer type")
    if n == 0:
        raise DataFileError(f"{path}: {split} has 0 samples; nothing to train or score on")
    if official and n != info.n_samples[split]:
        raise DataFileError(
            f"{path}: {split} has {n} samples, the official {info.flag} has "
            f"{info.n_samples[split]}; the file is incomplete or not the official one"
        )
    if n:
        high = 1 if info.is_multilabel else info.n_classes - 1
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi > high:
            raise DataFileError(f"{path}: {split}_labels range over [{lo}, {hi}], valid values are 0..{high}")


def _looks_3d(shape: tuple[int, ...]) -> bool:
    """(N, D, H, W) with a cube of voxels, or the same with channels last."""
    return len(shape) in (4, 5) and shape[1] == shape[2] == shape[3] > 4


def _looks_2d(shape: tuple[int, ...]) -> bool:
    """(N, H, W), or (N, H, W, C) with a few channels last."""
    return len(shape) == 3 or (len(shape) == 4 and shape[1] == shape[2] and shape[3] <= 4)


def _check_dims(
    info: DatasetInfo, size: int, split: str, shape: tuple[int, ...], want: tuple[int, ...], path: Path
) -> None:
    """One message for a 2D file given for a 3D dataset, or the reverse."""
    expected = f"(N, {', '.join(map(str, want))})"
    if info.is_3d and _looks_2d(shape) and not _looks_3d(shape):
        raise DataFileError(
            f"{path}: {split}_images holds 2D images of shape {tuple(shape)}, but {info.flag} is a 3D "
            f"dataset: expected volumes (N, D, H, W) = {expected} uint8 at {size} px; is this a file "
            "of a 2D dataset?"
        )
    if not info.is_3d and _looks_3d(shape) and not _looks_2d(shape):
        raise DataFileError(
            f"{path}: {split}_images holds 3D volumes of shape {tuple(shape)}, but {info.flag} is a 2D "
            f"dataset: expected images {expected} uint8 at {size} px; is this a file of a 3D dataset?"
        )


def _to_channels_first(images: np.ndarray, info: DatasetInfo) -> torch.Tensor:
    """(N, H, W[, C]) -> (N, C, H, W); volumes (N, D, H, W) -> (N, 1, D, H, W)."""
    t = torch.from_numpy(images)
    if t.ndim == 1 + info.spatial_dims:
        return t.unsqueeze(1)
    return t.movedim(-1, 1)


def _select(
    labels: np.ndarray, info: DatasetInfo, subset: int | None, per_class: int | None, seed: int
) -> np.ndarray | None:
    """Indices of the requested subset, or None for the whole split."""
    if subset is not None and per_class is not None:
        raise DataFileError("choose either a subset of the first n samples or n per class, not both")
    if subset is not None:
        if subset <= 0:
            raise DataFileError(f"subset size must be positive, got {subset}")
        if subset > len(labels):  # never shrunk silently: a run of "subset 1000" on 40 images misleads
            raise DataFileError(f"subset {subset} is more than the {len(labels)} samples of the split")
        return np.arange(subset)
    if per_class is not None:
        if per_class <= 0:
            raise DataFileError(f"per-class subset size must be positive, got {per_class}")
        if info.is_multilabel:
            raise DataFileError(f"{info.flag} is multi-label: a per-class subset is undefined; use a plain subset")
        rng = np.random.default_rng(seed)
        flat = labels[:, 0]
        picks = [rng.permutation(np.flatnonzero(flat == k))[:per_class] for k in range(info.n_classes)]
        return np.sort(np.concatenate(picks))
    return None


def load_split(
    dataset: str | DatasetInfo,
    split: str = "train",
    size: int = 28,
    root: str | os.PathLike[str] | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
    as_rgb: bool = False,
    subset: int | None = None,
    per_class: int | None = None,
    seed: int = 0,
    mmap: bool | None = None,
) -> SplitData:
    """Load one split as uint8 (N, C, H, W) (3D: (N, C, D, H, W)) and int64 (N, L) tensors.

    `path` overrides the file location (e.g. an expanded training npz). `mmap=None` memory-maps
    128/224 px files through the `.npy` cache and reads smaller ones (every 3D file) into RAM;
    `mmap=True` memory-maps any file, 3D included. `subset` keeps the
    first n samples; `per_class` draws n per class with `seed` (all of a class that has fewer).
    """
    info = dataset if isinstance(dataset, DatasetInfo) else get_dataset(dataset)
    if split not in SPLITS:
        raise DataFileError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
    info.check_size(size)
    file = Path(path) if path is not None else data_path(info, size, root)
    use_mmap = size in MMAP_SIZES if mmap is None else mmap
    user = path is not None
    with open_npz(file, info, size, user=user) as npz:
        meta = read_meta(npz, file)
        official = is_official(npz)
        labels = read_member(npz, f"{split}_labels", file, user)
        if use_mmap:
            require_key(npz, f"{split}_images", file)
            c_dir = cache_dir(info, size, root if path is None else file.parent)
            if path is not None:
                c_dir = c_dir.with_name(f"{c_dir.name}_{file.stem}")
            images = _cached_member(file, f"{split}_images", c_dir)
        else:
            images = read_member(npz, f"{split}_images", file, user)
    validate_split(info, size, split, images, labels, file, official=official)
    idx = _select(labels, info, subset, per_class, seed)
    if idx is not None:
        images, labels = images[idx], labels[idx]  # a copy: subsets are small by intent
    x = _to_channels_first(images, info)
    if as_rgb and x.shape[1] == 1:
        x = x.expand(-1, 3, *x.shape[2:])
    if not use_mmap:
        x = x.contiguous()
    y = torch.from_numpy(labels.astype(np.int64))
    meta = {**meta, "memory_mapped": bool(use_mmap and idx is None)}
    return SplitData(info=info, split=split, size=size, images=x, labels=y, source=file, meta=meta)


def load_all(
    dataset: str | DatasetInfo, size: int = 28, root: str | os.PathLike[str] | None = None, **kw
) -> dict[str, SplitData]:
    return {s: load_split(dataset, s, size, root, **kw) for s in SPLITS}
