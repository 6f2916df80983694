"""`evaluate_corruptions(checkpoint)`: a checkpoint's scores on a split under its dataset's MedMNIST-C
corruptions (`augment.corruptions`) at severities 1..5, with the paper's balanced error and, against a
baseline checkpoint, its relative balanced error (docs/robustness.md).

Each cell (corruption, severity) corrupts the split once, with a seed from (corruption, severity,
seed), and scores it exactly as `evaluate` does: the same model loading, test-time flips, calibration
(calibration.json beside the checkpoint, unless switched off) and official metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from medmnist_lab.augment.corruptions import (
    SEVERITIES,
    corrupt,
    get_corruption,
    parse_corruptions,
    parse_severities,
    seed_for,
)
from medmnist_lab.data.arrays import SplitData
from medmnist_lab.data.registry import SPLITS
from medmnist_lab.engine.calibration import Calibration, describe, find_calibration, off_record
from medmnist_lab.engine.data import load_eval_split
from medmnist_lab.engine.device import SCORE_PRECISION
from medmnist_lab.engine.inference import predict, score_split
from medmnist_lab.engine.scoring import _Scorer, _scorer
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.metrics.conformal import coverage_report
from medmnist_lab.metrics.official import scores_from_logits
from medmnist_lab.records import write_json

FORMAT, VERSION = "medmnist-lab robustness", 1
MEAN_KEYS = ("auc", "acc", "balanced_error", "ece")
CONFORMAL_KEYS = ("coverage", "set_size")  # with a conformal calibration only


@dataclass
class _Model:
    """A scorer, its calibration (or None) and the clean split it loaded."""

    checkpoint: Path
    scorer: _Scorer
    calibration: Calibration | None
    data: SplitData

    def score(self, data: SplitData) -> dict[str, float]:
        """AUC, ACC, balanced error (1 - balanced accuracy, the paper's BE) and ECE of `data`."""
        s = self.scorer
        logits = predict(s.model, data, s.config, s.device, s.scoring, s.channels_last)
        if self.calibration is not None:
            logits = self.calibration.apply(logits.cpu())
        r = score_split(logits, data, s.info)
        out = {
            "auc": float(r.metrics.auc),
            "acc": float(r.metrics.acc),
            "balanced_error": 1.0 - float(r.extras["balanced_accuracy"]),
            "ece": float(r.extras["ece"]),
        }
        if self.calibration is not None and self.calibration.conformal:
            # The clean-val conformal thresholds on corrupted images: how far the guarantee holds under shift.
            probs = scores_from_logits(logits, s.info.task)
            sets = self.calibration.sets(probs, s.info.label_names)
            report = coverage_report(sets, data.labels.numpy(), float(self.calibration.conformal["alpha"]))
            out["coverage"], out["set_size"] = report["coverage"], report["mean_set_size"]
        return out


@dataclass
class ModelRobustness:
    """One model's clean scores and its scores per cell."""

    checkpoint: Path
    calibration: dict[str, Any]
    clean: dict[str, float]
    cells: list[dict[str, Any]] = field(default_factory=list)  # corruption, severity, seed, metrics
    calibration_line: str = ""  # what the commands print about the calibration used

    @property
    def calibrated(self) -> bool:
        return bool(self.calibration.get("used"))

    def means(self) -> dict[str, dict[str, float]]:
        """Per corruption, each metric's mean over the severities scored."""
        out: dict[str, dict[str, float]] = {}
        for name in dict.fromkeys(c["corruption"] for c in self.cells):
            rows = [c for c in self.cells if c["corruption"] == name]
            out[name] = {k: float(np.mean([r[k] for r in rows])) for k in MEAN_KEYS + CONFORMAL_KEYS if k in rows[0]}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "calibration_applied": self.calibration,
            "clean": self.clean,
            "cells": self.cells,
            "mean_over_severities": self.means(),
        }


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den != 0 else None  # None: the baseline did not change (JSON has no inf)


