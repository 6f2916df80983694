"""Official AUC/ACC match `medmnist.evaluator` bit for bit; extra metrics are sane."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from medmnist.evaluator import getACC, getAUC
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    multilabel_confusion_matrix,
    precision_score,
    recall_score,
)

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.metrics import (
    Metrics,
    UndefinedAUCWarning,
    acc,
    auc,
    calibration,
    extra_metrics,
    official_metrics,
    scores_from_logits,
)

MULTI_LABEL = "multi-label, binary-class"


def random_case(task: str, n: int, k: int, seed: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    """Labels (N, 1) or (N, K) with every class present, and probabilities from random logits.
    With ties, scores are rounded to one decimal so many are equal (AUC and argmax ties)."""
    rng = np.random.default_rng(seed)
    if task == MULTI_LABEL:
        y = (rng.random((n, k)) < 0.3).astype(np.uint8)
        y[0], y[1] = 1, 0  # both sides of every label present
        logits = torch.from_numpy(rng.normal(size=(n, k)))
    else:
        y = (np.arange(n) % k).astype(np.uint8)[:, None]
        rng.shuffle(y)
        logits = torch.from_numpy(rng.normal(size=(n, k)))
    scores = scores_from_logits(logits, task)
    if ties:
        scores = np.round(scores, 1)
    return y, scores


CASES = [
    ("binary-class", 2),
    ("multi-class", 9),
    ("ordinal-regression", 5),
    (MULTI_LABEL, 14),
]


@pytest.mark.parametrize(("task", "k"), CASES)
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exactly_official(task: str, k: int, ties: bool, seed: int) -> None:
    y, s = random_case(task, 97, k, seed, ties)
    ours = official_metrics(y, s, task)
    assert ours == Metrics(auc=auc(y, s, task), acc=acc(y, s, task))
    # Exact equality: the same sums in the same order, not merely close.
    assert ours.auc == getAUC(y, s, task)
    assert ours.acc == getACC(y, s, task)
    assert 0.0 <= ours.auc <= 1.0 and 0.0 <= ours.acc <= 1.0


def test_binary_threshold_ties_at_half() -> None:
    """Exactly 0.5 is a negative under the official `> 0.5`; one score column works too."""
    y = np.array([[0], [1], [1], [0]])
    two = np.array([[0.5, 0.5], [0.2, 0.8], [0.5, 0.5], [0.9, 0.1]])
    assert acc(y, two, "binary-class") == getACC(y, two, "binary-class") == 0.75
    one = two[:, 1:]
    assert acc(y, one, "binary-class") == getACC(y, one, "binary-class") == 0.75
    assert auc(y, one, "binary-class") == getAUC(y, one, "binary-class")


def test_multiclass_argmax_tie_takes_first() -> None:
    y = np.array([0, 1, 2, 1])
    s = np.array([[0.4, 0.4, 0.2], [0.3, 0.3, 0.4], [0.1, 0.2, 0.7], [0.0, 1.0, 0.0]])
    assert acc(y, s, "multi-class") == getACC(y, s, "multi-class") == 0.75


@pytest.mark.parametrize(("task", "k"), CASES)
def test_absent_class_gives_nan_like_official(task: str, k: int) -> None:
    y, s = random_case(task, 40, k, 0, False)
    if task == MULTI_LABEL:
        y[:, 3] = 0
    else:
        y[y == k - 1] = 0  # class k-1 absent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        official = getAUC(y, s, task)
    with pytest.warns(UndefinedAUCWarning, match="only one class"):
        ours = auc(y, s, task)
    assert np.isnan(ours) and np.isnan(official)
    assert acc(y, s, task) == getACC(y, s, task)  # ACC stays defined


def test_scores_from_logits() -> None:
    logits = torch.tensor([[0.0, 0.0], [40.0, 0.0], [-3.0, 2.0]], dtype=torch.bfloat16)
    p = scores_from_logits(logits, "binary-class")
    assert p.dtype == np.float64 and p.shape == (3, 2)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=0, atol=1e-15)
    assert p[0, 1] == 0.5
    assert p[1, 1] > 0  # float64: does not underflow to exactly 0 as in float32
    ml = scores_from_logits(torch.tensor([[0.0, 2.0, -2.0]]), MULTI_LABEL)
    np.testing.assert_allclose(ml, torch.tensor([[0.0, 2.0, -2.0]]).double().sigmoid().numpy())
    single = scores_from_logits(torch.tensor([[0.0], [1.0]]), "binary-class")
    np.testing.assert_allclose(single[:, 0], [0.5, 1 / (1 + np.exp(-1.0))])


def test_unknown_task_and_bad_shapes() -> None:
    with pytest.raises(MedMNISTLabError, match=r"unknown task 'multiclass'.*multi-class"):
        auc(np.zeros(3), np.zeros((3, 2)), "multiclass")
    with pytest.raises(MedMNISTLabError, match="unknown task"):
        scores_from_logits(torch.zeros(2, 2), "regression")
    with pytest.raises(MedMNISTLabError, match="3 rows but y_score has 2"):
        acc(np.zeros(3), np.zeros((2, 2)), "multi-class")


# --- extras -------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "k"), CASES)
def test_extras_perfect_predictions(task: str, k: int) -> None:
    y, _ = random_case(task, 60, k, 3, False)
    if task == MULTI_LABEL:
        s = np.where(y == 1, 1.0, 0.0)
    elif task == "binary-class":
        s = np.concatenate([1.0 - y, y], axis=1).astype(float)
    else:
        s = np.eye(k)[y[:, 0]]
    names = [f"c{i}" for i in range(k)]
    ex = extra_metrics(y, s, task, names)
    json.dumps(ex, allow_nan=False)  # strictly JSON-serialisable
    assert ex["labels"] == names and ex["n_samples"] == 60
    for name in names:
        assert ex["per_class"][name]["precision"] == 1.0
        assert ex["per_class"][name]["recall"] == 1.0
        assert ex["per_class"][name]["f1"] == 1.0
    assert ex["balanced_accuracy"] == 1.0 and ex["macro_f1"] == 1.0
    assert ex["mcc"] == pytest.approx(1.0) and ex["specificity"] == 1.0
    assert ex["ece"] == pytest.approx(0.0, abs=1e-12)


def test_known_confusion_matrix_and_scores() -> None:
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    s = np.full((6, 3), 0.1)
    s[np.arange(6), pred] = 0.8
    ex = extra_metrics(y[:, None], s, "multi-class", ["a", "b", "c"])
    assert ex["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert ex["per_class"]["a"] == {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "specificity": 1.0, "support": 3}
    assert ex["per_class"]["b"]["specificity"] == 3 / 4 and ex["per_class"]["c"]["specificity"] == 4 / 5
    assert ex["specificity"] == pytest.approx((1 + 3 / 4 + 4 / 5) / 3)
    assert ex["mcc"] == pytest.approx(matthews_corrcoef(y, pred))
    assert ex["per_class"]["b"]["precision"] == 0.5 and ex["per_class"]["c"]["recall"] == 1.0
    assert ex["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert ex["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    # all confidences 0.8 (bin 12 of 15), accuracy 4/6
    assert ex["ece"] == pytest.approx(abs(4 / 6 - 0.8))
    assert ex["calibration"]["bin_count"][11] == 6
    assert ex["calibration"]["bin_confidence"][0] is None


@pytest.mark.parametrize(("task", "k"), CASES)
def test_extras_match_sklearn_on_random_scores(task: str, k: int) -> None:
    y, s = random_case(task, 80, k, 5, False)
    names = [str(i) for i in range(k)]
    ex = extra_metrics(y, s, task, names)
    if task == MULTI_LABEL:
        pred = s > 0.5
        p = precision_score(y, pred, average=None, zero_division=0)
        r = recall_score(y, pred, average=None, zero_division=0)
        f = f1_score(y, pred, average="macro", zero_division=0)
        tn, fp, fn, tp = (((y == a) & (pred == b)).sum(0) for a, b in ((0, 0), (0, 1), (1, 0), (1, 1)))
        assert ex["confusion_matrices"]["2"] == [[tn[2], fp[2]], [fn[2], tp[2]]]
        bal = np.mean([balanced_accuracy_score(y[:, i], pred[:, i]) for i in range(k)])
        mcc = np.mean([matthews_corrcoef(y[:, i], pred[:, i]) for i in range(k)])
        tn, fp = multilabel_confusion_matrix(y, pred)[:, 0, 0], multilabel_confusion_matrix(y, pred)[:, 0, 1]
        spec = tn / (tn + fp)
    else:
        pred = (s[:, 1] > 0.5).astype(int) if task == "binary-class" else s.argmax(1)
        p = precision_score(y[:, 0], pred, average=None, zero_division=0)
        r = recall_score(y[:, 0], pred, average=None, zero_division=0)
        f = f1_score(y[:, 0], pred, average="macro", zero_division=0)
        bal = balanced_accuracy_score(y[:, 0], pred)
        mcc = matthews_corrcoef(y[:, 0], pred)
        cm = confusion_matrix(y[:, 0], pred, labels=range(k))
        assert ex["confusion_matrix"] == cm.tolist()
        fp = cm.sum(0) - np.diag(cm)
        spec = (cm.sum() - cm.sum(1) - fp) / (cm.sum() - cm.sum(1))  # TN / (TN + FP), one class vs rest
    np.testing.assert_allclose([ex["per_class"][n]["precision"] for n in names], p)
    np.testing.assert_allclose([ex["per_class"][n]["recall"] for n in names], r)
    assert ex["macro_f1"] == pytest.approx(f)
    assert ex["balanced_accuracy"] == pytest.approx(bal)
    assert ex["mcc"] == pytest.approx(mcc) and -1.0 <= ex["mcc"] <= 1.0
    np.testing.assert_allclose([ex["per_class"][n]["specificity"] for n in names], spec)
    assert ex["specificity"] == pytest.approx(np.mean(spec))
    assert 0.0 < ex["ece"] < 1.0
    json.dumps(ex, allow_nan=False)


def test_calibration_known_values() -> None:
    conf = np.array([0.95, 0.95, 0.55, 0.55])
    correct = np.array([1, 0, 1, 1])
    cal = calibration(conf, correct)
    # bin of 0.95: acc .5, conf .95; bin of .55: acc 1, conf .55 -> (2*.45 + 2*.45) / 4
    assert cal["ece"] == pytest.approx(0.45)
    assert sum(cal["bin_count"]) == 4 and cal["bins"] == 15


def test_extras_bad_input() -> None:
    with pytest.raises(MedMNISTLabError, match=r"y_score must be \(N, 3\)"):
        extra_metrics(np.zeros(4), np.zeros((4, 2)), "multi-class", ["a", "b", "c"])
    with pytest.raises(MedMNISTLabError, match=r"labels must lie in 0..1"):
        extra_metrics(np.array([0, 2]), np.zeros((2, 2)), "binary-class", ["a", "b"])
    with pytest.raises(MedMNISTLabError, match="needs 2 label names, got 3"):
        extra_metrics(np.array([0, 1]), np.zeros((2, 2)), "binary-class", ["a", "b", "c"])
    with pytest.raises(MedMNISTLabError, match="must be distinct"):
        extra_metrics(np.array([0, 1]), np.zeros((2, 2)), "binary-class", ["a", "a"])


def test_mcc_and_specificity_on_known_values() -> None:
    """Binary: 3 TP, 1 FN, 4 TN, 2 FP; MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))."""
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.1, 0.3, 0.4, 0.6, 0.7])
    ex = extra_metrics(y[:, None], np.stack([1 - p, p], axis=1), "binary-class", ["neg", "pos"])
    assert ex["mcc"] == pytest.approx((3 * 4 - 2 * 1) / np.sqrt(5 * 4 * 6 * 5))
    assert ex["per_class"]["pos"]["specificity"] == pytest.approx(4 / 6)  # TN / (TN + FP) of "pos"
    assert ex["per_class"]["neg"]["specificity"] == pytest.approx(3 / 4)  # the recall of "pos"
    # a constant prediction: MCC is 0 (scikit-learn's convention), not NaN
    ex = extra_metrics(y[:, None], np.tile([0.9, 0.1], (10, 1)), "binary-class", ["neg", "pos"])
    assert ex["mcc"] == 0.0 and ex["per_class"]["neg"]["specificity"] == 0.0
    json.dumps(ex, allow_nan=False)
