"""Registry of the 18 MedMNIST v2 datasets (12 2D, 6 3D), read from the official `medmnist.INFO`.

The official package is the source of truth for names, tasks, label names, split sizes,
licenses, URLs and MD5s (and so for the sizes of each dataset: 28/64/128/224 px for 2D, 28/64
for 3D); nothing here retypes those facts. Only which flags are volumes is stated here: INFO
does not say it.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from medmnist_lab.errors import DataFileError, MedMNISTLabError
from medmnist_lab.registry import Registry

SIZES: tuple[int, ...] = (28, 64, 128, 224)
SPLITS: tuple[str, ...] = ("train", "val", "test")

# The 2D datasets of MedMNIST v2: images (N, H, W) or (N, H, W, 3) on disk.
FLAGS_2D: tuple[str, ...] = (
    "pathmnist",
    "chestmnist",
    "dermamnist",
    "octmnist",
    "pneumoniamnist",
    "retinamnist",
    "breastmnist",
    "bloodmnist",
    "tissuemnist",
    "organamnist",
    "organcmnist",
    "organsmnist",
)

# The 3D datasets of MedMNIST v2: volumes (N, D, H, W) on disk, one channel, 28 and 64 px.
FLAGS_3D: tuple[str, ...] = (
    "organmnist3d",
    "nodulemnist3d",
    "adrenalmnist3d",
    "fracturemnist3d",
    "vesselmnist3d",
    "synapsemnist3d",
)

# MedMNIST v1 names (used by the seed) -> v2 flags. The v2 files differ: blank slices removed.
V1_ALIASES: dict[str, str] = {
    "organmnist_axial": "organamnist",
    "organmnist_coronal": "organcmnist",
    "organmnist_sagittal": "organsmnist",
}

TASKS: tuple[str, ...] = (
    "binary-class",
    "multi-class",
    "multi-label, binary-class",
    "ordinal-regression",
)


@dataclass(frozen=True)
class DatasetInfo:
    """Everything the project needs to know about one dataset, from `medmnist.INFO`."""

    flag: str
    python_class: str
    description: str
    task: str
    n_channels: int
    label_names: tuple[str, ...]
    n_samples: dict[str, int]
    license: str
    urls: dict[int, str]
    md5s: dict[int, str]
    spatial_dims: int = 2  # 2: images (N, C, H, W); 3: volumes (N, C, D, H, W)

    @property
    def is_3d(self) -> bool:
        return self.spatial_dims == 3

    def spatial_shape(self, size: int) -> tuple[int, ...]:
        """Spatial shape of one sample: (size, size), or (size, size, size) for a volume."""
        return (size,) * self.spatial_dims

    @property
    def n_classes(self) -> int:
        """Number of output units: classes, or labels for multi-label."""
        return len(self.label_names)

    @property
    def is_multilabel(self) -> bool:
        return self.task == "multi-label, binary-class"

    @property
    def label_width(self) -> int:
        """Columns in the label array: one per label for multi-label, else 1."""
        return self.n_classes if self.is_multilabel else 1

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(s for s in SIZES if s in self.urls)

    def filename(self, size: int) -> str:
        """Official file name: `{flag}.npz` for 28 px, `{flag}_{size}.npz` otherwise."""
        self.check_size(size)
        return f"{self.flag}.npz" if size == 28 else f"{self.flag}_{size}.npz"

    def check_size(self, size: int) -> None:
        if size not in self.urls:
            valid = ", ".join(str(s) for s in self.sizes)
            raise DataFileError(f"size {size} is not available for {self.flag}; choose one of: {valid}")


def _from_info(flag: str, info: dict, spatial_dims: int = 2) -> DatasetInfo:
    urls: dict[int, str] = {}
    md5s: dict[int, str] = {}
    for size in SIZES:
        suffix = "" if size == 28 else f"_{size}"
        if f"url{suffix}" in info and f"MD5{suffix}" in info:
            urls[size] = info[f"url{suffix}"]
            md5s[size] = info[f"MD5{suffix}"]
    labels = info["label"]
    return DatasetInfo(
        flag=flag,
        python_class=info["python_class"],
        description=info["description"],
        task=info["task"],
        n_channels=int(info["n_channels"]),
        label_names=tuple(labels[str(i)] for i in range(len(labels))),
        n_samples={k: int(v) for k, v in info["n_samples"].items()},
        license=info["license"],
        urls=urls,
        md5s=md5s,
        spatial_dims=spatial_dims,
    )


def _official_info() -> dict[str, Any]:
    """The official `medmnist.info.INFO` table, read from that one file: `import medmnist.info`
    would first run the package's `__init__`, which imports torch and every dataset class
    (seconds at the start of every command, `--help` included)."""
    if "medmnist.info" in sys.modules:
        return sys.modules["medmnist.info"].INFO
    spec = importlib.util.find_spec("medmnist")
    if spec is None or not spec.submodule_search_locations:
        raise MedMNISTLabError("the `medmnist` package is not installed; `pip install medmnist`")
    path = Path(next(iter(spec.submodule_search_locations))) / "info.py"
    file_spec = importlib.util.spec_from_file_location("_medmnist_info", path)
    assert file_spec is not None and file_spec.loader is not None
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    return module.INFO


@cache
def _registry() -> Registry[DatasetInfo]:
    INFO = _official_info()
    reg: Registry[DatasetInfo] = Registry("dataset")
    for flag in FLAGS_2D:
        aliases = tuple(a for a, f in V1_ALIASES.items() if f == flag)
        reg.add(flag, _from_info(flag, INFO[flag]), aliases=aliases)
    for flag in FLAGS_3D:
        reg.add(flag, _from_info(flag, INFO[flag], spatial_dims=3))
    return reg


def get_dataset(name: str, *, warn_alias: bool = True) -> DatasetInfo:
    """Look a dataset up by v2 flag or v1 alias (case-insensitive)."""
    reg = _registry()
    info = reg.get(name)
    if warn_alias and reg.is_alias(name):
        print(
            f"note: '{name}' is the MedMNIST v1 name of '{info.flag}'; the v2 files differ "
            "(blank slices removed), so numbers are not comparable with v1 results",
            file=sys.stderr,
        )
    return info


def list_datasets() -> list[DatasetInfo]:
    reg = _registry()
    return [reg.get(flag) for flag in reg]


CITATION = (
    "Jiancheng Yang, Rui Shi, Donglai Wei, Zequan Liu, Lin Zhao, Bilian Ke, Hanspeter Pfister, "
    "Bingbing Ni. MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D biomedical "
    "image classification. Scientific Data, 2023."
)
