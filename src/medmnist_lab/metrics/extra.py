"""Metrics beyond the official two: per-class precision/recall/F1, confusion matrix, balanced
accuracy, macro-F1 and expected calibration error, as a JSON-serialisable dict.

Predictions follow the official ACC: argmax for multi-class/ordinal, score of the last column
> 0.5 for binary, each label's probability > 0.5 for multi-label. Undefined ratios (a class never
predicted or never present) count as 0.0, scikit-learn's `zero_division=0` convention, so the
dict holds no NaN (which is not valid JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.metrics.official import MULTI_LABEL, THRESHOLD, check_task

ECE_BINS = 15


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, ...]:
    precision = np.array([_ratio(a, a + b) for a, b in zip(tp, fp, strict=True)])
    recall = np.array([_ratio(a, a + b) for a, b in zip(tp, fn, strict=True)])
    f1 = np.array([_ratio(2 * p * r, p + r) for p, r in zip(precision, recall, strict=True)])
    return precision, recall, f1


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> dict[str, Any]:
    """Expected calibration error over equal-width bins (lo, hi] of `confidence` in [0, 1].

    ECE = sum_b (n_b / N) * |accuracy_b - confidence_b|. Empty bins report None.
    """
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=np.float64).ravel()
    idx = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(idx, minlength=bins)
    conf_sum = np.bincount(idx, weights=confidence, minlength=bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=bins)
    nonempty = counts > 0
    mean_conf = np.divide(conf_sum, counts, out=np.zeros(bins), where=nonempty)
    mean_acc = np.divide(acc_sum, counts, out=np.zeros(bins), where=nonempty)
    ece = float(np.sum(counts * np.abs(mean_acc - mean_conf)) / max(len(confidence), 1))
    return {
        "ece": ece,
        "bins": bins,
        "bin_count": counts.tolist(),
        "bin_confidence": [float(c) if n else None for c, n in zip(mean_conf, counts, strict=True)],
        "bin_accuracy": [float(a) if n else None for a, n in zip(mean_acc, counts, strict=True)],
    }


def _per_class(
    names: Sequence[str], p: np.ndarray, r: np.ndarray, f: np.ndarray, support: np.ndarray
) -> dict[str, dict[str, float | int]]:
    return {
        name: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }


def _single_label_probs(y_score: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    """(N, n_classes) probabilities; a binary score of one column p becomes [1 - p, p]."""
    if task == "binary-class":
        if n_classes != 2:
            raise MedMNISTLabError(f"a binary task needs 2 label names, got {n_classes}")
        p = y_score[:, -1] if y_score.ndim == 2 else y_score
        return np.stack([1.0 - p, p], axis=1)
    if y_score.ndim != 2 or y_score.shape[1] != n_classes:
        raise MedMNISTLabError(f"y_score must be (N, {n_classes}) for {n_classes} classes, got {y_score.shape}")
    return y_score


def _single_label(y_true: np.ndarray, y_score: np.ndarray, task: str, names: Sequence[str]) -> dict[str, Any]:
    n = len(names)
    y = y_true.reshape(-1).astype(np.int64)
    if y.size != y_score.shape[0]:
        raise MedMNISTLabError(f"y_true has {y.size} labels but y_score has {y_score.shape[0]} rows")
    if y.size and (y.min() < 0 or y.max() >= n):
        raise MedMNISTLabError(f"labels must lie in 0..{n - 1} for {n} label names")
    probs = _single_label_probs(y_score, task, n)
    # Binary: last column > 0.5, as the official ACC (equal to argmax except at exactly 0.5).
    pred = (probs[:, 1] > THRESHOLD).astype(np.int64) if task == "binary-class" else probs.argmax(1)
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    precision, recall, f1 = _prf(tp, cm.sum(axis=0) - tp, support - tp)
    present = support > 0
    return {
        "per_class": _per_class(names, precision, recall, f1, support),
        "confusion_matrix": cm.tolist(),  # rows: true class, columns: predicted class
        # Mean recall over the classes present in y_true, as sklearn's balanced_accuracy_score.
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1.mean()),
        "calibration": calibration(probs.max(axis=1), pred == y),
    }


def _multi_label(y_true: np.ndarray, y_score: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    if y_true.shape != y_score.shape or y_true.ndim != 2 or y_true.shape[1] != len(names):
        raise MedMNISTLabError(
            f"multi-label y_true {y_true.shape} and y_score {y_score.shape} must both be (N, {len(names)})"
        )
    y = y_true.astype(bool)
    pred = y_score > THRESHOLD
    tp = (y & pred).sum(0)
    fp = (~y & pred).sum(0)
    fn = (y & ~pred).sum(0)
    tn = (~y & ~pred).sum(0)
    precision, recall, f1 = _prf(tp, fp, fn)
    specificity = np.array([_ratio(a, a + b) for a, b in zip(tn, fp, strict=True)])
    # Per label, the mean of the recalls of the sides (positive, negative) present in y_true.
    recalls = np.stack([recall, specificity])  # (2, L)
    present = np.stack([tp + fn, tn + fp]) > 0
    balanced = (recalls * present).sum(0) / np.maximum(present.sum(0), 1)
    return {
        "per_class": _per_class(names, precision, recall, f1, tp + fn),
        # Per label [[tn, fp], [fn, tp]], the layout of sklearn's multilabel_confusion_matrix.
        "confusion_matrices": {
            name: [[int(tn[i]), int(fp[i])], [int(fn[i]), int(tp[i])]] for i, name in enumerate(names)
        },
        "balanced_accuracy": float(np.mean(balanced)),
        "macro_f1": float(f1.mean()),
        # Each (sample, label) probability against that label's truth: a reliability diagram of
        # the per-label probabilities.
        "calibration": calibration(y_score, y),
    }


def extra_metrics(y_true: np.ndarray, y_score: np.ndarray, task: str, label_names: Sequence[str]) -> dict[str, Any]:
    """Per-class precision/recall/F1/support, confusion matrix (per label for multi-label),
    balanced accuracy, macro-F1 and 15-bin ECE; every value is JSON-serialisable."""
    check_task(task)
    y_true, y_score = np.asarray(y_true), np.asarray(y_score, dtype=np.float64)
    names = [str(n) for n in label_names]
    if len(set(names)) != len(names):
        raise MedMNISTLabError(f"label names must be distinct, got {names}")
    body = _multi_label(y_true, y_score, names) if task == MULTI_LABEL else _single_label(y_true, y_score, task, names)
    out: dict[str, Any] = {"task": task, "n_samples": int(y_score.shape[0]), "labels": names}
    out.update(body)
    out["ece"] = body["calibration"]["ece"]
    return out
