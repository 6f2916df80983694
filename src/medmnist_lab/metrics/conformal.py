"""Split-conformal prediction sets for single-label tasks.

Given probabilities on a calibration split (the validation split) and a miscoverage level ALPHA,
each test image gets a set of classes that, if calibration and test images are exchangeable,
contains the true class with probability at least 1 - ALPHA (on average over images):

- LAC (least ambiguous classifier): a class is in the set when 1 - p_k is at most the conformal
  quantile of 1 - p_true on the calibration split. Smallest sets on average; coverage can be
  uneven across classes.
- APS (adaptive prediction sets): classes in decreasing probability until their cumulative mass
  passes the calibrated quantile. Sets grow with the model's uncertainty.
- RAPS (regularised APS): APS plus a penalty LAMBDA for each rank beyond K_REG (0.01 and 1), so
  that the long tail of unlikely classes stays out of the sets.

APS and RAPS use the randomised score (a uniform u per image, seeded): coverage is then exact
rather than conservative, at the price that a set can be empty.

Mondrian (class-conditional) conformal prediction calibrates each class on its own calibration
images, so coverage holds for every class, not only on average; it needs at least 1/ALPHA
calibration images of each class.

Why by hand: MAPIE 1.6 (the maintained library closest to this) refuses APS and RAPS for a
two-class target (every binary MedMNIST task, and every class of a Mondrian calibration) and no
longer ships a Mondrian wrapper; crepes has neither APS nor RAPS; torchcp pulls transformers and
torch-geometric. The formulas are a few lines (Romano et al. 2020; Angelopoulos et al. 2021);
tests/test_calibration.py checks the LAC sets set for set against MAPIE's SplitConformalClassifier
on a multi-class case, APS/RAPS against a direct per-image loop, and the coverage of all three.

The coverage guarantee is a statement about exchangeable splits; `coverage_report` says how far
the observed test coverage may fall below 1 - ALPHA by chance alone (a one-sided 95% binomial
tolerance), so that a larger shortfall can be flagged as a sign that val and test differ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medmnist_lab.errors import MedMNISTLabError

SCORES: tuple[str, ...] = ("lac", "aps", "raps")
RAPS_LAMBDA = 0.01  # RAPS's penalty per class ranked beyond K_REG (Angelopoulos et al., 2021)
RAPS_K_REG = 1
TOLERANCE_LEVEL = 0.05  # a coverage below the 5% binomial quantile is flagged


def check_alpha(alpha: float) -> float:
    if not (isinstance(alpha, int | float) and math.isfinite(alpha) and 0.0 < alpha < 1.0):
        raise MedMNISTLabError(f"conformal ALPHA must lie in (0, 1), e.g. 0.1 for 90% coverage; got {alpha}")
    return float(alpha)


def check_score(score: str) -> str:
    if score not in SCORES:
        raise MedMNISTLabError(f"unknown conformal score '{score}'; choose one of: {', '.join(SCORES)}")
    return score


def needed_images(alpha: float) -> int:
    """The fewest calibration images accepted: 1/ALPHA (from 1/ALPHA - 1 on, the conformal
    quantile is finite)."""
    return math.ceil(1.0 / alpha - 1e-9)


def conformity_scores(probs: np.ndarray, labels: np.ndarray, score: str, u: np.ndarray) -> np.ndarray:
    """The non-conformity of class `labels[i]` for image i (larger: less plausible).

    LAC: 1 - p_y. APS: the probability mass of the classes ranked above y plus u * p_y (u uniform
    in [0, 1): the randomised score, exact coverage). RAPS: APS + LAMBDA * max(0, rank(y) - K_REG),
    rank 1-based.
    """
    p = np.asarray(probs, dtype=np.float64)
    return _all_scores(p, score, u)[np.arange(p.shape[0]), labels]


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The k-th smallest of n calibration scores, k = ceil((n + 1)(1 - ALPHA)): the threshold
    that a new exchangeable score stays under with probability >= 1 - ALPHA (infinite if k > n)."""
    n = scores.size
    k = math.ceil((n + 1) * (1.0 - alpha) - 1e-9)
    if k > n:
        return math.inf
    return float(np.sort(scores)[k - 1])


