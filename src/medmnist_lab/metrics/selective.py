"""Selective prediction: answer only the images the model is most confident about.

Sorting the predictions by confidence (highest first) and keeping the top share c of them gives,
for every coverage c, the risk (error rate) on the kept ones: the risk-coverage curve. Its area
(AURC, the mean of the risk after each kept prediction) is low when the model's confidence ranks
its errors last; `acc_at` gives the accuracy when answering 90% and 80% of the images.

Single-label tasks: confidence is the top probability and a prediction is right when its class is
(the official ACC's decision). Multi-label tasks: each (image, label) decision is one prediction,
its confidence max(p, 1 - p) and right when (p > 0.5) is the label. Equal confidences are kept in
the order of the split (a stable sort), so the numbers are reproducible.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.metrics.extra import single_label_predictions
from medmnist_lab.metrics.official import MULTI_LABEL, THRESHOLD, check_task

COVERAGES: tuple[float, ...] = (0.9, 0.8)
CURVE_POINTS = 20  # coverages 0.05, 0.10, ..., 1.00 in the record


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, risk) after keeping the k most confident predictions, k = 1..N."""
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    right = np.asarray(correct, dtype=np.float64).ravel()
    if conf.size != right.size:
        raise MedMNISTLabError(f"{conf.size} confidences but {right.size} correctness values")
    order = np.argsort(-conf, kind="stable")
    kept = np.arange(1, conf.size + 1)
    risk = np.cumsum(1.0 - right[order]) / kept
    return kept / max(conf.size, 1), risk


def _risk_at(risk: np.ndarray, coverage: float) -> float:
    """The risk on the ceil(coverage * N) most confident predictions, from `risk_coverage`'s risks."""
    return float(risk[max(1, math.ceil(coverage * risk.size - 1e-9)) - 1])


def aurc(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Area under the risk-coverage curve: the mean risk over k = 1..N kept predictions."""
    _, risk = risk_coverage(confidence, correct)
    return float(risk.mean()) if risk.size else 0.0


def accuracy_at(confidence: np.ndarray, correct: np.ndarray, coverage: float) -> float:
    """Accuracy on the ceil(coverage * N) most confident predictions."""
    if not 0.0 < coverage <= 1.0:
        raise MedMNISTLabError(f"coverage must lie in (0, 1], got {coverage}")
    _, risk = risk_coverage(confidence, correct)
    return 1.0 - _risk_at(risk, coverage) if risk.size else 0.0


def decisions(y_true: np.ndarray, y_score: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) of each prediction of a task's probabilities (see the module doc)."""
    check_task(task)
    s = np.asarray(y_score, dtype=np.float64)
    if task == MULTI_LABEL:
        y = np.asarray(y_true).astype(bool)
        return np.maximum(s, 1.0 - s).ravel(), ((s > THRESHOLD) == y).ravel()
    y = np.asarray(y_true).reshape(-1).astype(np.int64)
    pred = single_label_predictions(s, task)
    if task == "binary-class":
        p = s[:, -1] if s.ndim == 2 else s
        conf = np.maximum(p, 1.0 - p)
    else:
        conf = s.max(axis=1)
    return conf, pred == y


def selective_metrics(y_true: np.ndarray, y_score: np.ndarray, task: str) -> dict[str, Any]:
    """AURC, accuracy at 90% and 80% coverage, and the risk-coverage curve at 20 coverages."""
    conf, right = decisions(y_true, y_score, task)
    _, risk = risk_coverage(conf, right)  # sorted once; every number below is read off it
    n = risk.size
    grid = [round((i + 1) / CURVE_POINTS, 4) for i in range(CURVE_POINTS)]
    curve = [_risk_at(risk, c) for c in grid] if n else []
    return {
        "aurc": float(risk.mean()) if n else 0.0,
        "acc_at_coverage": {f"{c:g}": 1.0 - _risk_at(risk, c) if n else 0.0 for c in COVERAGES},
        "risk_coverage": {"coverage": grid, "risk": curve},
        "n_predictions": int(n),
    }
