"""Typed records of GAN runs and GAN evaluations, as written to JSON.

- `GANRunSummary`: a finished GAN run's summary.json (its presence means "finished").
- `GANQuality`: what `evaluate_gan` measured, written as quality.json; its parts are
  `FIDReport`, `PrecisionRecall`, `DiversityReport`, `MemorizationReport`, `CASResult` and
  `FeatureExtractorInfo`.

Both files are written and read only through these classes: `to_dict`/`from_dict` (with a
`format` and `version` key), `write` (atomic) and `read` (user-facing errors). Like the engine's
`RunSummary`, nothing here imports torch, so stores and reports can read the files without the
training stack.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from medmnist_lab.engine.summary import SplitMetrics
from medmnist_lab.records import SummaryError, check_header, read_record, write_json

__all__ = [
    "CASResult",
    "DiversityReport",
    "FIDReport",
    "FeatureExtractorInfo",
    "GANEpochStats",
    "GANQuality",
    "GANRunSummary",
    "MemorizationReport",
    "PrecisionRecall",
    "SummaryError",
]


# --- reading and writing ---------------------------------------------------------------------


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)  # json.dumps writes NaN; other writers write null


# --- GAN run summary -------------------------------------------------------------------------


@dataclass(frozen=True)
class GANEpochStats:
    """One epoch of GAN training: a line of history.jsonl. `epoch` is 0-based, as in the
    classifier engine; the losses and mean D outputs are averages over the epoch's images."""

    epoch: int
    loss_d: float
    loss_g: float
    d_real: float  # mean D(x) (after the sigmoid)
    d_fake: float  # mean D(G(z))
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GANEpochStats:
        return cls(
            int(data["epoch"]),
            *(_float(data[k]) for k in ("loss_d", "loss_g", "d_real", "d_fake", "seconds")),
        )


RUN_FORMAT = "medmnist-lab/gan-run-summary"
RUN_VERSION = 1


@dataclass(frozen=True)
class GANRunSummary:
    run: str  # the run folder's name
    dataset: str
    size: int
    mode: str
    loss: str
    seed: int
    epochs: int  # epochs trained in all (the last one's index is epochs - 1)
    final: GANEpochStats  # the last epoch's losses and D outputs
    wall_seconds: float  # training time, summed over resumed parts
    class_counts: list[int]  # real training images per class
    device: str
    precision: str  # "fp32", "bfloat16" or "float16" (the engine's resolve_precision)
    spec: dict[str, Any]  # GANSpec.to_dict(): enough to rebuild the nets
    config: dict[str, Any]  # GANConfig.to_dict()
    resumed_from_epoch: int | None = None  # first epoch of the last resumed part (0-based)
    versions: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    git_commit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": RUN_FORMAT, "version": RUN_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if f.name == "final" else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GANRunSummary:
        check_header(data, RUN_FORMAT, RUN_VERSION, "GAN run summary")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["final"] = GANEpochStats.from_dict(values["final"])
        return cls(**values)

    def write(self, path: str | os.PathLike[str]) -> Path:
        return write_json(self.to_dict(), path)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> GANRunSummary:
        """A summary.json, or a GAN run folder holding one."""
        what = "GAN run summary"
        return read_record(cls, path, "summary.json", what, "the GAN run has not finished (or this is no run folder)")


# --- GAN quality -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FIDReport:
    """FID of generated vs real-train features, with the real test set's FID as the floor.
    FID grows as n shrinks, so only values at equal n compare: `generated_vs_train_at_test_n`
    (None when fewer images were generated than the test set has) next to `test_vs_train`."""

    generated_vs_train: float
    n_generated: int
    test_n: int
    generated_vs_train_at_test_n: float | None
    test_vs_train: float | None  # None with fewer than 2 test images

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FIDReport:
        return cls(
            _float(data["generated_vs_train"]),
            int(data["n_generated"]),
            int(data["test_n"]),
            _opt_float(data.get("generated_vs_train_at_test_n")),
            _opt_float(data.get("test_vs_train")),
        )


@dataclass(frozen=True)
class PrecisionRecall:
    """k-NN precision (fidelity) and recall (coverage), and the real test set's as reference."""

    k: int
    precision: float
    recall: float
    test_precision: float
    test_recall: float

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrecisionRecall:
        keys = ("precision", "recall", "test_precision", "test_recall")
        return cls(int(data["k"]), *(_float(data[k]) for k in keys))


@dataclass(frozen=True)
class DiversityReport:
    spread_ratio: float  # mean pairwise distance, generated / real
    dup_share_fake: float  # share of generated samples with a near-duplicate among generated
    dup_share_real: float  # the same on the real set, as a baseline
    dup_threshold: float
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiversityReport:
        keys = ("spread_ratio", "dup_share_fake", "dup_share_real", "dup_threshold")
        return cls(*(_float(data[k]) for k in keys), list(data.get("warnings", [])))


@dataclass(frozen=True)
class MemorizationReport:
    """Median distance of generated images to their nearest training image, over the same for
    real test images: a ratio well below 1 means the GAN copies its training images."""

    median_nn_to_train_generated: float
    median_nn_to_train_test: float
    ratio: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemorizationReport:
        keys = ("median_nn_to_train_generated", "median_nn_to_train_test", "ratio")
        return cls(*(_float(data[k]) for k in keys), list(data.get("warnings", [])))  # version 0: none kept


