"""Metrics beyond the official two: per-class precision/recall/F1/specificity, confusion matrix,
balanced accuracy, macro-F1, Matthews correlation (MCC), mean specificity and expected
calibration error, as a JSON-serialisable dict. The counts and ratios are scikit-learn's
(`precision_recall_fscore_support`, `confusion_matrix`, `multilabel_confusion_matrix`,
`balanced_accuracy_score`, `matthews_corrcoef`); specificity, TN / (TN + FP) of each class
against the rest, is read off their confusion matrices.

Predictions follow the official ACC: argmax for multi-class/ordinal, score of the last column
> 0.5 for binary, each label's probability > 0.5 for multi-label. Undefined ratios (a class never
predicted or never present) count as 0.0, scikit-learn's `zero_division=0` convention, so the
dict holds no NaN (which is not valid JSON).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    matthews_corrcoef,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
)

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.metrics.official import MULTI_LABEL, THRESHOLD, check_task

ECE_BINS = 15


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


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
    names: Sequence[str], p: np.ndarray, r: np.ndarray, f: np.ndarray, spec: np.ndarray, support: np.ndarray
) -> dict[str, dict[str, float | int]]:
    return {
        name: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "specificity": float(spec[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }


def _specificity(tn: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """TN / (TN + FP) per class (one class against the rest), 0.0 where undefined."""
    return np.array([_ratio(a, a + b) for a, b in zip(tn, fp, strict=True)])


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


def single_label_predictions(y_score: np.ndarray, task: str) -> np.ndarray:
    """The official ACC's decision: last column > 0.5 for binary (equal to argmax except at exactly
    0.5), argmax for multi-class and ordinal."""
    if task == "binary-class":
        p = y_score[:, -1] if y_score.ndim == 2 else y_score
        return (p > THRESHOLD).astype(np.int64)
    return y_score.argmax(1)


def _single_label(y_true: np.ndarray, y_score: np.ndarray, task: str, names: Sequence[str]) -> dict[str, Any]:
    n = len(names)
    y = y_true.reshape(-1).astype(np.int64)
    if y.size != y_score.shape[0]:
        raise MedMNISTLabError(f"y_true has {y.size} labels but y_score has {y_score.shape[0]} rows")
    if y.size and (y.min() < 0 or y.max() >= n):
        raise MedMNISTLabError(f"labels must lie in 0..{n - 1} for {n} label names")
    probs = _single_label_probs(y_score, task, n)
    pred = single_label_predictions(probs, task)
    labels = list(range(n))
    cm = confusion_matrix(y, pred, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0.0)
    tp, fp, fn = np.diag(cm), cm.sum(axis=0) - np.diag(cm), cm.sum(axis=1) - np.diag(cm)
    specificity = _specificity(cm.sum() - tp - fp - fn, fp)
    with warnings.catch_warnings():  # a class predicted but absent from y_true: ignored, as documented
        warnings.simplefilter("ignore", UserWarning)
        balanced = float(balanced_accuracy_score(y, pred)) if y.size else 0.0
    return {
        "per_class": _per_class(names, precision, recall, f1, specificity, support),
        "confusion_matrix": cm.tolist(),  # rows: true class, columns: predicted class
        # Mean recall over the classes present in y_true (sklearn's balanced_accuracy_score).
        "balanced_accuracy": balanced,
        "macro_f1": float(f1.mean()),
        "mcc": float(matthews_corrcoef(y, pred)) if y.size else 0.0,
        "specificity": float(specificity.mean()),
        "calibration": calibration(probs.max(axis=1), pred == y),
    }


def _multi_label(y_true: np.ndarray, y_score: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    if y_true.shape != y_score.shape or y_true.ndim != 2 or y_true.shape[1] != len(names):
        raise MedMNISTLabError(
            f"multi-label y_true {y_true.shape} and y_score {y_score.shape} must both be (N, {len(names)})"
        )
    y = y_true.astype(np.int64)
    pred = (y_score > THRESHOLD).astype(np.int64)
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, zero_division=0.0)
    mcm = multilabel_confusion_matrix(y, pred)  # (L, 2, 2): [[tn, fp], [fn, tp]] per label
    specificity = _specificity(mcm[:, 0, 0], mcm[:, 0, 1])
    with warnings.catch_warnings():  # a label with one side only: sklearn's balanced accuracy of it
        warnings.simplefilter("ignore", UserWarning)
        # Per label, the mean of the recalls of the sides (positive, negative) present in y_true.
        balanced = [balanced_accuracy_score(y[:, i], pred[:, i]) for i in range(y.shape[1])] if y.size else [0.0]
    mcc = [matthews_corrcoef(y[:, i], pred[:, i]) for i in range(y.shape[1])] if y.size else [0.0]
    return {
        "per_class": _per_class(names, precision, recall, f1, specificity, support),
        # Per label [[tn, fp], [fn, tp]], sklearn's multilabel_confusion_matrix.
        "confusion_matrices": {name: mcm[i].tolist() for i, name in enumerate(names)},
        "balanced_accuracy": float(np.mean(balanced)),
        "macro_f1": float(f1.mean()),
        "mcc": float(np.mean(mcc)),  # the mean of the labels' MCCs
        "specificity": float(specificity.mean()),
        # Each (sample, label) probability against that label's truth: a reliability diagram of
        # the per-label probabilities.
        "calibration": calibration(y_score, y),
    }


def extra_metrics(y_true: np.ndarray, y_score: np.ndarray, task: str, label_names: Sequence[str]) -> dict[str, Any]:
    """Per-class precision/recall/F1/specificity/support, confusion matrix (per label for
    multi-label), balanced accuracy, macro-F1, MCC, mean specificity and 15-bin ECE; every value
    is JSON-serialisable (multi-label: MCC and balanced accuracy are the labels' means)."""
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
