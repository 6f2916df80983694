"""Statistics for comparing runs: mean ± std with a Student-t CI, paired differences across
seeds, and DeLong's test of two correlated ROC AUCs on the same test set.

numpy and scipy only, so the results store and the tables can use it without the training stack.

- `summarize`: n runs of one configuration -> mean, sample std (ddof=1) and a t-interval (for a
  metric in [0, 1], a t-interval of the logits mapped back, so it never leaves [0, 1]).
- `paired_difference`: runs paired by seed (a[i] and b[i] share a seed) -> the paired t-test,
  which removes the between-seed variance that an unpaired comparison would count twice.
- `delong_test`: two classifiers scored on the same samples -> DeLong, DeLong & Clarke-Pearson
  (1988), with the midrank algorithm of Sun & Xu (2014): O(n log n) instead of the O(n^2)
  Mann-Whitney kernel. It tests one trained model against another on one test set; it says
  nothing about seed-to-seed variation, which is what `paired_difference` is for.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import special
from scipy import stats as st

from medmnist_lab.errors import MedMNISTLabError

CONFIDENCE = 0.95
ALPHA = 0.05


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise MedMNISTLabError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")


def _as_finite_1d(values: Any, what: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise MedMNISTLabError(f"{what} must be one-dimensional, got shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise MedMNISTLabError(
            f"{what} must be finite; found {x[bad[0]]} at index {int(bad[0])} ({bad.size} non-finite in all)"
        )
    return x


def _t_interval(mean: float, std: float, n: int, confidence: float) -> tuple[float, float]:
    if n < 2:
        return math.nan, math.nan  # one run says nothing about spread: no interval, not a zero-width one
    half = float(st.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


# A metric in [0, 1] (AUC, ACC, ECE...) gets its interval on the logit scale: a t-interval of
# logit(values), mapped back. It stays inside (0, 1) whatever the spread (a plain t-interval of two
# AUCs 0.28 and 0.84 runs from -3.0 to 4.1), and is close to the plain one when values sit mid-range.
UNIT_INTERVAL_METRICS = ("auc", "acc", "balanced_accuracy", "macro_f1", "ece")
LOGIT_EPS = 1e-3  # 0 or 1 (a perfect AUC) is moved this far inside: metrics are reported to 3 decimals


def _logit_t_interval(x: np.ndarray, confidence: float) -> tuple[float, float]:
    if x.size < 2:
        return math.nan, math.nan
    z = special.logit(np.clip(x, LOGIT_EPS, 1 - LOGIT_EPS))
    lo, hi = _t_interval(float(z.mean()), float(z.std(ddof=1)), int(z.size), confidence)
    mean = float(x.mean())  # values clipped at the bounds could leave the mean just outside: keep it in
    return min(float(special.expit(lo)), mean), max(float(special.expit(hi)), mean)


@dataclass(frozen=True)
class Summary:
    """Mean ± sample std and a Student-t confidence interval of the mean.

    n == 0: every number is NaN. n == 1: mean is the value; std and the CI are NaN (a sample std
    needs two values; a zero-width interval would claim a certainty one run cannot give).
    n >= 2 with identical values: std 0 and a zero-width CI, which is what the data say.
    """

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    confidence: float = CONFIDENCE
    method: str = "t"  # "t": Student-t of the values; "logit-t": of their logits, mapped back (bounded)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(values: Any, confidence: float = CONFIDENCE, *, bounded: bool = False) -> Summary:
    """Summarize finite values (e.g. one metric over seeds); non-finite values raise. `bounded`:
    the values are a metric in [0, 1] and the interval is a logit-scale t-interval inside (0, 1)."""
    _check_confidence(confidence)
    x = _as_finite_1d(values, "values")
    n = int(x.size)
    if bounded and ((x < 0) | (x > 1)).any():
        raise MedMNISTLabError(f"bounded values must lie in [0, 1]; got {x[(x < 0) | (x > 1)][0]}")
    method = "logit-t" if bounded else "t"
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan, confidence, method)
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n >= 2 else math.nan
    lo, hi = _logit_t_interval(x, confidence) if bounded else _t_interval(mean, std, n, confidence)
    return Summary(n, mean, std, lo, hi, confidence, method)


@dataclass(frozen=True)
class PairedDiff:
    """Paired differences a - b: mean, sample std, t-interval, two-sided paired t-test.

    n < 2: std, CI, t and p are NaN and the difference is not significant. All differences
    equal (std 0): zero -> t = 0, p = 1; non-zero -> t = ±inf, p = 0 (scipy gives NaN for the
    first and the same for the second).
    """

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    t: float
    p: float
    significant: bool
    alpha: float = ALPHA
    confidence: float = CONFIDENCE

    def verdict(self) -> str:
        """'significant (p=0.003)', 'not significant (p=0.41)' or 'untested (n=1)'."""
        if math.isnan(self.p):
            return f"untested (n={self.n})"
        return f"{'significant' if self.significant else 'not significant'} ({format_p(self.p)})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_p(p: float) -> str:
    """Two significant digits, floored at 0.001: more digits would overstate what n seeds show."""
    if math.isnan(p):
        return "p=n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def paired_difference(a: Any, b: Any, confidence: float = CONFIDENCE, alpha: float = ALPHA) -> PairedDiff:
    """Compare a[i] with b[i] (e.g. the same seed under two settings): statistics of a - b."""
    _check_confidence(confidence)
    if not 0.0 < alpha < 1.0:
        raise MedMNISTLabError(f"alpha must be between 0 and 1 (exclusive), got {alpha}")
    xa, xb = _as_finite_1d(a, "a"), _as_finite_1d(b, "b")
    if xa.size != xb.size:
        raise MedMNISTLabError(f"paired values need equal lengths; got {xa.size} and {xb.size}")
    d = xa - xb
    n = int(d.size)
    if n == 0:
        return PairedDiff(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, False, alpha, confidence)
    mean = float(d.mean())
    if n < 2:
        return PairedDiff(n, mean, math.nan, math.nan, math.nan, math.nan, math.nan, False, alpha, confidence)
    std = float(d.std(ddof=1))
    lo, hi = _t_interval(mean, std, n, confidence)
    if std == 0.0:
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
        p = 1.0 if mean == 0.0 else 0.0
    else:
        t = mean / (std / math.sqrt(n))
        p = float(2.0 * st.t.sf(abs(t), df=n - 1))
    return PairedDiff(n, mean, std, lo, hi, t, p, bool(p < alpha), alpha, confidence)


# ---------------------------------------------------------------------------------------------
# DeLong


@dataclass(frozen=True)
class DeLongResult:
    """DeLong's test of AUC(a) == AUC(b) on the same samples, two-sided.

    se: standard error of diff = auc_a - auc_b. se == 0 (e.g. identical scores): z = 0 and p = 1
    when diff == 0, as pROC reports; z = ±inf and p = 0 otherwise. NaN when a class has a single
    sample (its covariance is undefined).
    """

    auc_a: float
    auc_b: float
    diff: float
    se: float
    z: float
    p: float
    ci_low: float
    ci_high: float
    n_pos: int
    n_neg: int
    confidence: float = CONFIDENCE

    def significant(self, alpha: float = ALPHA) -> bool:
        return bool(self.p < alpha)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _binary_labels(y_true: Any) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise MedMNISTLabError(f"y_true must be (N,) or (N, 1) binary labels, got shape {y.shape}")
    if y.dtype == bool:
        return y
    try:
        yf = y.astype(np.float64)
    except (TypeError, ValueError):
        raise MedMNISTLabError(f"y_true must hold 0/1 labels, got dtype {y.dtype}") from None
    bad = np.flatnonzero((yf != 0) & (yf != 1))
    if bad.size:
        found = sorted({str(v) for v in y[bad][:5].tolist()})
        raise MedMNISTLabError(f"y_true must be binary (0/1); found {', '.join(found)} at index {int(bad[0])}")
    return yf == 1


def _check_inputs(y_true: Any, **scores: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    pos = _binary_labels(y_true)
    n_pos = int(pos.sum())
    if n_pos == 0 or n_pos == pos.size:
        only = "positive (1)" if n_pos else "negative (0)"
        raise MedMNISTLabError(f"ROC AUC needs both classes in y_true; all {pos.size} labels are {only}")
    out = []
    for name, s in scores.items():
        x = _as_finite_1d(s, name)
        if x.size != pos.size:
            raise MedMNISTLabError(f"{name} has {x.size} values but y_true has {pos.size}")
        out.append(x)
    return pos, out


def _structural_components(pos: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sun & Xu (2014), Algorithm 1, for k score vectors at once.

    scores: (k, N). Returns aucs (k,), v10 (k, m) over positives and v01 (k, n) over negatives,
    where v10[i] = P(score of positive i > a random negative) with ties counting 1/2, i.e. the
    Mann-Whitney kernel averaged over negatives, got from midranks instead of m*n comparisons.
    """
    x, y = scores[:, pos], scores[:, ~pos]  # (k, m) positives, (k, n) negatives
    m, n = x.shape[1], y.shape[1]
    tx = st.rankdata(x, axis=1)  # midranks ("average"), so ties count 1/2
    ty = st.rankdata(y, axis=1)
    tz = st.rankdata(np.concatenate([x, y], axis=1), axis=1)
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return aucs, v10, v01


