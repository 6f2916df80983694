"""Published reference numbers that tables print next to our own results.

Each table is a CSV shipped as package data under `reference/`, copied unchanged from the project's
shared reference folder; its leading `#` lines name the source and the protocol, and become the
table's `source`. The files have different layouts, so each has its own parser that maps
rows to one key: (dataset flag, model, image size, metric) -> value.

- official: the MedMNIST v2 benchmark. Its `resnet*_224` rows are 28 px images upsampled to 224,
  not the 224 px files of MedMNIST+ that a `size=224` run here trains on: the `source` says so.
- seed: the seed report's single runs, on the MedMNIST v1 files at 28 px (v1 organ names are
  mapped to their v2 flags, so organamnist finds organmnist_axial).
- medmnist-plus: Doerrich et al.: test ACC of ResNet-18 end to end at 28 and 224 px only.
- official-script: the official training script itself, run unchanged for 100 epochs on this
  project's CPUs, several times (its seeds are not fixed): the mean of those runs, the accuracy
  anchor beside the official table's single run. Each run is a row of the file (BENCHMARKS.md).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from functools import cached_property
from importlib import resources

from medmnist_lab.data.registry import FLAGS_2D, FLAGS_3D, V1_ALIASES
from medmnist_lab.registry import Registry

Key = tuple[str, str, int, str]  # (dataset flag, model, size, metric)
Rows = Iterator[tuple[Key, float]]

_SIZED_METHOD = re.compile(r"(?P<model>.+)_(?P<size>\d+)")


def _flag(name: str) -> str:
    key = name.strip().lower()
    return V1_ALIASES.get(key, key)


class ReferenceTable:
    """One published table: `source` (its provenance) and `value(dataset, model, size, metric)`."""

    def __init__(self, name: str, filename: str, parse: Callable[[list[dict[str, str]]], Rows]) -> None:
        self.name = name
        self.filename = filename
        self._parse = parse

    @cached_property
    def _loaded(self) -> tuple[str, dict[Key, float]]:
        text = (resources.files("medmnist_lab.metrics") / "reference" / self.filename).read_text("utf-8")
        lines = text.splitlines()
        header: list[str] = []
        for line in lines:
            if not line.startswith("#"):
                break
            header.append(line.lstrip("#").strip())
        body = [line for line in lines if line.strip() and not line.startswith("#")]
        values: dict[Key, float] = {}
        for key, value in self._parse(list(csv.DictReader(io.StringIO("\n".join(body))))):
            if key[0] not in FLAGS_2D + FLAGS_3D:  # a packaging mistake, not user input
                raise ValueError(f"{self.filename}: unknown dataset '{key[0]}'")
            if key in values:
                raise ValueError(f"{self.filename}: duplicate entry for {key}")
            values[key] = value
        return " ".join(header), values

    @property
    def source(self) -> str:
        return self._loaded[0]

    def entries(self) -> list[Key]:
        return sorted(self._loaded[1])

    def value(self, dataset: str, model: str, size: int, metric: str, conv: str | None = None) -> float | None:
        """The published number, or None where the table has none (e.g. AUC in medmnist-plus).

        `dataset` may be a v2 flag or v1 name; names are case-insensitive. Volumetric models are
        looked up with their convolution type (`conv`): the official 3D rows are `resnet18_acs_28`.
        """
        model = str(model).strip().lower()
        if conv:
            model = f"{model}_{str(conv).strip().lower()}"
        try:
            key = (_flag(str(dataset)), model, int(size), str(metric).strip().lower())
        except (TypeError, ValueError):
            return None  # a size that is not a number cannot be in any table
        return self._loaded[1].get(key)


def _official(rows: list[dict[str, str]]) -> Rows:
    for row in rows:
        m = _SIZED_METHOD.fullmatch(row["method"])
        # The AutoML baselines (auto-sklearn, autokeras, google-automl-vision) ran on 28 px images.
        model, size = (m["model"], int(m["size"])) if m else (row["method"], 28)
        for metric in ("auc", "acc"):
            yield (_flag(row["dataset"]), model, size, metric), float(row[metric])


def _seed(rows: list[dict[str, str]]) -> Rows:
    for row in rows:
        for metric in ("auc", "acc"):
            yield (_flag(row["dataset"]), row["model"], 28, metric), float(row[metric])


def _medmnist_plus(rows: list[dict[str, str]]) -> Rows:
    for row in rows:
        for size in (28, 224):
            yield (_flag(row["dataset"]), "resnet18", size, "acc"), float(row[f"resnet18_e2e_{size}"])


def _official_script(rows: list[dict[str, str]]) -> Rows:
    """One row per 100-epoch run of the official script; the reference is their mean."""
    runs: dict[Key, list[float]] = {}
    for row in rows:
        for metric in ("auc", "acc"):
            key = (_flag(row["dataset"]), row["model"], int(row["size"]), metric)
            runs.setdefault(key, []).append(float(row[metric]))
    for key, values in runs.items():
        yield key, sum(values) / len(values)


REFERENCES: Registry[ReferenceTable] = Registry("reference table")
REFERENCES.add("official", ReferenceTable("official", "medmnist_v2_benchmark.csv", _official))
REFERENCES.add("seed", ReferenceTable("seed", "seed_results.csv", _seed))
REFERENCES.add("medmnist-plus", ReferenceTable("medmnist-plus", "medmnist_plus_acc.csv", _medmnist_plus))
REFERENCES.add("official-script", ReferenceTable("official-script", "official_script_runs.csv", _official_script))


def get_reference(name: str) -> ReferenceTable:
    """A reference table by name; an unknown name raises, listing the valid ones."""
    return REFERENCES.get(name)
