"""Calibration of a classifier's probabilities: how far they are from the frequencies they claim,
and post-hoc rescaling of its logits to bring them closer.

Measures (`calibration_scores`), for the task's probabilities (`scores_from_logits`):

- ECE over 15 equal-width bins of the confidence (`metrics.extra.calibration`) and over 15
  equal-mass bins (each bin holds the same number of predictions, so sparse high-confidence bins
  do not dominate);
- class-wise ECE: the mean over classes of the equal-width ECE of p_k against [y == k];
- NLL: the mean negative log-probability of the true class;
- Brier score: the mean over images of sum_k (p_k - [y == k])^2.

Single-label tasks (binary, multi-class, ordinal: treated as multi-class) measure the top class's
confidence against whether it is right; multi-label tasks measure every (image, label)
probability against that label's truth, and NLL/Brier are the means over labels.

Scalings (`fit_scaling`), fitted by minimising the NLL of a held-out split (L-BFGS in float64):

- temperature: z / T, one T for single-label tasks, one per label for multi-label ones. It never
  changes a single-label prediction (the argmax), only its confidence.
- vector: w * z + b, one weight and bias per class (per label: Platt scaling). It can change
  predictions.

Why by hand: both fits are a few lines of torch; netcal (which has them) pulls gpytorch and
pyro-ppl, and scikit-learn's temperature scaling (`CalibratedClassifierCV(method="temperature")`,
used in the tests as a cross-check) has no vector scaling and no per-label temperatures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.metrics.extra import ECE_BINS, calibration, single_label_predictions
from medmnist_lab.metrics.official import MULTI_LABEL, check_task, scores_from_logits

METHODS: tuple[str, ...] = ("temperature", "vector")
# Temperatures outside this range are fits that say more about the validation split than about the
# model: T above it flattens every probability towards uniform (the val logits carry no signal a
# temperature can keep), T below it pushes them to 0/1 (val is separated; the NLL fit runs away).
SANE_TEMPERATURE = (0.05, 20.0)
EPS = 1e-12  # probabilities are clipped to [EPS, 1 - EPS] for the log


def ece_equal_mass(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over `bins` bins of (nearly) equal counts of the sorted confidences."""
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=np.float64).ravel()
    if confidence.size == 0:
        return 0.0
    order = np.argsort(confidence, kind="stable")
    total = 0.0
    for part in np.array_split(order, min(bins, confidence.size)):
        total += part.size * abs(correct[part].mean() - confidence[part].mean())
    return float(total / confidence.size)


def _one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float64)[y]


def labels_1d(y_true: np.ndarray) -> np.ndarray:
    """Single-label targets (N,) or (N, 1) -> (N,) int64."""
    return np.asarray(y_true).reshape(-1).astype(np.int64)


def _targets(y_true: np.ndarray, probs: np.ndarray, task: str) -> np.ndarray:
    """Targets shaped as `probs`: the labels (multi-label) or the one-hot classes."""
    if task == MULTI_LABEL:
        y = np.asarray(y_true, dtype=np.float64)
        if y.shape != probs.shape:
            raise MedMNISTLabError(f"multi-label y_true {y.shape} and probabilities {probs.shape} differ in shape")
        return y
    y = labels_1d(y_true)
    if y.size != probs.shape[0]:
        raise MedMNISTLabError(f"y_true has {y.size} labels but there are {probs.shape[0]} rows of probabilities")
    if y.size and (y.min() < 0 or y.max() >= probs.shape[1]):
        raise MedMNISTLabError(f"labels must lie in 0..{probs.shape[1] - 1}")
    return _one_hot(y, probs.shape[1])


