"""MedMNIST data layer: dataset registry, root folder, downloads, loading and validation."""

from medmnist_lab.data.arrays import SplitData, load_split
from medmnist_lab.data.paths import data_path, resolve_root
from medmnist_lab.data.registry import SIZES, SPLITS, DatasetInfo, get_dataset, list_datasets

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
