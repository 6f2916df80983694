"""A run's trust records as figures: calibration.json (`calibrate`), eval_*_test.json (`evaluate`:
selective prediction) and robustness_*_test.json (`evaluate --corruptions`), all beside its checkpoint.

Where a figure needs per-image numbers the records do not hold (the reliability diagrams before and
after scaling, the conformal set sizes, a full risk-coverage curve), they are computed from the run's
stored test predictions (the official CSV) and the record's parameters by the library functions
`calibrate` itself uses (`metrics.reliability`, `metrics.conformal`, `metrics.selective`); the model
is never run again. Logits are recovered from the stored probabilities: log p for softmax tasks (a
per-image constant, which temperature scaling ignores), logit p for sigmoid ones (exact). Vector
scaling of a softmax task is not invariant to that constant, so its diagrams are not redrawn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medmnist_lab.metrics.extra import calibration
from medmnist_lab.metrics.official import MULTI_LABEL
from medmnist_lab.metrics.reliability import EPS, Scaling, confidence_and_correct

CALIBRATION_FILE = "calibration.json"  # engine.calibration.CALIBRATION_FILE (not imported: torch)


@dataclass
class TrustRecords:
    calibration: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None  # the newest eval_*_test.json with selective results
    robustness: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return any(r is not None for r in (self.calibration, self.evaluation, self.robustness))


def _read(path: Path, problems: list[str], need: tuple[str, ...]) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or any(k not in data for k in need):
            raise ValueError(f"it lacks {', '.join(k for k in need if not isinstance(data, dict) or k not in data)}")
        return data
    except (OSError, ValueError) as exc:
        problems.append(f"{path.name} is unreadable ({exc}): its figures are not drawn")
        return None


def read_records(run: Path) -> TrustRecords:
    out = TrustRecords()
    if (run / CALIBRATION_FILE).is_file():
        out.calibration = _read(run / CALIBRATION_FILE, out.problems, ("parameters", "task", "scores"))
    evals = sorted(run.glob("eval_*_test.json"), key=lambda p: p.stat().st_mtime)
    for path in reversed(evals):
        record = _read(path, out.problems, ("selective",))
        if record is not None:
            out.evaluation = record
            break
    found = sorted(run.glob("robustness_*_test.json"), key=lambda p: p.stat().st_mtime)
    if found:
        out.robustness = _read(found[-1], out.problems, ("cells", "clean"))
    return out


def _logits(scores: np.ndarray, task: str) -> np.ndarray:
    p = np.clip(np.asarray(scores, dtype=np.float64), EPS, 1 - EPS)
    if task == MULTI_LABEL or p.shape[1] == 1:
        return np.log(p) - np.log1p(-p)
    return np.log(p)


def calibrated_scores(record: dict[str, Any], scores: np.ndarray) -> np.ndarray:
    """The stored raw test probabilities under the record's scaling."""
    task = record["task"]
    scaling = Scaling.from_dict(record["parameters"])
    softmax = task != MULTI_LABEL and scores.shape[1] > 1
    if softmax and scaling.method != "temperature":
        raise ValueError(
            "vector scaling of a softmax task needs the logits, which the run does not store "
            "(`evaluate CHECKPOINT` draws its calibrated reliability diagram)"
        )
    return scaling.probabilities(_logits(scores, task), task)


def reliability_pair(
    record: dict[str, Any], labels: np.ndarray, scores: np.ndarray
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The reliability bins (test) of the raw and the calibrated probabilities."""
    task = record["task"]
    out = []
    for probs in (scores, calibrated_scores(record, scores)):
        conf, correct = confidence_and_correct(probs, labels, task)
        out.append(calibration(conf, correct))
    return out[0], out[1]


def conformal_set_sizes(record: dict[str, Any], scores: np.ndarray) -> np.ndarray:
    """Each test image's prediction-set size, rebuilt as `calibrate` built it (the same thresholds,
    and for APS/RAPS the same random u: the record's seed, calibration images drawn first)."""
    from medmnist_lab.metrics.conformal import sets_from_thresholds

    c = record["conformal"]
    probs = calibrated_scores(record, scores)
    u = None
    if c.get("randomized"):
        rng = np.random.default_rng(int(c.get("seed", 0)))
        rng.random(int(c["calibration_images"]))
        u = rng.random(probs.shape[0])
    thresholds = {k: (np.inf if v is None else float(v)) for k, v in c["quantiles"].items()}
    sets = sets_from_thresholds(probs, c["score"], thresholds, record.get("label_names"), u)
    return sets.sum(axis=1)


def risk_coverage_data(
    records: TrustRecords, labels: np.ndarray | None, scores: np.ndarray | None, task: str
) -> tuple[list[float], list[float], float, str]:
    """(coverage, risk, AURC, where from): the eval record's curve, else the full curve of the stored
    predictions (calibrated ones when a calibration exists; a temperature does not reorder them)."""
    from medmnist_lab.metrics.selective import decisions, risk_coverage

    if records.evaluation is not None:
        sel = records.evaluation["selective"]
        curve = sel["risk_coverage"]
        used = (records.evaluation.get("calibration_applied") or {}).get("used")
        return (
            list(curve["coverage"]),
            list(curve["risk"]),
            float(sel["aurc"]),
            ("evaluate, calibrated" if used else "evaluate, raw model"),
        )
    if labels is None or scores is None:
        raise ValueError("no eval record and no stored test predictions")
    probs = calibrated_scores(records.calibration, scores) if records.calibration is not None else scores
    conf, correct = decisions(labels, probs, task)
    cov, risk = risk_coverage(conf, correct)
    source = "stored predictions" + (", calibrated" if records.calibration is not None else "")
    return cov.tolist(), risk.tolist(), float(risk.mean()) if risk.size else 0.0, source