@dataclass(frozen=True)
class CASResult:
    """Classification accuracy score: the same recipe trained on generated and on real images,
    both tested on the real test split (official AUC/ACC)."""

    synthetic_trained: SplitMetrics
    real_trained: SplitMetrics
    n_synthetic: int
    recipe: str
    model: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "synthetic_trained": self.synthetic_trained.to_dict(),
            "real_trained": self.real_trained.to_dict(),
            "n_synthetic": self.n_synthetic,
            "recipe": self.recipe,
            "model": self.model,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CASResult:
        return cls(
            SplitMetrics.from_dict(data["synthetic_trained"]),
            SplitMetrics.from_dict(data["real_trained"]),
            int(data["n_synthetic"]),
            str(data["recipe"]),
            str(data["model"]),
        )


@dataclass(frozen=True)
class FeatureExtractorInfo:
    """The classifier whose features the metrics use: `source` "default" (trained and cached
    by `gan evaluate`, with its val/test metrics) or "user" (a checkpoint given with --classifier)."""

    source: str
    model: str | None
    width: int | None
    checkpoint: str | None = None
    epoch: int | None = None
    test: SplitMetrics | None = None
    val: SplitMetrics | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in ("source", "checkpoint", "model", "width", "epoch")}
        for split in ("test", "val"):
            metrics = getattr(self, split)
            if metrics is not None:
                out[split] = metrics.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureExtractorInfo:
        def split(name: str) -> SplitMetrics | None:
            return SplitMetrics.from_dict(data[name]) if data.get(name) is not None else None

        return cls(
            str(data["source"]),
            data.get("model"),
            data.get("width"),
            data.get("checkpoint"),
            data.get("epoch"),
            split("test"),
            split("val"),
        )


QUALITY_FORMAT = "medmnist-lab/gan-quality"
QUALITY_VERSION = 1  # version 0: the first version's quality.json, without format key


@dataclass(frozen=True)
class GANQuality:
    """What `evaluate_gan` measured. In JSON, the per-class FIDs and diversity reports sit inside
    "fid" and "diversity" (as "per_class", next to the overall values under "all" for diversity),
    the layout of the first version's quality.json."""

    checkpoint: str
    dataset: str
    size: int
    mode: str
    epoch: int  # the GAN's last finished epoch (0-based)
    seed: int
    n_generated: int
    counts: list[int]  # generated images per class
    feature_extractor: FeatureExtractorInfo
    fid: FIDReport
    fid_per_class: dict[str, FIDReport]  # class name -> FID (classes with too few images left out)
    precision_recall: PrecisionRecall
    diversity: DiversityReport
    diversity_per_class: dict[str, DiversityReport]
    memorization: MemorizationReport
    warnings: list[str]  # all warnings: diversity (overall and per class) and memorization
    cas: CASResult | None = None  # None when skipped (--no-cas)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": QUALITY_FORMAT, "version": QUALITY_VERSION}
        for name in ("checkpoint", "dataset", "size", "mode", "epoch", "seed", "n_generated", "counts"):
            out[name] = getattr(self, name)
        out["feature_extractor"] = self.feature_extractor.to_dict()
        out["fid"] = {**self.fid.to_dict(), "per_class": {k: v.to_dict() for k, v in self.fid_per_class.items()}}
        out["precision_recall"] = self.precision_recall.to_dict()
        out["diversity"] = {
            "all": self.diversity.to_dict(),
            "per_class": {k: v.to_dict() for k, v in self.diversity_per_class.items()},
        }
        out["memorization"] = self.memorization.to_dict()
        out["warnings"] = list(self.warnings)
        if self.cas is not None:
            out["cas"] = self.cas.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GANQuality:
        version = check_header(data, QUALITY_FORMAT, QUALITY_VERSION, "GAN quality record")
        fid, div = data["fid"], data["diversity"]
        # Version 0 came from version-1 GAN checkpoints, which counted epochs from 1.
        epoch = int(data["epoch"]) - (1 if version == 0 else 0)
        return cls(
            checkpoint=str(data["checkpoint"]),
            dataset=str(data["dataset"]),
            size=int(data["size"]),
            mode=str(data["mode"]),
            epoch=epoch,
            seed=int(data.get("seed", 0)),  # version 0 did not record it
            n_generated=int(data["n_generated"]),
            counts=[int(c) for c in data["counts"]],
            feature_extractor=FeatureExtractorInfo.from_dict(data["feature_extractor"]),
            fid=FIDReport.from_dict(fid),
            fid_per_class={k: FIDReport.from_dict(v) for k, v in fid.get("per_class", {}).items()},
            precision_recall=PrecisionRecall.from_dict(data["precision_recall"]),
            diversity=DiversityReport.from_dict(div["all"]),
            diversity_per_class={k: DiversityReport.from_dict(v) for k, v in div.get("per_class", {}).items()},
            memorization=MemorizationReport.from_dict(data["memorization"]),
            warnings=list(data.get("warnings", [])),
            cas=CASResult.from_dict(data["cas"]) if data.get("cas") is not None else None,
        )

    def write(self, path: str | os.PathLike[str]) -> Path:
        return write_json(self.to_dict(), path)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> GANQuality:
        """A quality.json, or the GAN run folder holding one."""
        what = "GAN quality record"
        hint = "the GAN has not been evaluated (`medmnist-lab gan evaluate`)"
        return read_record(cls, path, "quality.json", what, hint)