def _all_scores(probs: np.ndarray, score: str, u: np.ndarray) -> np.ndarray:
    """(N, K): the score of every class of every image (one u per image), one sort per image."""
    p = np.asarray(probs, dtype=np.float64)
    if score == "lac":
        return 1.0 - p
    rows = np.arange(p.shape[0])[:, None]
    # Mass strictly above each class (ties broken by class index, as a stable sort of -p would).
    order = np.argsort(-p, axis=1, kind="stable")
    rank = np.empty_like(order)
    rank[rows, order] = np.arange(p.shape[1])[None, :]
    cum = np.cumsum(np.take_along_axis(p, order, axis=1), axis=1)
    above = np.where(rank > 0, np.take_along_axis(cum, np.maximum(rank - 1, 0), axis=1), 0.0)
    out = above + np.asarray(u, dtype=np.float64)[:, None] * p
    if score == "raps":
        out = out + RAPS_LAMBDA * np.maximum(0, rank + 1 - RAPS_K_REG)
    return out


@dataclass
class ConformalSets:
    """Prediction sets (N, K) booleans and what produced them."""

    sets: np.ndarray
    alpha: float
    score: str
    mondrian: bool
    n_calibration: int
    thresholds: dict[str, float] = field(default_factory=dict)  # the score quantile (per class: Mondrian)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "score": self.score,
            "mondrian": self.mondrian,
            "calibration_images": self.n_calibration,
            "quantiles": self.thresholds,
            "randomized": self.score != "lac",
            "raps": {"lambda": RAPS_LAMBDA, "k_reg": RAPS_K_REG} if self.score == "raps" else None,
            "seed": self.seed,
        }


def conformal_sets(
    p_cal: np.ndarray,
    y_cal: np.ndarray,
    p_test: np.ndarray,
    alpha: float,
    score: str = "lac",
    *,
    mondrian: bool = False,
    label_names: Sequence[str] | None = None,
    calibration_split: str = "val",
    seed: int = 0,
) -> ConformalSets:
    """Split-conformal sets for `p_test` (N, K), calibrated on (`p_cal`, `y_cal`) only. APS and
    RAPS draw their uniform u from `seed` (calibration images first, then test images)."""
    alpha, score = check_alpha(alpha), check_score(score)
    p_cal, p_test = np.asarray(p_cal, dtype=np.float64), np.asarray(p_test, dtype=np.float64)
    y = np.asarray(y_cal).reshape(-1).astype(np.int64)
    k = p_cal.shape[1]
    if p_test.ndim != 2 or p_test.shape[1] != k or p_cal.shape[0] != y.size:
        raise MedMNISTLabError(
            f"calibration probabilities {p_cal.shape} with {y.size} labels and test probabilities {p_test.shape} "
            "do not match"
        )
    names = [str(n) for n in label_names] if label_names is not None else [str(i) for i in range(k)]
    need = needed_images(alpha)
    rng = np.random.default_rng(seed)
    randomized = score != "lac"
    u_cal = rng.random(y.size) if randomized else np.zeros(y.size)
    u_test = rng.random(p_test.shape[0]) if randomized else np.zeros(p_test.shape[0])
    cal_scores = conformity_scores(p_cal, y, score, u_cal)
    if not mondrian:
        if y.size < need:
            raise MedMNISTLabError(
                f"--conformal {alpha:g} needs at least {need} {calibration_split} images (1/ALPHA), the "
                f"{calibration_split} split has {y.size}; use a larger ALPHA (at least {_alpha_for(y.size)})"
            )
        q = conformal_quantile(cal_scores, alpha)
        sets = sets_from_thresholds(p_test, score, {"all": q}, names, u_test)
        return ConformalSets(sets, alpha, score, False, int(y.size), {"all": q}, seed)
    counts = np.bincount(y, minlength=k)
    short = [f"{names[c]} ({counts[c]})" for c in range(k) if counts[c] < need]
    if short:
        raise MedMNISTLabError(
            f"--conformal {alpha:g} --mondrian needs at least {need} {calibration_split} images (1/ALPHA) of each "
            f"class; too few: {', '.join(short)}; use a larger ALPHA (at least {_alpha_for(int(counts.min()))}) "
            "or drop --mondrian"
        )
    thresholds = {names[c]: conformal_quantile(cal_scores[y == c], alpha) for c in range(k)}
    sets = sets_from_thresholds(p_test, score, thresholds, names, u_test)
    return ConformalSets(sets, alpha, score, True, int(y.size), thresholds, seed)


