"""Where dataset files live: `--root`, else `$MEDMNIST_ROOT`, else `~/.medmnist`.

`~/.medmnist` is the official package's default, so files a user already downloaded with it
are found without copying.
"""

from __future__ import annotations

import os
from pathlib import Path

from medmnist_lab.data.registry import DatasetInfo, list_datasets
from medmnist_lab.errors import DataFileError

ROOT_ENV = "MEDMNIST_ROOT"
MIRROR_ENV = "MEDMNIST_MIRROR"
DEFAULT_ROOT = Path("~/.medmnist")


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data folder; a path that exists but is not a folder is refused (not read as "no files")."""
    from_env = root is None or str(root) == ""
    if from_env:
        root = os.environ.get(ROOT_ENV) or DEFAULT_ROOT
    path = Path(root).expanduser()
    if path.exists() and not path.is_dir():
        where = f"${ROOT_ENV}" if from_env and os.environ.get(ROOT_ENV) else "--root"
        raise DataFileError(f"data root {path} ({where}) is a file, not a folder; give the folder of the .npz files")
    return path


def data_path(info: DatasetInfo, size: int, root: str | os.PathLike[str] | None = None) -> Path:
    return resolve_root(root) / info.filename(size)


def cache_dir(info: DatasetInfo, size: int, root: str | os.PathLike[str] | None = None) -> Path:
    """Folder of the per-split `.npy` cache used to memory-map large files."""
    return resolve_root(root) / ".npy_cache" / f"{info.flag}_{size}"


def dataset_files(root: str | os.PathLike[str] | None = None) -> set[Path]:
    """Resolved paths of every registry file (all datasets, all sizes) under the data root: the
    files an output must never replace (`outputs.check_output_file(..., protected=...)`)."""
    base = resolve_root(root).resolve()
    return {base / info.filename(size) for info in list_datasets() for size in info.sizes}
