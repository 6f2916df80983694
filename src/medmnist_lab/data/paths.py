"""Where dataset files live: `--root`, else `$MEDMNIST_ROOT`, else `~/.medmnist`.

`~/.medmnist` is the official package's default, so files a user already downloaded with it
are found without copying.
"""

from __future__ import annotations

import os
from pathlib import Path

from medmnist_lab.data.registry import DatasetInfo

ROOT_ENV = "MEDMNIST_ROOT"
MIRROR_ENV = "MEDMNIST_MIRROR"
DEFAULT_ROOT = Path("~/.medmnist")


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    if root is None or str(root) == "":
        root = os.environ.get(ROOT_ENV) or DEFAULT_ROOT
    return Path(root).expanduser()


def data_path(info: DatasetInfo, size: int, root: str | os.PathLike[str] | None = None) -> Path:
    return resolve_root(root) / info.filename(size)


def cache_dir(info: DatasetInfo, size: int, root: str | os.PathLike[str] | None = None) -> Path:
    """Folder of the per-split `.npy` cache used to memory-map large files."""
    return resolve_root(root) / ".npy_cache" / f"{info.flag}_{size}"