def _covariance(pos: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and DeLong's covariance matrix S = S10/m + S01/n, (k, k)."""
    aucs, v10, v01 = _structural_components(pos, scores)
    m, n = v10.shape[1], v01.shape[1]
    k = scores.shape[0]
    if m < 2 or n < 2:
        return aucs, np.full((k, k), np.nan)
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return aucs, s10 / m + s01 / n


def delong_auc_variance(y_true: Any, scores: Any) -> tuple[float, float]:
    """AUC and its DeLong variance (NaN when a class has a single sample)."""
    pos, (s,) = _check_inputs(y_true, scores=scores)
    aucs, cov = _covariance(pos, s[None, :])
    return float(aucs[0]), float(cov[0, 0])


def delong_test(y_true: Any, scores_a: Any, scores_b: Any, confidence: float = CONFIDENCE) -> DeLongResult:
    """Two-sided DeLong test of two correlated ROC AUCs (higher score = positive class)."""
    _check_confidence(confidence)
    pos, (a, b) = _check_inputs(y_true, scores_a=scores_a, scores_b=scores_b)
    aucs, cov = _covariance(pos, np.stack([a, b]))
    diff = float(aucs[0] - aucs[1])
    # Clip at 0: var(a) + var(b) - 2 cov(a, b) can come out -1e-18 for (nearly) identical scores.
    var = max(float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]), 0.0) if np.isfinite(cov).all() else math.nan
    se = math.sqrt(var) if not math.isnan(var) else math.nan
    if math.isnan(se):
        z = p = lo = hi = math.nan
    elif se == 0.0:
        z = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
        p = 1.0 if diff == 0.0 else 0.0
        lo = hi = diff
    else:
        z = diff / se
        p = float(2.0 * st.norm.sf(abs(z)))
        half = float(st.norm.ppf(0.5 + confidence / 2)) * se
        lo, hi = diff - half, diff + half
    return DeLongResult(
        auc_a=float(aucs[0]),
        auc_b=float(aucs[1]),
        diff=diff,
        se=se,
        z=z,
        p=p,
        ci_low=lo,
        ci_high=hi,
        n_pos=int(pos.sum()),
        n_neg=int((~pos).sum()),
        confidence=confidence,
    )
