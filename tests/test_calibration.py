"""Trust (calibration, conformal prediction sets, selective prediction): the math on constructed
cases, against scikit-learn and MAPIE where they compute the same thing, and the `calibrate`
command on tiny runs of the real BreastMNIST and RetinaMNIST files."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import brier_score_loss, log_loss

from cli_run import run_cli
from medmnist_lab.deploy import calibrate as calibrate_module
from medmnist_lab.deploy.calibrate import CALIBRATION_FILE, calibrate, load_calibration
from medmnist_lab.engine import fit, resolve_config
from medmnist_lab.engine.scoring import split_logits
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.metrics.conformal import (
    SCORES,
    conformal_quantile,
    conformal_sets,
    conformity_scores,
    coverage_report,
    coverage_tolerance,
)
from medmnist_lab.metrics.extra import calibration
from medmnist_lab.metrics.official import scores_from_logits
from medmnist_lab.metrics.reliability import (
    METHODS,
    Scaling,
    brier,
    calibration_scores,
    classwise_ece,
    degenerate_fit,
    ece_equal_mass,
    fit_scaling,
    nll,
)
from medmnist_lab.metrics.selective import accuracy_at, aurc, risk_coverage, selective_metrics

TINY = dict(width=8, batch_size=64, amp=False)
MULTI_LABEL = "multi-label, binary-class"


def softmax(z: np.ndarray) -> np.ndarray:
    return scores_from_logits(torch.from_numpy(z), "multi-class")


def draw(rng: np.random.Generator, n: int, k: int, scale: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from the softmax of those logits (a perfectly calibrated model)."""
    z = rng.normal(size=(n, k)) * scale
    p = softmax(z)
    y = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return z, y


# --- scaling -----------------------------------------------------------------------------------