def nll(probs: np.ndarray, y_true: np.ndarray, task: str) -> float:
    """Mean negative log-likelihood (multi-label: mean binary cross-entropy over labels)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    t = _targets(y_true, p, task)
    if task == MULTI_LABEL:
        return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))
    return float(-np.mean(np.log(p[t.astype(bool)])))


def brier(probs: np.ndarray, y_true: np.ndarray, task: str) -> float:
    """Brier score: mean over images of sum_k (p_k - y_k)^2 (multi-label: mean over labels too)."""
    p = np.asarray(probs, dtype=np.float64)
    t = _targets(y_true, p, task)
    if task == MULTI_LABEL:
        return float(np.mean((p - t) ** 2))
    return float(np.mean(np.sum((p - t) ** 2, axis=1)))


def confidence_and_correct(probs: np.ndarray, y_true: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Single-label: top probability and whether its class is right. Multi-label: each (image,
    label) probability and the label's truth (a reliability diagram of the per-label
    probabilities, as `metrics.extra`)."""
    p = np.asarray(probs, dtype=np.float64)
    t = _targets(y_true, p, task)
    if task == MULTI_LABEL:
        return p.ravel(), t.ravel()
    right = single_label_predictions(p, task) == t.argmax(axis=1)  # the official ACC's decision
    return p.max(axis=1), right.astype(np.float64)


def classwise_ece(probs: np.ndarray, y_true: np.ndarray, task: str, bins: int = ECE_BINS) -> float:
    """Mean over classes (labels) of the equal-width ECE of p_k against [y == k]."""
    p = np.asarray(probs, dtype=np.float64)
    t = _targets(y_true, p, task)
    return float(np.mean([calibration(p[:, k], t[:, k], bins)["ece"] for k in range(p.shape[1])]))


def calibration_scores(probs: np.ndarray, y_true: np.ndarray, task: str, bins: int = ECE_BINS) -> dict[str, float]:
    """ECE (equal-width and equal-mass bins), class-wise ECE, NLL and Brier score of `probs`."""
    check_task(task)
    conf, correct = confidence_and_correct(probs, y_true, task)
    return {
        "ece": calibration(conf, correct, bins)["ece"],
        "ece_mass": ece_equal_mass(conf, correct, bins),
        "classwise_ece": classwise_ece(probs, y_true, task, bins),
        "nll": nll(probs, y_true, task),
        "brier": brier(probs, y_true, task),
    }


SCORE_NAMES: dict[str, str] = {
    "ece": "ECE",
    "ece_mass": "ECE (equal mass)",
    "classwise_ece": "class-wise ECE",
    "nll": "NLL",
    "brier": "Brier",
}


@dataclass(frozen=True)
class Scaling:
    """Calibrated logits are `weight * logits + bias` (per column). Temperature scaling: weight =
    1 / T, bias 0."""

    method: str
    weight: tuple[float, ...]
    bias: tuple[float, ...]

    @property
    def temperature(self) -> tuple[float, ...]:
        return tuple(1.0 / w for w in self.weight)

    def apply(self, logits: torch.Tensor | np.ndarray) -> torch.Tensor:
        z = torch.as_tensor(logits).to(dtype=torch.float64)
        if z.ndim != 2 or (len(self.weight) > 1 and z.shape[1] != len(self.weight)):
            raise MedMNISTLabError(
                f"logits of shape {tuple(z.shape)} do not fit a scaling of {len(self.weight)} column(s)"
            )
        w = torch.tensor(self.weight, dtype=torch.float64)
        b = torch.tensor(self.bias, dtype=torch.float64)
        return z * w + b

    def probabilities(self, logits: torch.Tensor | np.ndarray, task: str) -> np.ndarray:
        return scores_from_logits(self.apply(logits), task)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method}
        if self.method == "temperature":
            out["temperature"] = list(self.temperature)
        else:
            out["weight"], out["bias"] = list(self.weight), list(self.bias)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaling:
        method = data.get("method")
        if method == "temperature":
            temps = [float(t) for t in data["temperature"]]
            return cls("temperature", tuple(1.0 / t for t in temps), tuple(0.0 for _ in temps))
        if method == "vector":
            return cls("vector", tuple(map(float, data["weight"])), tuple(map(float, data["bias"])))
        raise MedMNISTLabError(f"unknown calibration method {method!r}; choose one of: {', '.join(METHODS)}")


