"""MedMNIST data layer: dataset registry, root folder, downloads, loading and validation.

Exports are lazy (`medmnist_lab.lazy`): the registry and paths need no torch, `load_split` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medmnist_lab.lazy import lazy_exports

if TYPE_CHECKING:
    from medmnist_lab.data.arrays import SplitData, load_split
    from medmnist_lab.data.paths import data_path, resolve_root
    from medmnist_lab.data.registry import SIZES, SPLITS, DatasetInfo, get_dataset, list_datasets

_EXPORTS = {
    "SplitData": "medmnist_lab.data.arrays",
    "load_split": "medmnist_lab.data.arrays",
    "data_path": "medmnist_lab.data.paths",
    "resolve_root": "medmnist_lab.data.paths",
    "SIZES": "medmnist_lab.data.registry",
    "SPLITS": "medmnist_lab.data.registry",
    "DatasetInfo": "medmnist_lab.data.registry",
    "get_dataset": "medmnist_lab.data.registry",
    "list_datasets": "medmnist_lab.data.registry",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = [
    "SIZES",
    "SPLITS",
    "DatasetInfo",
    "SplitData",
    "data_path",
    "get_dataset",
    "list_datasets",
    "load_split",
    "resolve_root",
]
