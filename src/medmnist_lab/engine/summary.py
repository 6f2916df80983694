"""`RunSummary`: what a finished run records in summary.json, as a typed record.

summary.json is written and read only through this class. Its JSON keeps the shape of the first
version (which had no format key: read as version 0), plus `format`, `version` and, from version
1, the resolved `config`. Nothing here imports torch, so stores and reports can read summaries
without the training stack.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from medmnist_lab.records import SummaryError, check_header, read_record, write_json

__all__ = ["FORMAT", "VERSION", "RunSummary", "SplitMetrics", "SummaryError"]

FORMAT = "medmnist-lab/run-summary"
VERSION = 1
REQUIRED = ("run", "dataset", "size", "model", "metrics", "best_epoch", "epochs")


@dataclass(frozen=True)
class SplitMetrics:
    """Official AUC/ACC of one split, plus the extras (n_samples, labels, per-class
    precision/recall, confusion matrix, balanced accuracy, macro-F1, ECE)."""

    auc: float
    acc: float
    extras: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"auc": self.auc, "acc": self.acc, **self.extras}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitMetrics:
        rest = {k: v for k, v in data.items() if k not in ("auc", "acc")}
        return cls(_float(data["auc"]), _float(data["acc"]), rest)


def _float(v: Any) -> float:
    return float("nan") if v is None else float(v)


@dataclass(frozen=True)
class RunSummary:
    run: str
    dataset: str
    size: int
    model: str
    recipe: str
    seed: int
    best_epoch: int
    epochs: int
    metrics: dict[str, SplitMetrics]  # "train" | "val" | "test"
    wall_seconds: float
    resumed_from_epoch: int | None = None
    data: dict[str, Any] = field(default_factory=dict)  # training data provenance
    augment: Any = "none"  # "none" or the policy's describe() dict
    device: str = "cpu"
    precision: str = "fp32"  # training precision
    # Of the final scores: fp32 since scoring became explicit; None in older files, whose final scores
    # were computed in the training precision (`precision`).
    score_precision: str | None = None
    channels_last: bool = False
    versions: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    git_commit: str | None = None
    config: dict[str, Any] | None = None  # the resolved RunConfig (None in version-0 files)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": FORMAT, "version": VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = {s: m.to_dict() for s, m in value.items()} if f.name == "metrics" else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        check_header(data, FORMAT, VERSION, "run summary")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        missing = [k for k in REQUIRED if k not in values]
        if missing:
            raise SummaryError(f"run summary lacks {', '.join(missing)}")
        values.setdefault("recipe", "medmnist-v2")
        values.setdefault("seed", 0)
        values.setdefault("wall_seconds", float("nan"))
        values["metrics"] = {s: SplitMetrics.from_dict(m) for s, m in values["metrics"].items()}
        return cls(**values)

    def write(self, path: str | os.PathLike[str]) -> Path:
        return write_json(self.to_dict(), path)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> RunSummary:
        """A summary.json, or a run folder holding one."""
        hint = "the run has not finished (or this is not a run folder)"
        return read_record(cls, path, "summary.json", "run summary", hint)

    def split(self, name: str) -> SplitMetrics:
        if name not in self.metrics:
            raise SummaryError(f"run {self.run} has no {name!r} metrics; it has {', '.join(self.metrics)}")
        return self.metrics[name]