def sets_from_thresholds(
    probs: np.ndarray,
    score: str,
    thresholds: dict[str, float],
    label_names: Sequence[str] | None = None,
    u: np.ndarray | None = None,
) -> np.ndarray:
    """Prediction sets (N, K) of `probs` by calibrated `thresholds` ({"all": q}, or one per class
    name: Mondrian), as `conformal_sets` builds them; `u` (N,) is the randomised score's uniform
    (zeros for LAC)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise MedMNISTLabError(f"probabilities must be (N, K), got shape {p.shape}")
    n, k = p.shape
    u = np.zeros(n) if u is None else np.asarray(u, dtype=np.float64)
    scores = _all_scores(p, check_score(score), u)
    if "all" in thresholds:
        return scores <= thresholds["all"]
    names = [str(x) for x in label_names] if label_names is not None else [str(i) for i in range(k)]
    missing = [x for x in names if x not in thresholds]
    if missing:
        raise MedMNISTLabError(f"no conformal threshold for class(es) {', '.join(missing)}")
    q = np.array([thresholds[x] for x in names], dtype=np.float64)
    return scores <= q[None, :]


def _alpha_for(n: int) -> str:
    """The smallest ALPHA that `n` calibration images allow, as text."""
    if n < 2:
        return "none: too few images"
    return f"{math.ceil(1000 / n) / 1000:g}"


def coverage_tolerance(n: int, alpha: float, level: float = TOLERANCE_LEVEL) -> float:
    """The coverage below which n exchangeable test images fall with probability < `level`: the
    `level` quantile of Binomial(n, 1 - ALPHA) / n."""
    from scipy.stats import binom

    if n <= 0:
        return 0.0
    return float(binom.ppf(level, n, 1.0 - alpha) / n)


def coverage_report(
    sets: np.ndarray, y_true: np.ndarray, alpha: float, label_names: Sequence[str] | None = None, split: str = "test"
) -> dict[str, Any]:
    """Empirical coverage (overall and per class), mean set size, singleton and empty shares, and
    `warnings`: a coverage below 1 - ALPHA by more than its binomial tolerance, in words."""
    sets = np.asarray(sets, dtype=bool)
    y = np.asarray(y_true).reshape(-1).astype(np.int64)
    k = sets.shape[1]
    names = [str(n) for n in label_names] if label_names is not None else [str(i) for i in range(k)]
    covered = sets[np.arange(y.size), y]
    size = sets.sum(axis=1)
    target = 1.0 - alpha
    per_class: dict[str, dict[str, Any]] = {}
    warns: list[str] = []
    overall_tol = coverage_tolerance(y.size, alpha)
    coverage = float(covered.mean()) if y.size else 0.0
    if y.size and coverage < overall_tol:
        warns.append(
            f"{split} coverage is {coverage:.3f} on {y.size} images, {target - coverage:.3f} below the target "
            f"{target:.3f}; exchangeable splits fall below {overall_tol:.3f} less than 5% of the time, so the "
            f"val calibration does not carry over to {split}"
        )
    for c, name in enumerate(names):
        mask = y == c
        n = int(mask.sum())
        cov = float(covered[mask].mean()) if n else None
        tol = coverage_tolerance(n, alpha)
        mean_size = float(size[mask].mean()) if n else None
        per_class[name] = {"n": n, "coverage": cov, "tolerance": tol, "mean_size": mean_size}
    return {
        "split": split,
        "n": int(y.size),
        "target": target,
        "coverage": coverage,
        "tolerance": overall_tol,
        "per_class": per_class,
        "mean_set_size": float(size.mean()) if y.size else 0.0,
        "singleton_share": float((size == 1).mean()) if y.size else 0.0,
        "empty_share": float((size == 0).mean()) if y.size else 0.0,
        "warnings": warns,
    }


def class_shortfalls(report: dict[str, Any]) -> list[str]:
    """Warnings for the classes whose coverage falls below their own binomial tolerance (what
    Mondrian calibration promises to avoid)."""
    out = []
    target = report["target"]
    for name, row in report["per_class"].items():
        if row["n"] and row["coverage"] < row["tolerance"]:
            out.append(
                f"{report['split']} coverage of class {name} is {row['coverage']:.3f} on {row['n']} images, "
                f"{target - row['coverage']:.3f} below the target {target:.3f} (chance alone stays above "
                f"{row['tolerance']:.3f} 95% of the time)"
            )
    return out
