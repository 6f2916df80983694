"""AUC and ACC exactly as the official `medmnist.evaluator.getAUC` / `getACC` compute them.

- binary-class: AUC and ACC of the last score column; ACC thresholds it at 0.5 (probabilities).
- multi-class and ordinal-regression: mean one-vs-rest AUC over the score columns; argmax ACC.
- multi-label, binary-class: mean per-label AUC; mean per-label ACC at threshold 0.5.

Sums run in the same order as the official loops (`total += x`, then divide), so results are
bit-identical, not merely close. A class (or a label's positive/negative side) absent from
`y_true` makes its AUC undefined: like the official function under scikit-learn >= 1.6, the
result is then NaN; this module also warns with `UndefinedAUCWarning`, naming the classes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.registry import Registry

THRESHOLD = 0.5
MULTI_LABEL = "multi-label, binary-class"


class UndefinedAUCWarning(UserWarning):
    """An AUC term had only one class in y_true; the reported AUC is NaN."""


@dataclass(frozen=True)
class Metrics:
    auc: float
    acc: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def scores_from_logits(logits: torch.Tensor, task: str) -> np.ndarray:
    """Probabilities the official evaluator expects, as float64 (N, C).

    Softmax for single-label tasks, sigmoid for multi-label, as the official training script
    does; computed in float64 so that confident predictions do not all round to exactly 1.0,
    which would turn into AUC ties. A single-column binary logit gets a sigmoid.
    """
    check_task(task)
    x = logits.detach().to(device="cpu", dtype=torch.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise MedMNISTLabError(f"logits must be (N, C), got shape {tuple(logits.shape)}")
    probs = x.sigmoid() if task == MULTI_LABEL or x.shape[1] == 1 else x.softmax(dim=1)
    return probs.numpy()


def _as_arrays(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    if y_true.shape[0] != y_score.shape[0]:
        raise MedMNISTLabError(f"y_true has {y_true.shape[0]} rows but y_score has {y_score.shape[0]}")
    return y_true, y_score


def _single_label(y_true: np.ndarray) -> np.ndarray:
    """(N,) or (N, 1) -> (N,). Unlike the official `squeeze()`, N == 1 stays 1-D."""
    if y_true.ndim == 2 and y_true.shape[1] == 1:
        return y_true[:, 0]
    if y_true.ndim != 1:
        raise MedMNISTLabError(f"single-label y_true must be (N,) or (N, 1), got {y_true.shape}")
    return y_true


def _last_column(y_score: np.ndarray) -> np.ndarray:
    return y_score[:, -1] if y_score.ndim == 2 else y_score


def _binary_auc(y_true: np.ndarray, score: np.ndarray, what: str) -> float:
    if np.unique(y_true).size < 2:
        warnings.warn(
            f"AUC is undefined for {what}: y_true has only one class; reporting NaN",
            UndefinedAUCWarning,
            stacklevel=4,
        )
        return float("nan")
    return float(roc_auc_score(y_true, score))


def _mean(terms: list[float]) -> float:
    total = 0.0
    for t in terms:  # in order, as the official loop: sum() would round differently
        total += t
    return total / len(terms)


def _auc_binary(y_true: np.ndarray, y_score: np.ndarray) -> float:
    return _binary_auc(_single_label(y_true), _last_column(y_score), "the binary task")


def _auc_one_vs_rest(y_true: np.ndarray, y_score: np.ndarray) -> float:
    y = _single_label(y_true)
    return _mean(
        [_binary_auc((y == i).astype(float), y_score[:, i], f"class {i} vs rest") for i in range(y_score.shape[1])]
    )


def _auc_multi_label(y_true: np.ndarray, y_score: np.ndarray) -> float:
    return _mean([_binary_auc(y_true[:, i], y_score[:, i], f"label {i}") for i in range(y_score.shape[1])])


def _acc_binary(y_true: np.ndarray, y_score: np.ndarray) -> float:
    pred = _last_column(y_score) > THRESHOLD
    return float(np.mean(_single_label(y_true) == pred))


def _acc_argmax(y_true: np.ndarray, y_score: np.ndarray) -> float:
    return float(np.mean(_single_label(y_true) == np.argmax(y_score, axis=-1)))


def _acc_multi_label(y_true: np.ndarray, y_score: np.ndarray) -> float:
    pred = y_score > THRESHOLD
    return _mean([float(np.mean(y_true[:, i] == pred[:, i])) for i in range(y_true.shape[1])])


Metric = Callable[[np.ndarray, np.ndarray], float]
_AUC: Registry[Metric] = Registry("task")
_ACC: Registry[Metric] = Registry("task")
for _task, _auc, _acc in (
    ("binary-class", _auc_binary, _acc_binary),
    ("multi-class", _auc_one_vs_rest, _acc_argmax),
    ("ordinal-regression", _auc_one_vs_rest, _acc_argmax),
    (MULTI_LABEL, _auc_multi_label, _acc_multi_label),
):
    _AUC.add(_task, _auc)
    _ACC.add(_task, _acc)


def check_task(task: str) -> None:
    """Raise `UnknownNameError` listing the four MedMNIST task names if `task` is not one."""
    _AUC.canonical(task)


def auc(y_true: np.ndarray, y_score: np.ndarray, task: str) -> float:
    """The official AUC (`medmnist.evaluator.getAUC`). NaN if a class is absent from y_true."""
    return _AUC.get(task)(*_as_arrays(y_true, y_score))


def acc(y_true: np.ndarray, y_score: np.ndarray, task: str) -> float:
    """The official ACC (`medmnist.evaluator.getACC` with threshold 0.5)."""
    return _ACC.get(task)(*_as_arrays(y_true, y_score))


def official_metrics(y_true: np.ndarray, y_score: np.ndarray, task: str) -> Metrics:
    return Metrics(auc=auc(y_true, y_score, task), acc=acc(y_true, y_score, task))
