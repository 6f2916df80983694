"""Check local dataset files against the registry: MD5, then (deep) the arrays themselves.

The deep check streams every archive member to its end, so a truncated or bit-flipped member
fails its CRC, but never holds an image array in memory (PathMNIST-224 is ~16 GB): shapes and
dtypes come from the `.npy` headers and are checked by the same `validate_split` as loading.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.lib import format as npy_format

from medmnist_lab.data.arrays import (
    CorruptFileError,
    is_official,
    open_npz,
    read_member,
    require_key,
    validate_split,
)
from medmnist_lab.data.registry import SPLITS, DatasetInfo
from medmnist_lab.errors import DataFileError

Status = Literal["ok", "missing", "corrupt", "invalid"]
_CHUNK = 4 << 20


@dataclass(frozen=True)
class VerifyResult:
    """`corrupt`: unreadable, or not byte-identical to the official file (MD5).
    `invalid`: readable, but keys/shape/dtype/counts/labels disagree with the registry."""

    status: Status
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def md5sum(path: str | os.PathLike[str], chunk: int = _CHUNK) -> str:
    """MD5 hex digest of a file, read in chunks (files can be many GB)."""
    digest = hashlib.md5(usedforsecurity=False)  # an integrity check, not security
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _stream_header(zf: zipfile.ZipFile, key: str, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an npz member, reading (and discarding) it to the end for the CRC."""
    try:
        with zf.open(f"{key}.npy") as f:
            version = npy_format.read_magic(f)
            read_header = {
                (1, 0): npy_format.read_array_header_1_0,
                (2, 0): npy_format.read_array_header_2_0,
            }.get(version)
            if read_header is None:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = read_header(f)
            if dtype.hasobject:
                raise DataFileError(f"{path}: '{key}' holds Python objects, not numbers")
            got = 0
            while block := f.read(_CHUNK):
                got += len(block)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        raise CorruptFileError(f"{path}: array '{key}' is truncated or corrupt ({exc})") from None
    want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if got != want:
        raise CorruptFileError(f"{path}: array '{key}' holds {got} bytes of data, its header promises {want}")
    return tuple(shape), dtype


def check_arrays(info: DatasetInfo, size: int, path: Path) -> None:
    """Raise a `DataFileError` (a `CorruptFileError` if unreadable) for anything loading would
    reject, checking every split, without loading the images."""
    with open_npz(path, info, size) as npz:
        official = is_official(npz)
        for split in SPLITS:
            labels = read_member(npz, f"{split}_labels", path)
            require_key(npz, f"{split}_images", path)
            shape, dtype = _stream_header(npz.zip, f"{split}_images", path)
            # A zero-stride stand-in with the member's shape and dtype: no memory, same checks.
            images = np.broadcast_to(np.zeros((), dtype=dtype), shape)
            validate_split(info, size, split, images, labels, path, official=official)


def verify_file(info: DatasetInfo, size: int, path: str | os.PathLike[str], deep: bool = True) -> VerifyResult:
    """Check one file: MD5 against the registry, and with `deep` every split's arrays."""
    path = Path(path)
    info.check_size(size)
    if not path.is_file():
        return VerifyResult("missing", f"{path} does not exist")
    expected = info.md5s[size]
    actual = md5sum(path)
    redo = (
        f"re-download it with `medmnist-lab datasets download {info.flag}"
        f"{'' if size == 28 else f' --size {size}'} --root {path.parent} --force`"
    )
    md5_note = f"MD5 {actual} differs from the official {expected}; {redo}"
    problem: DataFileError | None = None
    if deep:
        try:
            check_arrays(info, size, path)
        except DataFileError as exc:
            problem = exc
    if isinstance(problem, CorruptFileError):
        return VerifyResult("corrupt", f"{problem}; {md5_note if actual != expected else redo}")
    if problem is not None:
        extra = f" ({md5_note})" if actual != expected else " (the MD5 matches the registry)"
        return VerifyResult("invalid", f"{problem}{extra}")
    if actual != expected:
        return VerifyResult("corrupt", md5_note)
    return VerifyResult("ok", f"MD5 {actual}" + (", all splits valid" if deep else ""))