def check_method(method: str) -> str:
    if method not in METHODS:
        raise MedMNISTLabError(f"unknown calibration method '{method}'; choose one of: {', '.join(METHODS)}")
    return method


def _loss(z: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == MULTI_LABEL:
        return torch.nn.functional.binary_cross_entropy_with_logits(z, y)
    if z.shape[1] == 1:  # one binary logit column: its sigmoid is the positive class
        return torch.nn.functional.binary_cross_entropy_with_logits(z[:, 0], y.to(torch.float64))
    return torch.nn.functional.cross_entropy(z, y)


def fit_scaling(logits: torch.Tensor | np.ndarray, y_true: np.ndarray, task: str, method: str) -> Scaling:
    """Fit temperature or vector scaling of `logits` (N, K) to `y_true` by minimising the NLL."""
    check_task(task)
    check_method(method)
    z = torch.as_tensor(logits).detach().to(dtype=torch.float64, device="cpu")
    if z.ndim != 2 or z.shape[0] == 0:
        raise MedMNISTLabError(f"logits must be (N, K) with N > 0, got shape {tuple(z.shape)}")
    k = z.shape[1]
    if task == MULTI_LABEL:
        y = torch.as_tensor(np.asarray(y_true, dtype=np.float64))
        if tuple(y.shape) != tuple(z.shape):
            raise MedMNISTLabError(f"multi-label y_true {tuple(y.shape)} and logits {tuple(z.shape)} differ")
    else:
        y = torch.as_tensor(labels_1d(y_true))
        if y.numel() != z.shape[0]:
            raise MedMNISTLabError(f"y_true has {y.numel()} labels but logits have {z.shape[0]} rows")
    # Per column for multi-label (each label its own temperature) and for vector scaling.
    columns = k if (task == MULTI_LABEL or method == "vector") else 1
    log_beta = torch.zeros(columns, dtype=torch.float64, requires_grad=True)  # beta = 1 / T > 0
    weight = torch.ones(columns, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    params = [log_beta] if method == "temperature" else [weight, bias]
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=500, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def scaled() -> torch.Tensor:
        if method == "temperature":
            return z * log_beta.exp()
        return z * weight + bias

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _loss(scaled(), y, task)
        loss.backward()
        return loss

    opt.step(closure)
    if method == "temperature":
        beta = log_beta.detach().exp().tolist()
        return Scaling("temperature", tuple(beta), tuple(0.0 for _ in beta))
    return Scaling("vector", tuple(weight.detach().tolist()), tuple(bias.detach().tolist()))


def degenerate_fit(scaling: Scaling, label_names: Sequence[str] | None = None) -> list[str]:
    """Plain-words warnings for a fitted scaling that no longer describes the model: a temperature
    outside SANE_TEMPERATURE, or a vector-scaling weight <= 0 (it reverses that column's ranking)."""
    out = []
    names = list(label_names or [])

    def name(k: int) -> str:
        return names[k] if k < len(names) and len(scaling.weight) > 1 else f"column {k}"

    lo, hi = SANE_TEMPERATURE
    if scaling.method == "temperature":
        for k, t in enumerate(scaling.temperature):
            where = "" if len(scaling.temperature) == 1 else f" ({name(k)})"
            if t > hi:
                out.append(
                    f"the fitted temperature{where} is {t:.3g}, above {hi:g}: the scaled probabilities are nearly "
                    "uniform, because the validation logits carry almost no signal a temperature can keep"
                )
            elif t < lo:
                out.append(
                    f"the fitted temperature{where} is {t:.3g}, below {lo:g}: the scaled probabilities are pushed "
                    "to 0 and 1, because the validation split is (nearly) separated and the fit runs away"
                )
    else:
        for k, w in enumerate(scaling.weight):
            if w <= 0:
                out.append(
                    f"vector scaling's weight for {name(k)} is {w:.3g} (not positive): it reverses the ranking "
                    "of that logit, so the validation split carries no usable signal for it; use temperature"
                )
    return out