@dataclass
class RobustnessResult:
    dataset: str
    size: int
    split: str
    seed: int
    severities: list[int]
    corruptions: list[str]
    model: ModelRobustness
    baseline: ModelRobustness | None = None

    def relative(self) -> dict[str, dict[str, float | None]] | None:
        """The paper's errors against the baseline, per corruption c (means over the severities):
        BE_c = mean BE_c,s / mean BE^base_c,s, and
        rBE_c = (mean BE_c,s - BE_clean) / (mean BE^base_c,s - BE^base_clean)."""
        if self.baseline is None:
            return None
        mine, base = self.model.means(), self.baseline.means()
        clean, base_clean = self.model.clean["balanced_error"], self.baseline.clean["balanced_error"]
        return {
            name: {
                "normalized_balanced_error": _ratio(mine[name]["balanced_error"], base[name]["balanced_error"]),
                "relative_balanced_error": _ratio(
                    mine[name]["balanced_error"] - clean, base[name]["balanced_error"] - base_clean
                ),
            }
            for name in self.corruptions
        }

    def summary(self) -> dict[str, float | None]:
        """Means over the corruptions: balanced error (BE), and with a baseline the paper's BE and rBE."""
        means = self.model.means()
        out: dict[str, float | None] = {
            "clean_balanced_error": self.model.clean["balanced_error"],
            "mean_balanced_error": float(np.mean([m["balanced_error"] for m in means.values()])),
        }
        rel = self.relative()
        if rel is not None:
            for key in ("normalized_balanced_error", "relative_balanced_error"):
                values = [r[key] for r in rel.values()]
                out[key] = None if any(v is None for v in values) else float(np.mean(values))  # type: ignore[arg-type]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "dataset": self.dataset,
            "size": self.size,
            "split": self.split,
            "seed": self.seed,
            "severities": self.severities,
            "corruptions": {
                name: {"kind": get_corruption(self.dataset, name).kind, "params": _params(self.dataset, name)}
                for name in self.corruptions
            },
            **self.model.to_dict(),
            "summary": self.summary(),
            "baseline": self.baseline.to_dict() if self.baseline is not None else None,
            "relative": self.relative(),
        }


def _params(dataset: str, name: str) -> dict[str, list[float]]:
    c = get_corruption(dataset, name)
    return {str(s): list(c.at(s)) for s in SEVERITIES}


def _load(checkpoint: str | Path, split: str, root, device, precision, tta, use_calibration) -> _Model:
    scorer = _scorer(checkpoint, root, device, precision=precision, tta=tta)
    calibration = find_calibration(checkpoint, use_calibration, scorer.state)
    return _Model(Path(checkpoint), scorer, calibration, load_eval_split(scorer.config, scorer.info, split))


def robustness_path(checkpoint: str | Path, split: str = "test") -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"robustness_{checkpoint.stem}_{split}.json")


def evaluate_corruptions(
    checkpoint: str | Path,
    corruptions: str | Sequence[str] = "all",
    severities: str | Sequence[int] = SEVERITIES,
    *,
    split: str = "test",
    seed: int = 0,
    baseline: str | Path | None = None,
    root: str | None = None,
    device: str | None = None,
    precision: str = SCORE_PRECISION,
    tta: bool = False,
    use_calibration: bool = True,
    progress: bool = False,
    on_cell: Callable[[dict[str, Any]], None] | None = None,
) -> RobustnessResult:
    """Score `checkpoint` on `split` clean and under each corruption ("all" or names of its dataset)
    at each severity; with `baseline` (a checkpoint of the same dataset and size), score that on the
    same corrupted images too, for the relative errors. Names and severities are checked before any
    model runs."""
    if split not in SPLITS:
        raise MedMNISTLabError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
    sev = parse_severities(severities)
    model = _load(checkpoint, split, root, device, precision, tta, use_calibration)
    cfg = model.scorer.config
    names = parse_corruptions(cfg.dataset, corruptions)
    models = [model]
    if baseline is not None:
        base = _load(baseline, split, root, device, precision, tta, use_calibration)
        bcfg = base.scorer.config
        if (bcfg.dataset, bcfg.size) != (cfg.dataset, cfg.size):
            raise MedMNISTLabError(
                f"baseline {baseline} is {bcfg.dataset} at {bcfg.size} px, but {checkpoint} is {cfg.dataset} at "
                f"{cfg.size} px; a baseline must be a checkpoint of the same dataset and size"
            )
        models.append(base)
    results = [
        ModelRobustness(
            m.checkpoint,
            m.calibration.to_dict() if m.calibration is not None else off_record(not use_calibration),
            m.score(m.data),
            calibration_line=describe(m.calibration, m.checkpoint, not use_calibration),
        )
        for m in models
    ]
    cells = [(name, s) for name in names for s in sev]
    for name, s in tqdm(cells, desc="corruptions", unit="cell", disable=not progress, leave=False):
        cell_seed = seed_for(name, s, seed)
        shared: dict[tuple[int, ...], SplitData] = {}  # models that load the same images share them
        for m, r in zip(models, results, strict=True):
            key = tuple(m.data.images.shape)
            if key not in shared:
                images = corrupt(m.data.images.numpy(), cfg.dataset, name, s, cell_seed)
                shared[key] = replace(m.data, images=torch.from_numpy(images), meta={})
            row = {"corruption": name, "severity": s, "seed": cell_seed, **m.score(shared[key])}
            r.cells.append(row)
        if on_cell is not None:
            on_cell(results[0].cells[-1])
    return RobustnessResult(
        cfg.dataset, cfg.size, split, seed, sev, names, results[0], results[1] if len(results) > 1 else None
    )


def save_robustness(result: RobustnessResult) -> Path:
    return write_json(result.to_dict(), robustness_path(result.model.checkpoint, result.split))