class GivenLogits(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier whose inputs are its logits (to hand them to sklearn's calibrator)."""

    def fit(self, X, y):
        self.classes_ = np.arange(X.shape[1])
        return self

    def decision_function(self, X):
        return np.asarray(X)

    def predict(self, X):
        return np.asarray(X).argmax(1)


def test_temperature_equals_scikit_learns_and_lowers_nll() -> None:
    z, y = draw(np.random.default_rng(0), 600, 4)
    over = z * 3  # an overconfident model: the right temperature is about 3
    ours = fit_scaling(over, y, "multi-class", "temperature")
    sk = CalibratedClassifierCV(FrozenEstimator(GivenLogits().fit(over, y)), method="temperature").fit(over, y)
    sk_t = 1 / sk.calibrated_classifiers_[0].calibrators[0].beta_
    assert ours.temperature[0] == pytest.approx(sk_t, rel=1e-5)
    assert 2.5 < ours.temperature[0] < 3.5
    p_ours = ours.probabilities(over, "multi-class")
    assert np.abs(p_ours - sk.predict_proba(over)).max() < 1e-5
    before = nll(softmax(over), y, "multi-class")
    assert nll(p_ours, y, "multi-class") < before - 0.05
    # the temperature minimises the NLL: a finer grid around it finds nothing lower
    grid = ours.temperature[0] * np.linspace(0.9, 1.1, 41)
    losses = [nll(softmax(over / t), y, "multi-class") for t in grid]
    assert nll(p_ours, y, "multi-class") <= min(losses) + 1e-9
    assert (p_ours.argmax(1) == over.argmax(1)).all()  # temperature never changes a prediction


@pytest.mark.slow
def test_vector_scaling_recovers_a_known_per_class_scaling() -> None:
    rng = np.random.default_rng(1)
    w, b = np.array([0.5, 2.0, 1.0]), np.array([0.3, -0.2, -0.1])
    raw = rng.normal(size=(20000, 3)) * 2
    true = raw * w + b  # the calibrated logits labels are drawn from
    y = (softmax(true).cumsum(1) > rng.random((20000, 1))).argmax(1)
    got = fit_scaling(raw, y, "multi-class", "vector")
    np.testing.assert_allclose(got.weight, w, atol=0.1)
    # softmax is unchanged by a shift of every bias: compare the differences
    np.testing.assert_allclose(np.diff(got.bias), np.diff(b), atol=0.1)
    # the minimum of the NLL, as scipy's general-purpose minimiser finds it
    from scipy.optimize import minimize

    def loss(theta: np.ndarray) -> float:
        return nll(softmax(raw * theta[:3] + theta[3:]), y, "multi-class")

    best = minimize(loss, np.r_[np.ones(3), np.zeros(3)], method="BFGS")
    assert loss(np.r_[got.weight, got.bias]) <= best.fun + 1e-7
    assert nll(got.probabilities(raw, "multi-class"), y, "multi-class") < nll(softmax(raw), y, "multi-class")


def test_multi_label_gets_one_temperature_per_label() -> None:
    rng = np.random.default_rng(2)
    temps = np.array([0.5, 1.0, 3.0])
    z = rng.normal(size=(5000, 3)) * 2
    y = (rng.random((5000, 3)) < 1 / (1 + np.exp(-z / temps))).astype(np.uint8)
    got = fit_scaling(z, y, MULTI_LABEL, "temperature")
    assert len(got.temperature) == 3
    np.testing.assert_allclose(got.temperature, temps, rtol=0.15)


def test_scaling_round_trips_through_its_record() -> None:
    for scaling in (Scaling("temperature", (0.5,), (0.0,)), Scaling("vector", (1.0, 2.0), (0.1, -0.1))):
        again = Scaling.from_dict(json.loads(json.dumps(scaling.to_dict())))
        np.testing.assert_allclose(again.weight, scaling.weight)
        np.testing.assert_allclose(again.bias, scaling.bias)
    assert Scaling("temperature", (0.5,), (0.0,)).to_dict() == {"method": "temperature", "temperature": [2.0]}
    with pytest.raises(MedMNISTLabError, match="unknown calibration method 'platt'; choose one of: temperature"):
        fit_scaling(np.zeros((4, 2)), np.array([0, 1, 0, 1]), "binary-class", "platt")


def test_a_runaway_fit_is_named_in_words() -> None:
    rng = np.random.default_rng(0)
    noise, y = rng.normal(size=(200, 2)) * 3, rng.integers(0, 2, size=(200, 1))  # logits unrelated to labels
    flat = fit_scaling(noise, y, "multi-class", "temperature")
    (warning,) = degenerate_fit(flat)
    assert flat.temperature[0] > 20 and "nearly uniform" in warning and f"{flat.temperature[0]:.3g}" in warning
    reversed_ = fit_scaling(noise, y, "multi-class", "vector")
    warnings_ = degenerate_fit(reversed_, ["benign", "malignant"])
    assert warnings_ and all("not positive" in w and "use temperature" in w for w in warnings_)
    assert any("benign" in w or "malignant" in w for w in warnings_)
    assert (
        degenerate_fit(Scaling("temperature", (1 / 100,), (0.0,)))
        and "pushed to 0 and 1" in degenerate_fit(Scaling("temperature", (100.0,), (0.0,)))[0]
    )
    informative = rng.normal(size=(2000, 2)) * 2
    labels = (rng.random(2000) < 1 / (1 + np.exp(-(informative[:, 1] - informative[:, 0]) / 1.5))).astype(int)
    assert degenerate_fit(fit_scaling(informative, labels[:, None], "multi-class", "temperature")) == []
    assert degenerate_fit(fit_scaling(informative, labels[:, None], "multi-class", "vector")) == []


# --- measures ----------------------------------------------------------------------------------


def test_nll_and_brier_equal_scikit_learns() -> None:
    z, y = draw(np.random.default_rng(3), 300, 5)
    p = softmax(z)
    assert nll(p, y, "multi-class") == pytest.approx(log_loss(y, p, labels=range(5)), rel=1e-12)
    assert brier(p, y, "multi-class") == pytest.approx(brier_score_loss(y, p, labels=range(5)), rel=1e-12)
    pb = softmax(z[:, :2])
    yb = (pb[:, 1] > np.random.default_rng(4).random(300)).astype(int)
    assert nll(pb, yb, "binary-class") == pytest.approx(log_loss(yb, pb[:, 1]), rel=1e-12)
    # two-class Brier as sum over both columns: twice scikit-learn's (which scores the positive column)
    assert brier(pb, yb, "binary-class") == pytest.approx(2 * brier_score_loss(yb, pb[:, 1]), rel=1e-12)


def test_ece_variants_on_known_values() -> None:
    conf = np.array([0.9, 0.9, 0.9, 0.9, 0.6, 0.6, 0.6, 0.6])
    right = np.array([1, 1, 1, 0, 1, 0, 0, 0])
    # two equal-mass bins: the four 0.6 (accuracy .25) and the four 0.9 (accuracy .75)
    assert ece_equal_mass(conf, right, bins=2) == pytest.approx((4 * 0.35 + 4 * 0.15) / 8)
    assert calibration(conf, right, 15)["ece"] == pytest.approx(0.25)
    # class-wise: the mean over classes of p_k against [y == k]
    p = np.array([[0.8, 0.2], [0.8, 0.2], [0.3, 0.7], [0.3, 0.7]])
    y = np.array([0, 1, 1, 1])
    per = [calibration(p[:, k], y == k)["ece"] for k in range(2)]
    assert classwise_ece(p, y, "multi-class") == pytest.approx(np.mean(per))
    scores = calibration_scores(p, y, "binary-class")
    assert set(scores) == {"ece", "ece_mass", "classwise_ece", "nll", "brier"}
    assert scores["nll"] == pytest.approx(-np.mean(np.log([0.8, 0.2, 0.7, 0.7])))


# --- conformal ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("score", SCORES)
def test_conformal_coverage_over_200_random_splits(score: str) -> None:
    """Exchangeable calibration and test images: the mean coverage is 1 - ALPHA within 0.02."""
    rng = np.random.default_rng(10)
    alpha, coverages, sizes = 0.1, [], []
    for i in range(200):
        z, y = draw(rng, 400, 4)
        p = softmax(z)
        sets = conformal_sets(p[:200], y[:200], p[200:], alpha, score, seed=i)
        report = coverage_report(sets.sets, y[200:], alpha)
        coverages.append(report["coverage"])
        sizes.append(report["mean_set_size"])
    assert abs(np.mean(coverages) - (1 - alpha)) <= 0.02, np.mean(coverages)
    assert 1.0 < np.mean(sizes) < 4.0  # informative sets, not every class


@pytest.mark.slow
def test_mondrian_covers_every_class_where_plain_lac_does_not() -> None:
    """A hard class (its logits carry little signal) is under-covered by LAC; Mondrian LAC covers
    every class at 1 - ALPHA within 0.02 (means over 200 random splits)."""
    rng = np.random.default_rng(11)
    alpha, plain, mondrian = 0.1, [], []
    for i in range(200):
        y = rng.integers(0, 3, size=1200)
        z = rng.normal(size=(1200, 3))
        z[np.arange(1200), y] += np.where(y == 2, 0.3, 3.0)  # class 2 is hard
        p = softmax(z)
        for out, flag in ((plain, False), (mondrian, True)):
            sets = conformal_sets(p[:600], y[:600], p[600:], alpha, "lac", mondrian=flag, seed=i)
            report = coverage_report(sets.sets, y[600:], alpha)
            out.append([report["per_class"][str(c)]["coverage"] for c in range(3)])
    assert np.mean(plain, axis=0)[2] < 1 - alpha - 0.05  # the hard class loses under plain LAC
    np.testing.assert_allclose(np.mean(mondrian, axis=0), 1 - alpha, atol=0.02)


def test_lac_sets_equal_mapies() -> None:
    from mapie.classification import SplitConformalClassifier

    class GivenProbabilities(ClassifierMixin, BaseEstimator):
        def fit(self, X, y=None):
            self.classes_ = np.arange(4)
            return self

        def predict_proba(self, X):
            return np.asarray(X)

        def predict(self, X):
            return np.asarray(X).argmax(1)

    z, y = draw(np.random.default_rng(12), 700, 4)
    p = softmax(z)
    ours = conformal_sets(p[:300], y[:300], p[300:], 0.1, "lac").sets
    mapie = SplitConformalClassifier(GivenProbabilities().fit(p), confidence_level=0.9, conformity_score="lac")
    _, theirs = mapie.conformalize(p[:300], y[:300]).predict_set(p[300:])
    assert (ours == theirs[:, :, 0]).all()


def test_aps_and_raps_scores_equal_a_direct_loop() -> None:
    rng = np.random.default_rng(13)
    p = softmax(rng.normal(size=(50, 5)))
    y, u = rng.integers(0, 5, 50), rng.random(50)
    for score, lam in (("aps", 0.0), ("raps", 0.01)):
        got = conformity_scores(p, y, score, u)
        for i in range(50):
            order = sorted(range(5), key=lambda k, i=i: -p[i, k])
            rank = order.index(y[i])  # 0-based
            want = sum(p[i, order[j]] for j in range(rank)) + u[i] * p[i, y[i]] + lam * max(0, rank + 1 - 1)
            assert got[i] == pytest.approx(want, abs=1e-12)
    scores = np.arange(1, 11) / 10  # n = 10, ALPHA 0.1: the ceil(11 * 0.9) = 10th smallest
    assert conformal_quantile(scores, 0.1) == 1.0
    assert conformal_quantile(scores, 0.3) == 0.8  # ceil(11 * 0.7) = 8
    assert math.isinf(conformal_quantile(scores[:8], 0.1))


def test_a_coverage_shortfall_is_reported_in_words() -> None:
    y = np.zeros(200, dtype=int)
    sets = np.ones((200, 2), dtype=bool)
    sets[:40, 0] = False  # coverage 0.8 on 200 images for a target of 0.9
    report = coverage_report(sets, y, 0.1, ["a", "b"], "test")
    tol = coverage_tolerance(200, 0.1)
    assert 0.85 < tol < 0.9 and report["tolerance"] == tol
    assert report["coverage"] == 0.8 and len(report["warnings"]) == 1
    assert report["warnings"][0].startswith("test coverage is 0.800 on 200 images, 0.100 below the target 0.900")
    sets[:25, 0] = True  # coverage 0.925: no warning
    assert coverage_report(sets, y, 0.1)["warnings"] == []


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"alpha": 0.0}, "ALPHA must lie in (0, 1)"),
        ({"alpha": 1.5}, "ALPHA must lie in (0, 1)"),
        ({"alpha": 0.01}, "needs at least 100 val images (1/ALPHA), the val split has 50"),
        ({"alpha": 0.1, "mondrian": True}, "too few: 2 (4)"),
        ({"alpha": 0.1, "score": "topk"}, "unknown conformal score 'topk'"),
    ],
)
def test_conformal_bad_input(kwargs: dict, needle: str) -> None:
    rng = np.random.default_rng(14)
    p = softmax(rng.normal(size=(50, 3)))
    y = np.array([0] * 23 + [1] * 23 + [2] * 4)
    with pytest.raises(MedMNISTLabError) as err:
        conformal_sets(p, y, p, **kwargs)
    assert needle in str(err.value)


