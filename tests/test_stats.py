"""Statistics for comparing runs: t-intervals, paired t-tests, DeLong's test of correlated AUCs.

DeLong is checked four ways: against pROC's own test-suite values on its aSAH data, on a tiny
example worked by hand, against an independent O(n^2) implementation, and by the calibration of
its p-value under the null hypothesis.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st
from sklearn.metrics import roc_auc_score

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.metrics.stats import (
    delong_auc_variance,
    delong_test,
    format_p,
    paired_difference,
    summarize,
)

# ---------------------------------------------------------------------------------------------
# summarize


def test_summarize_matches_the_t_interval() -> None:
    values = [0.91, 0.89, 0.93, 0.90]
    s = summarize(values)
    assert s.n == 4
    assert s.mean == pytest.approx(0.9075, abs=1e-15)
    assert s.std == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    lo, hi = st.t.interval(0.95, df=3, loc=np.mean(values), scale=st.sem(values))
    assert (s.ci_low, s.ci_high) == pytest.approx((lo, hi), rel=1e-12)
    # By hand: t(0.975, 3) = 3.182446, std 0.017078, half-width 3.182446 * 0.017078 / 2 = 0.027175.
    assert s.ci_high - s.mean == pytest.approx(0.027175, abs=1e-6)


def test_summarize_confidence_changes_the_width() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    wide, narrow = summarize(values, 0.99), summarize(values, 0.80)
    assert wide.ci_high - wide.ci_low > narrow.ci_high - narrow.ci_low
    assert narrow.confidence == 0.80


def test_summarize_small_samples() -> None:
    one = summarize([0.7])
    assert one.n == 1 and one.mean == 0.7
    assert math.isnan(one.std) and math.isnan(one.ci_low) and math.isnan(one.ci_high)  # not a zero-width CI
    empty = summarize([])
    assert empty.n == 0 and math.isnan(empty.mean)
    same = summarize([0.5, 0.5, 0.5])
    assert same.std == 0.0 and same.ci_low == same.ci_high == 0.5


@pytest.mark.parametrize("bad", [[0.1, float("nan")], [0.1, float("inf")]])
def test_summarize_refuses_non_finite(bad: list[float]) -> None:
    with pytest.raises(MedMNISTLabError, match="finite"):
        summarize(bad)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95])
def test_summarize_refuses_bad_confidence(confidence: float) -> None:
    with pytest.raises(MedMNISTLabError, match=f"got {confidence}"):
        summarize([1.0, 2.0], confidence)


# ---------------------------------------------------------------------------------------------
# paired_difference


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_paired_difference_matches_scipy_ttest_rel(n: int) -> None:
    rng = np.random.default_rng(n)
    a = rng.normal(0.9, 0.01, n)
    b = a - 0.005 + rng.normal(0, 0.004, n)
    d = paired_difference(a, b)
    ref = st.ttest_rel(a, b)
    assert d.n == n
    assert d.mean == pytest.approx(float(np.mean(a - b)), rel=1e-12)
    assert d.t == pytest.approx(float(ref.statistic), rel=1e-10)
    assert d.p == pytest.approx(float(ref.pvalue), rel=1e-10)
    assert d.significant == (ref.pvalue < 0.05)
    lo, hi = ref.confidence_interval(0.95)
    assert (d.ci_low, d.ci_high) == pytest.approx((lo, hi), rel=1e-10)


def test_paired_difference_verdicts() -> None:
    # Seeds agree on a +0.02 gain: significant. Noise around 0: not significant, and says so.
    base = np.array([0.90, 0.88, 0.92, 0.89, 0.91])
    win = paired_difference(base + np.array([0.021, 0.019, 0.020, 0.022, 0.018]), base)
    assert win.significant and win.verdict().startswith("significant (p")
    noise = paired_difference(base + np.array([0.01, -0.012, 0.004, -0.003, 0.002]), base)
    assert not noise.significant
    assert noise.verdict() == f"not significant ({format_p(noise.p)})"
    assert noise.ci_low < 0 < noise.ci_high


def test_paired_difference_edge_cases() -> None:
    one = paired_difference([0.9], [0.8])
    assert one.n == 1 and one.mean == pytest.approx(0.1)
    assert math.isnan(one.p) and not one.significant and one.verdict() == "untested (n=1)"
    same = paired_difference([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert same.p == 1.0 and same.t == 0.0 and not same.significant
    shift = paired_difference([1.5, 2.5, 3.5], [1.0, 2.0, 3.0])  # exact in binary: std is exactly 0
    assert shift.p == 0.0 and shift.t == math.inf and shift.significant
    with pytest.raises(MedMNISTLabError, match="equal lengths; got 2 and 3"):
        paired_difference([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(MedMNISTLabError, match="alpha"):
        paired_difference([1.0, 2.0], [1.0, 2.0], alpha=1.5)


def test_format_p() -> None:
    assert format_p(0.4123) == "p=0.41"
    assert format_p(0.0456) == "p=0.046"
    assert format_p(0.0004) == "p<0.001"
    assert format_p(math.nan) == "p=n/a"


# ---------------------------------------------------------------------------------------------
# DeLong: pROC's aSAH data and its published values

# pROC's `aSAH` data (Turck et al. 2010, Intensive Care Medicine 36:107-115; shipped with the R
# package pROC, Robin et al. 2011): 113 patients, outcome Poor = 1. Transcribed values; that the
# AUCs and DeLong variances below come out as pROC's own to 1e-12 confirms the transcription.
ASAH_POOR = (
    "00001101001011001011101000000000100110110000000001100010001010011101101111000110100000010000000000001111110001000"
)
ASAH_WFNS = (
    "11113254125255125225211112121134214541425511241125521251222151125214524414121421232421451154221113125225552445111"
)
ASAH_S100B = """
0.13 0.14 0.1 0.04 0.13 0.1 0.47 0.16 0.18 0.1 0.12 0.1 0.44 0.71 0.04 0.08 0.49 0.04 0.07 0.33 0.09
0.09 0.07 0.11 0.07 0.17 0.07 0.11 0.13 0.19 0.05 0.16 0.41 0.14 0.34 0.35 0.48 0.09 0.96 0.25 0.5
0.46 0.16 0.07 0.43 0.45 0.11 0.08 0.09 0.86 0.52 0.08 0.06 0.13 2.07 0.1 0.14 0.15 0.07 0.06 0.77
0.05 0.09 0.3 0.03 0.09 0.04 0.23 0.7 0.09 0.27 0.71 0.08 0.26 0.08 0.16 0.09 0.13 0.1 0.08 0.11
0.33 0.11 0.28 0.07 0.1 0.32 0.22 0.07 0.05 0.24 0.38 0.1 0.15 0.08 0.14 0.1 0.07 0.04 0.19 0.56
0.14 0.58 0.32 0.82 0.74 0.15 0.47 0.17 0.44 0.15 0.5 0.48
"""
ASAH_NDKA = """
3.01 8.54 8.09 10.42 17.4 12.75 6.0 13.2 15.54 6.01 15.96 17.86 5.18 8.9 13.41 20.75 11.6 16.11
32.37 54.82 32.41 49.94 40.34 9.47 6.29 12.53 6.54 6.3 80.3 12.8 9.8 9.81 9.85 18.21 5.03 14.04
21.93 8.02 7.42 8.38 6.59 9.63 13.12 7.96 14.34 41.43 7.63 7.06 12.59 13.56 3.87 9.44 7.66 12.98
419.19 27.19 22.27 9.95 21.22 11.73 10.4 58.83 6.39 11.09 12.22 13.67 17.21 22.63 12.9 9.7 21.57
8.23 72.57 15.54 10.51 10.6 14.57 5.19 9.63 4.61 21.48 17.3 12.71 9.44 11.07 19.46 10.83 5.37 11.97
7.75 9.83 10.55 28.49 8.53 12.57 12.9 46.83 11.68 12.67 9.01 9.57 34.06 11.72 14.26 47.61 11.67
24.58 10.33 13.87 15.89 22.43 6.79 13.45
"""


def asah() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    y = np.array([int(c) for c in ASAH_POOR])
    markers = {
        "wfns": np.array([float(c) for c in ASAH_WFNS]),
        "s100b": np.array([float(v) for v in ASAH_S100B.split()]),
        "ndka": np.array([float(v) for v in ASAH_NDKA.split()]),
    }
    assert len(y) == 113 and y.sum() == 41 and all(len(v) == 113 for v in markers.values())
    return y, markers


# pROC tests/testthat/test-roc.test.R (roc.test, DeLong, paired, two-sided): Z, p, 95% CI of
# AUC(a) - AUC(b). The documented example roc.test(s100b, wfns) prints Z = -2.209,
# p-value = 0.02718: the first row with the curves swapped.
PROC_ROC_TEST = [
    ("wfns", "s100b", 2.20898359144091, 0.0271757822291882, 0.0104061769564846, 0.174214419249478),
    ("wfns", "ndka", 2.79777591868904, 0.00514557970691098, 0.0634011709339876, 0.3600405634833566),
    ("ndka", "s100b", -1.39077002573558, 0.164295175223054, -0.2876917446341914, 0.0488706064228094),
]


@pytest.mark.parametrize(("a", "b", "z", "p", "lo", "hi"), PROC_ROC_TEST)
def test_delong_matches_proc_roc_test(a: str, b: str, z: float, p: float, lo: float, hi: float) -> None:
    y, m = asah()
    r = delong_test(y, m[a], m[b])
    assert r.z == pytest.approx(z, rel=1e-10)
    assert r.p == pytest.approx(p, rel=1e-10)
    assert (r.ci_low, r.ci_high) == pytest.approx((lo, hi), rel=1e-10)
    assert (r.n_pos, r.n_neg) == (41, 72)
    swapped = delong_test(y, m[b], m[a])
    assert swapped.z == pytest.approx(-z, rel=1e-10) and swapped.p == pytest.approx(p, rel=1e-10)


def test_delong_documented_example_s100b_vs_wfns() -> None:
    y, m = asah()
    r = delong_test(y, m["s100b"], m["wfns"])
    assert round(r.z, 3) == -2.209 and round(r.p, 5) == 0.02718  # as pROC's roc.test help page prints
    assert round(r.auc_a, 4) == 0.7314 and round(r.auc_b, 4) == 0.8237


@pytest.mark.parametrize(
    ("marker", "auc", "var"),
    [
        # pROC tests/testthat/test-auc.R and test-var.R (var(roc) uses DeLong by default).
        ("wfns", 0.823678861788618, 0.00146991470882363),
        ("ndka", 0.611957994579946, 0.0031908105493913),
        ("s100b", None, 0.00266868245717244),
    ],
)
def test_delong_variance_matches_proc(marker: str, auc: float | None, var: float) -> None:
    y, m = asah()
    got_auc, got_var = delong_auc_variance(y, m[marker])
    assert got_var == pytest.approx(var, rel=1e-10)
    assert got_auc == pytest.approx(auc if auc is not None else roc_auc_score(y, m[marker]), rel=1e-12)


def test_delong_identical_scores_give_z0_p1() -> None:
    y, m = asah()
    r = delong_test(y, m["wfns"], m["wfns"])
    assert r.diff == 0.0 and r.se == 0.0 and r.z == 0.0 and r.p == 1.0  # as pROC: Z = 0, p = 1


# ---------------------------------------------------------------------------------------------
# DeLong: a tiny example by hand


def test_delong_tiny_example_by_hand() -> None:
    """y = [0, 0, 1, 1]; a = [.1, .4, .35, .8]; b = [.1, .2, .3, .4].

    Structural components (psi = 1 if positive > negative, 1/2 if tied):
      a: positives .35 -> beats .1 only: V10 = 1/2; .8 -> 1.            AUC_a = 3/4
         negatives .1 -> below both: V01 = 1; .4 -> below .8 only: 1/2.
      b: every positive beats every negative: V10 = V01 = [1, 1].      AUC_b = 1
    S10 = cov of V10 over positives (ddof=1): var_a = 1/8, var_b = 0, cov = 0; likewise S01.
    var(AUC_a - AUC_b) = (1/8 + 0 - 0) / m + (1/8 + 0 - 0) / n = 1/16 + 1/16 = 1/8 (m = n = 2).
    z = -0.25 / sqrt(1/8) = -1/sqrt(2) = -0.7071; p = 2 Phi(-0.7071) = 0.4795.
    """
    r = delong_test([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], [0.1, 0.2, 0.3, 0.4])
    assert r.auc_a == 0.75 and r.auc_b == 1.0 and r.diff == -0.25
    assert r.se == pytest.approx(math.sqrt(1 / 8), rel=1e-14)
    assert r.z == pytest.approx(-1 / math.sqrt(2), rel=1e-14)
    assert r.p == pytest.approx(0.4795001221869535, rel=1e-12)
    assert (r.ci_low, r.ci_high) == pytest.approx(
        (-0.25 - 1.959963984540054 / math.sqrt(8), -0.25 + 1.959963984540054 / math.sqrt(8))
    )
    assert delong_auc_variance([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == (0.75, pytest.approx(1 / 8))


# ---------------------------------------------------------------------------------------------
# DeLong: against an independent O(n^2) implementation and sklearn


def delong_quadratic(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """DeLong et al. (1988) straight from the definition: the Mann-Whitney kernel psi on every
    (positive, negative) pair, structural components as its row/column means, then
    var(diff) = (S10_aa + S10_bb - 2 S10_ab) / m + (S01_aa + S01_bb - 2 S01_ab) / n.
    Returns (auc_a, auc_b, var of the difference)."""
    pos, neg = y == 1, y == 0
    comps = []
    for s in (a, b):
        x, z = s[pos][:, None], s[neg][None, :]
        psi = (x > z) + 0.5 * (x == z)  # (m, n)
        comps.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = comps
    m, n = pos.sum(), neg.sum()
    s10, s01 = np.cov(v10a, v10b), np.cov(v01a, v01b)
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return float(auc_a), float(auc_b), float(var)


@pytest.mark.parametrize("seed", range(6))
def test_delong_fast_equals_quadratic_and_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 200))
    y = (rng.random(n) < rng.uniform(0.2, 0.8)).astype(int)
    y[:2] = [0, 1]  # both classes present
    a = y * rng.uniform(0, 1.5) + rng.normal(size=n)
    b = 0.6 * a + y * 0.3 + rng.normal(size=n)
    if seed % 2:  # coarse scores: many ties, where the midranks matter
        a, b = np.round(a, 1), np.round(b, 0)
    r = delong_test(y, a, b)
    auc_a, auc_b, var = delong_quadratic(y, a, b)
    assert r.auc_a == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert r.auc_b == pytest.approx(roc_auc_score(y, b), abs=1e-12)
    assert (r.auc_a, r.auc_b) == pytest.approx((auc_a, auc_b), abs=1e-12)
    assert r.se**2 == pytest.approx(var, rel=1e-9)
    assert r.p == pytest.approx(2 * st.norm.sf(abs(r.diff) / math.sqrt(var)), rel=1e-9)


def test_delong_p_is_uniform_under_the_null() -> None:
    """Two models of equal skill, correlated through a shared latent score: the test should
    reject at 5% about 5% of the time, and its p-values should look uniform."""
    rng = np.random.default_rng(2024)
    ps = []
    for _ in range(400):
        y = (rng.random(150) < 0.4).astype(int)
        shared = y * 0.8 + rng.normal(size=150)
        a = shared + rng.normal(size=150)
        b = shared + rng.normal(size=150)
        ps.append(delong_test(y, a, b).p)
    ps = np.array(ps)
    assert 0.02 <= float(np.mean(ps < 0.05)) <= 0.09  # binomial sd at n=400 is 0.011
    assert st.kstest(ps, "uniform").pvalue > 0.01


def test_delong_detects_a_real_difference() -> None:
    rng = np.random.default_rng(7)
    y = (rng.random(400) < 0.5).astype(int)
    strong, weak = y * 2.0 + rng.normal(size=400), y * 0.5 + rng.normal(size=400)
    r = delong_test(y, strong, weak)
    assert r.diff > 0.1 and r.p < 1e-6 and r.significant() and r.ci_low > 0


# ---------------------------------------------------------------------------------------------
# DeLong: inputs


@pytest.mark.parametrize(
    ("y", "a", "b", "match"),
    [
        ([0, 1, 2, 1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], r"binary \(0/1\); found 2 at index 2"),
        ([1, 1, 1], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], r"both classes.*all 3 labels are positive"),
        ([0, 0, 0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], "all 3 labels are negative"),
        ([0, 1, 0, 1], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3, 0.4], "scores_a has 3 values but y_true has 4"),
        (
            [0, 1, 0, 1],
            [0.1, 0.2, 0.3, 0.4],
            [0.1, float("nan"), 0.3, 0.4],
            r"scores_b must be finite; found nan at index 1",
        ),
        ([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], np.ones((4, 2)), r"scores_b must be one-dimensional, got shape \(4, 2\)"),
        (["a", "b", "a", "b"], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], "0/1 labels"),
    ],
)
def test_delong_rejects_bad_input(y: list, a: list, b: list, match: str) -> None:
    with pytest.raises(MedMNISTLabError, match=match):
        delong_test(y, a, b)


def test_delong_accepts_column_labels_and_bools() -> None:
    y = np.array([[0], [1], [0], [1], [1]])
    a, b = [0.1, 0.9, 0.4, 0.6, 0.3], [0.2, 0.8, 0.1, 0.7, 0.5]
    assert delong_test(y, a, b) == delong_test(y[:, 0].astype(bool), a, b)


def test_delong_single_positive_has_no_variance() -> None:
    r = delong_test([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.9], [0.3, 0.2, 0.1, 0.5])
    assert r.auc_a == 1.0 and r.auc_b == 1.0
    assert math.isnan(r.se) and math.isnan(r.p)  # one positive: its covariance is undefined


def test_bounded_summary_is_a_logit_t_interval_inside_0_1() -> None:
    values = np.array([0.28, 0.84])  # two seeds 0.56 apart: a plain t-interval runs from -3.0 to 4.1
    plain = summarize(values)
    assert plain.ci_low < 0 and plain.ci_high > 1 and plain.method == "t"
    bounded = summarize(values, bounded=True)
    z = np.log(values / (1 - values))
    half = st.t.ppf(0.975, df=1) * z.std(ddof=1) / np.sqrt(2)
    expit = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    assert bounded.method == "logit-t" and bounded.mean == pytest.approx(values.mean())
    assert (bounded.ci_low, bounded.ci_high) == pytest.approx((expit(z.mean() - half), expit(z.mean() + half)))
    assert 0 < bounded.ci_low < bounded.mean < bounded.ci_high < 1
    perfect = summarize([1.0, 1.0, 0.99], bounded=True)  # a perfect AUC has an infinite logit: moved inside
    assert 0.9 < perfect.ci_low <= perfect.ci_high <= 1
    mid = summarize([0.48, 0.5, 0.52], bounded=True)  # mid-range: close to the plain interval
    assert (mid.ci_low, mid.ci_high) == pytest.approx((summarize([0.48, 0.5, 0.52]).ci_low, 0.5497), abs=2e-3)
    assert summarize([1.0, 1.0, 1.0], bounded=True).ci_high == 1.0  # the mean stays inside its interval
    extreme = summarize([0.001, 0.999], confidence=0.999, bounded=True)  # no overflow far out on the logit scale
    assert 0 <= extreme.ci_low < extreme.ci_high <= 1
    with pytest.raises(MedMNISTLabError, match=r"\[0, 1\]"):
        summarize([0.5, 1.5], bounded=True)
