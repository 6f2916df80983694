"""`calibrate(checkpoint)`: fit temperature or vector scaling (and, optionally, split-conformal
prediction sets) on a checkpoint's validation split, report it on val and test, and write
`calibration.json` beside the checkpoint.

The test split never influences the fit: the scaling and the conformal thresholds are computed
from the validation logits alone, and test is only scored afterwards. What the record holds:
the method and its fitted parameters, the split it was fitted on, and the checkpoint it belongs
to (its config hash, `engine.config.cell_hash`, and the SHA-256 of the file: best.pt and last.pt
of one run share a config). `load_calibration` refuses a record made for another checkpoint.

Calibration is only worth using when it carries over to data it was not fitted on, which needs
val and test to be exchangeable. The outcome's `warnings` say, in words, when it did not: a test
coverage below 1 - ALPHA by more than chance allows, or a scaling that made test (or val) NLL or
ECE worse than the raw model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medmnist_lab.engine.calibration import (
    CALIBRATION_FILE,
    FORMAT,
    checkpoint_identity,
    default_path,
    file_sha256,
    load_calibration,
    mismatch,
    read_record,
)
from medmnist_lab.engine.scoring import split_logits
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.metrics.conformal import (
    check_alpha,
    check_score,
    class_shortfalls,
    conformal_sets,
    coverage_report,
)
from medmnist_lab.metrics.official import MULTI_LABEL, scores_from_logits
from medmnist_lab.metrics.reliability import (
    SCORE_NAMES,
    calibration_scores,
    check_method,
    degenerate_fit,
    fit_scaling,
)
from medmnist_lab.outputs import OutputError, atomic_path, check_output_file

__all__ = [
    "CALIBRATION_FILE",
    "FORMAT",
    "CalibrationOutcome",
    "calibrate",
    "checkpoint_identity",
    "default_path",
    "file_sha256",
    "load_calibration",
]

FIT_SPLIT = "val"
REPORT_SPLITS: tuple[str, ...] = ("val", "test")
WORSE_CHECKED: tuple[str, ...] = ("nll", "ece")  # a scaling that makes these worse is reported


def check_output(path: Path, identity: dict[str, str], overwrite: bool, protected: Any = ()) -> None:
    """Refuse, before any work, a record that would replace an existing file without `overwrite`;
    one made for another checkpoint is named as such."""
    if path.is_file() and not overwrite:
        try:
            why = mismatch(read_record(path), identity)
        except MedMNISTLabError:
            why = None
        if why is not None:
            raise OutputError(
                f"{path} already holds a calibration of another checkpoint: {why}; pass --overwrite to replace "
                "it, or -o to write elsewhere"
            )
    check_output_file(path, overwrite=overwrite, suffixes=(".json",), protected=protected, what="calibration record")


@dataclass
class CalibrationOutcome:
    path: Path
    record: dict[str, Any]

    @property
    def warnings(self) -> list[str]:
        return self.record["warnings"]


def _worse(scores: dict[str, dict[str, dict[str, float]]], method: str) -> list[str]:
    out = []
    for split in REPORT_SPLITS:
        before, after = scores[split]["before"], scores[split]["after"]
        for key in WORSE_CHECKED:
            if after[key] > before[key] + 1e-12:
                delta = after[key] - before[key]
                out.append(
                    f"{method} scaling made {split} {SCORE_NAMES[key]} worse, not better: {before[key]:.4f} -> "
                    f"{after[key]:.4f} (+{delta:.4f}, {100 * delta / max(before[key], 1e-12):.0f}%)"
                    + ("" if split == FIT_SPLIT else f"; what was fitted on {FIT_SPLIT} does not carry over to {split}")
                )
    return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def calibrate(
    checkpoint: str | Path,
    method: str = "temperature",
    *,
    conformal: float | None = None,
    score: str = "lac",
    mondrian: bool = False,
    root: str | None = None,
    device: str | None = None,
    output: str | Path | None = None,
    overwrite: bool = False,
    seed: int = 0,
    protected: Any = (),
) -> CalibrationOutcome:
    """Fit `method` scaling (and with `conformal`=ALPHA, `score` conformal sets) on the validation
    split of `checkpoint`, score val and test before and after, write the record; see the module."""
    from medmnist_lab.engine.checkpoint import load_checkpoint

    check_method(method)
    check_score(score)
    if conformal is not None:
        check_alpha(conformal)
    elif mondrian:
        raise MedMNISTLabError("--mondrian needs --conformal ALPHA: it is a way of calibrating prediction sets")
    checkpoint = Path(checkpoint)
    state = load_checkpoint(checkpoint)
    identity = checkpoint_identity(checkpoint, state)
    path = Path(output) if output is not None else default_path(checkpoint)
    check_output(path, identity, overwrite, protected)
    config = state["config"]
    got = split_logits(checkpoint, REPORT_SPLITS, root=root, device=device)
    task = got.task
    if conformal is not None and task == MULTI_LABEL:
        raise MedMNISTLabError(
            f"--conformal is for single-label tasks; {got.config.dataset} is multi-label (a set of classes per "
            "image is not defined for it): calibrate it without --conformal"
        )
    val_logits, val_labels = got.logits[FIT_SPLIT], got.labels[FIT_SPLIT]
    scaling = fit_scaling(val_logits, val_labels, task, method)  # val only: test is scored, never fitted
    probs = {s: {"before": scores_from_logits(got.logits[s], task), "after": scaling.probabilities(got.logits[s], task)}
             for s in REPORT_SPLITS}  # fmt: skip
    scores = {s: {k: calibration_scores(p, got.labels[s], task) for k, p in probs[s].items()} for s in REPORT_SPLITS}
    warnings = degenerate_fit(scaling, got.label_names) + _worse(scores, method)
    conformal_record = None
    if conformal is not None:
        sets = conformal_sets(
            probs[FIT_SPLIT]["after"],
            val_labels,
            probs["test"]["after"],
            conformal,
            score,
            mondrian=mondrian,
            label_names=got.label_names,
            calibration_split=FIT_SPLIT,
            seed=seed,
        )
        report = coverage_report(sets.sets, got.labels["test"], conformal, got.label_names, "test")
        warnings += report["warnings"] + (class_shortfalls(report) if mondrian else [])
        conformal_record = {
            **sets.to_dict(),
            "quantiles": {k: _finite(v) for k, v in sets.thresholds.items()},
            "fitted_on": FIT_SPLIT,
            "test": {k: v for k, v in report.items() if k != "warnings"},
        }
    record = {
        "format": FORMAT,
        "checkpoint": identity["checkpoint"],
        "config_hash": identity["config_hash"],
        "checkpoint_sha256": identity["sha256"],
        "dataset": config.get("dataset"),
        "size": config.get("size"),
        "task": task,
        "label_names": list(got.label_names),
        "method": method,
        "parameters": scaling.to_dict(),
        "fitted_on": FIT_SPLIT,
        "n_fitted": len(got.labels[FIT_SPLIT]),
        "scores": {s: {**scores[s], "n": len(got.labels[s])} for s in REPORT_SPLITS},
        "conformal": conformal_record,
        "warnings": warnings,
        "status": "warning" if warnings else "ok",
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    return CalibrationOutcome(path, record)