# --- selective prediction ----------------------------------------------------------------------


def test_risk_coverage_on_known_values() -> None:
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    right = np.array([1, 1, 0, 1, 0])
    coverage, risk = risk_coverage(conf, right)
    np.testing.assert_allclose(coverage, [0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(risk, [0, 0, 1 / 3, 1 / 4, 2 / 5])
    assert aurc(conf, right) == pytest.approx((0 + 0 + 1 / 3 + 1 / 4 + 2 / 5) / 5)
    assert accuracy_at(conf, right, 0.8) == pytest.approx(3 / 4)
    assert accuracy_at(conf, right, 0.9) == pytest.approx(3 / 5)  # ceil(4.5) = 5 kept
    probs = np.stack([1 - conf, conf], axis=1)  # binary: the decision is p > 0.5
    m = selective_metrics(np.array([1, 1, 0, 1, 1]), probs, "binary-class")
    assert m["acc_at_coverage"] == {"0.9": pytest.approx(3 / 5), "0.8": pytest.approx(3 / 4)}
    assert len(m["risk_coverage"]["coverage"]) == 20 and m["risk_coverage"]["risk"][-1] == pytest.approx(2 / 5)


# --- the command on real files -----------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(real_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("calibration")
    made = {}
    for flag in ("breastmnist", "retinamnist"):
        cfg = resolve_config(flag, root=str(real_root), out_dir=str(out), name="r", epochs=2, **TINY)
        made[flag] = fit(cfg, progress=False).run_dir
    cfg = resolve_config("breastmnist", root=str(real_root), out_dir=str(out), name="other", epochs=1, seed=1, **TINY)
    made["other"] = fit(cfg, progress=False).run_dir
    return made


CASES = [
    ("breastmnist", ["--method", "temperature"]),
    ("breastmnist", ["--method", "vector", "--conformal", "0.1", "--score", "lac"]),
    ("breastmnist", ["--conformal", "0.1", "--score", "aps"]),
    ("breastmnist", ["--conformal", "0.2", "--score", "raps", "--mondrian"]),
    ("retinamnist", ["--method", "temperature", "--conformal", "0.1", "--score", "raps"]),
    ("retinamnist", ["--method", "vector", "--conformal", "0.2", "--score", "aps", "--mondrian"]),
    ("retinamnist", ["--conformal", "0.1", "--score", "lac"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("flag", "argv"), CASES, ids=[f"{f} {' '.join(a)}" for f, a in CASES])
def test_calibrate_on_real_files(flag: str, argv: list[str], runs, real_root: Path, tmp_path: Path, capsys) -> None:
    checkpoint = runs[flag] / "best.pt"
    out = tmp_path / "calibration.json"
    rc, stdout, err = run_cli(capsys, "calibrate", checkpoint, *argv, "-o", out, "--root", real_root)
    assert rc == 0, err
    record = json.loads(out.read_text())
    method = argv[argv.index("--method") + 1] if "--method" in argv else "temperature"
    assert record["method"] == method and record["fitted_on"] == "val"
    assert record["n_fitted"] == {"breastmnist": 78, "retinamnist": 120}[flag]
    assert record["scores"]["test"]["n"] == {"breastmnist": 156, "retinamnist": 400}[flag]
    val = record["scores"]["val"]
    assert val["after"]["nll"] < val["before"]["nll"]  # fitted on val: its NLL goes down
    k = {"breastmnist": 2, "retinamnist": 5}[flag]
    if method == "temperature":
        assert len(record["parameters"]["temperature"]) == 1
    else:
        assert len(record["parameters"]["weight"]) == k and len(record["parameters"]["bias"]) == k
    _, scaling = load_calibration(checkpoint, out)  # the checkpoint it was made for: accepted
    assert scaling.method == method
    assert f"{method} scaling fitted on val" in stdout and "saved: " in stdout
    for split in ("val", "test"):
        for when in ("before", "after"):
            assert set(record["scores"][split][when]) == {"ece", "ece_mass", "classwise_ece", "nll", "brier"}
    conf = record["conformal"]
    if "--conformal" in argv:
        test = conf["test"]
        assert conf["score"] == argv[argv.index("--score") + 1] and conf["mondrian"] == ("--mondrian" in argv)
        assert test["n"] == record["scores"]["test"]["n"] and len(test["per_class"]) == k
        assert 0.0 <= test["empty_share"] <= 1.0 and 0.0 <= test["singleton_share"] <= 1.0
        assert test["singleton_share"] + test["empty_share"] <= 1.0 + 1e-12
        assert 0.0 <= test["mean_set_size"] <= k
        n_cov = sum(row["coverage"] * row["n"] for row in test["per_class"].values())
        assert n_cov / test["n"] == pytest.approx(test["coverage"])
        assert "conformal sets" in stdout and "per class:" in stdout
    else:
        assert conf is None
    verdict = "NOT VALIDATED" in stdout
    assert verdict == bool(record["warnings"]) and (record["status"] == "warning") == verdict


@pytest.mark.slow
def test_the_test_split_never_influences_the_fit(runs, real_root: Path, tmp_path: Path, monkeypatch) -> None:
    """Same val, different test logits and labels: the same parameters and thresholds."""
    checkpoint = runs["breastmnist"] / "best.pt"
    real = split_logits(checkpoint, root=str(real_root))
    records = []
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        n = len(real.labels["test"])
        fake = replace(
            real,
            logits={**real.logits, "test": torch.from_numpy(rng.normal(size=(n, 2)).astype(np.float32))},
            labels={**real.labels, "test": rng.integers(0, 2, size=(n, 1))},
        )
        monkeypatch.setattr(calibrate_module, "split_logits", lambda *a, fake=fake, **k: fake)
        for method in METHODS:
            out = tmp_path / f"{seed}_{method}.json"
            rec = calibrate(checkpoint, method, conformal=0.1, score="aps", output=out, root=str(real_root)).record
            records.append((method, rec))
    for method in METHODS:
        a, b = (r for m, r in records if m == method)
        assert a["parameters"] == b["parameters"] and a["conformal"]["quantiles"] == b["conformal"]["quantiles"]
        assert a["scores"]["val"] == b["scores"]["val"]
        assert a["scores"]["test"] != b["scores"]["test"]


@pytest.mark.slow
def test_a_calibration_that_does_not_carry_over_says_so(
    runs, real_root: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """Val where the logits are right, test where they are reversed: the fit lowers val NLL, makes
    test NLL/ECE worse and the sets miss on test; the command says which split and by how much."""
    checkpoint = runs["breastmnist"] / "best.pt"
    real = split_logits(checkpoint, root=str(real_root))
    rng = np.random.default_rng(5)

    def logits(y: np.ndarray, sign: float) -> torch.Tensor:
        z = rng.normal(size=(y.size, 2))
        z[np.arange(y.size), y.ravel()] += sign * 3.0
        return torch.from_numpy(z.astype(np.float32))

    fake = replace(
        real,
        logits={"val": logits(real.labels["val"], 1.0), "test": logits(real.labels["test"], -1.0)},
    )
    monkeypatch.setattr(calibrate_module, "split_logits", lambda *a, **k: fake)
    out = tmp_path / "c.json"
    rc, stdout, err = run_cli(capsys, "calibrate", checkpoint, "--conformal", "0.1", "-o", out)
    assert rc == 0, err
    record = json.loads(out.read_text())
    assert record["status"] == "warning"
    assert "NOT VALIDATED" in stdout and "ok:" not in stdout
    test = record["scores"]["test"]
    worse = [w for w in record["warnings"] if w.startswith("temperature scaling made test NLL worse")]
    assert len(worse) == 1 and f"{test['before']['nll']:.4f} -> {test['after']['nll']:.4f}" in worse[0]
    short = [w for w in record["warnings"] if w.startswith("test coverage is ")]
    assert len(short) == 1 and "below the target 0.900" in short[0]
    assert all(f"warning: {w}" in stdout for w in record["warnings"])


@pytest.mark.slow
def test_evaluate_reports_selective_prediction(runs, real_root: Path, capsys) -> None:
    checkpoint = runs["retinamnist"] / "best.pt"
    rc, stdout, err = run_cli(capsys, "evaluate", checkpoint, "--root", real_root)
    assert rc == 0, err
    record = json.loads((checkpoint.parent / "eval_best_test.json").read_text())
    sel = record["selective"]
    assert set(sel) == {"aurc", "acc_at_coverage", "risk_coverage", "n_predictions"} and sel["n_predictions"] == 400
    assert set(sel["acc_at_coverage"]) == {"0.9", "0.8"}
    assert sel["risk_coverage"]["risk"][-1] == pytest.approx(1 - record["acc"])  # all kept: the error rate
    line = next(line for line in stdout.splitlines() if "selective:" in line)
    assert f"AURC {sel['aurc']:.4f}" in line and f"at 80% coverage {sel['acc_at_coverage']['0.8']:.4f}" in line
    assert "mcc:" in stdout and "specificity:" in stdout


@pytest.mark.slow
def test_multi_label_calibration_has_one_temperature_per_label(synthetic_root: Path, tmp_path: Path, capsys) -> None:
    torch.set_num_threads(1)
    cfg = resolve_config("chestmnist", root=str(synthetic_root), out_dir=str(tmp_path), name="c", epochs=1, **TINY)
    checkpoint = fit(cfg, progress=False).run_dir / "best.pt"
    rc, stdout, err = run_cli(capsys, "calibrate", checkpoint, "--root", synthetic_root)
    assert rc == 0, err
    record = json.loads((checkpoint.parent / CALIBRATION_FILE).read_text())
    assert len(record["parameters"]["temperature"]) == 14 and "(one per label)" in stdout
    rc, _, err = run_cli(capsys, "calibrate", checkpoint, "--conformal", "0.1", "--overwrite", "--root", synthetic_root)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "--conformal is for single-label tasks" in lines[0]


# --- bad input: one line, exit 2, nothing replaced ---------------------------------------------


def _one_line_error(capsys, *argv) -> str:
    rc, out, err = run_cli(capsys, *argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (rc, out, err)
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in out + err, err
    return lines[0]


@pytest.mark.slow
def test_bad_inputs_are_one_line_and_replace_nothing(runs, real_root: Path, tmp_path: Path, capsys) -> None:
    checkpoint = runs["breastmnist"] / "best.pt"
    root = ["--root", real_root]
    target = checkpoint.parent / CALIBRATION_FILE
    assert run_cli(capsys, "calibrate", checkpoint, *root, "--overwrite")[0] == 0
    before = target.read_bytes()
    # existing calibration.json of this checkpoint, without --overwrite
    line = _one_line_error(capsys, "calibrate", checkpoint, *root)
    assert f"{target} already exists; pass --overwrite" in line
    # ALPHA outside (0, 1)
    for alpha in ("0", "1.5", "1", "nan"):
        line = _one_line_error(capsys, "calibrate", checkpoint, "--conformal", alpha, "--overwrite", *root)
        assert "--conformal" in line and "valid: (0, 1)" in line
    # a split with fewer than 1/ALPHA images (BreastMNIST val: 78)
    line = _one_line_error(capsys, "calibrate", checkpoint, "--conformal", "0.005", "--overwrite", *root)
    assert "needs at least 200 val images (1/ALPHA), the val split has 78" in line
    line = _one_line_error(
        capsys,
        "calibrate",
        runs["retinamnist"] / "best.pt",
        "--conformal",
        "0.1",
        "--mondrian",
        "-o",
        tmp_path / "x.json",
    )
    assert "too few: 4 (6)" in line and "drop --mondrian" in line
    line = _one_line_error(capsys, "calibrate", checkpoint, "--mondrian", "--overwrite", *root)
    assert "--mondrian needs --conformal ALPHA" in line
    line = _one_line_error(capsys, "calibrate", checkpoint, "--method", "platt", *root)
    assert "platt" in line and "temperature" in line
    assert target.read_bytes() == before
    # a calibration of another run beside a checkpoint: named as such, not replaced
    other = runs["other"] / "best.pt"
    foreign = other.parent / CALIBRATION_FILE
    foreign.write_bytes(before)
    line = _one_line_error(capsys, "calibrate", other, *root)
    assert "already holds a calibration of another checkpoint" in line and "config hash" in line
    assert foreign.read_bytes() == before
    # ... and refused when used (hash mismatch), as is one of the same run's other weights
    with pytest.raises(MedMNISTLabError, match=r"does not belong to .*another run"):
        load_calibration(other)
    with pytest.raises(MedMNISTLabError, match="other weights of this run"):
        load_calibration(checkpoint.parent / "last.pt", target)


def test_the_cli_restates_the_library_choices() -> None:
    from medmnist_lab.cli import calibrate as cli
    from medmnist_lab.metrics import conformal as conf
    from medmnist_lab.metrics import reliability as cal

    assert cli.METHODS == cal.METHODS and cli.SCORES == conf.SCORES
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert coverage_tolerance(0, 0.1) == 0.0
