"""Official submission files: the name format, the CSV layout, and re-scoring by `medmnist`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from medmnist.evaluator import Evaluator

from medmnist_lab.data.registry import get_dataset
from medmnist_lab.errors import DataFileError, MedMNISTLabError
from medmnist_lab.metrics import (
    Metrics,
    check_run,
    official_metrics,
    submission_filename,
    write_submission,
)
from synthetic import TASK_EXAMPLES


def official_root(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """`parse_and_evaluate` builds `Evaluator(flag, split, size=size)`, whose `root` default was
    bound to medmnist's DEFAULT_ROOT at import: point that default at our folder."""
    defaults = Evaluator.__init__.__defaults__
    assert defaults is not None and len(defaults) == 2  # (size=None, root=DEFAULT_ROOT)
    monkeypatch.setattr(Evaluator.__init__, "__defaults__", (None, str(root)))


def random_scores(labels: np.ndarray, task: str, n_classes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if task == "multi-label, binary-class":
        return rng.random((len(labels), n_classes))
    s = rng.random((len(labels), n_classes)) + np.eye(n_classes)[labels[:, 0]] * 0.5
    return s / s.sum(1, keepdims=True)


def test_filename_format() -> None:
    m = Metrics(auc=0.90149, acc=0.8625)
    assert submission_filename("breastmnist", 28, "test", m, 3) == "breastmnist_test_[AUC]0.901_[ACC]0.863@3.csv"
    assert submission_filename("BreastMNIST", 64, "val", m, "r-1") == "breastmnist_64_val_[AUC]0.901_[ACC]0.863@r-1.csv"
    # The v1 alias carries '_', which the official parser would split on: the v2 flag is used.
    assert submission_filename("organmnist_axial", 28, "train", m, 0).startswith("organamnist_train_")


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (("breastmnist", 28, "testing", 1), MedMNISTLabError, "unknown split 'testing'"),
        (("breastmnist", 32, "test", 1), DataFileError, "size 32 is not available"),
        (("breastmnst", 28, "test", 1), MedMNISTLabError, "unknown dataset 'breastmnst'"),
        (("breastmnist", 28, "test", "a.b"), MedMNISTLabError, "run name 'a.b'"),
        (("breastmnist", 28, "test", "x@y"), MedMNISTLabError, "run name 'x@y'"),
    ],
)
def test_filename_bad_input(args: tuple, error: type, match: str) -> None:
    flag, size, split, run = args
    with pytest.raises(error, match=match):
        submission_filename(flag, size, split, Metrics(0.5, 0.5), run)


def test_check_run() -> None:
    check_run("seed0_resnet18-2024")
    with pytest.raises(MedMNISTLabError, match="letters, digits"):
        check_run("my run")


def test_csv_is_what_pandas_writes(tmp_path: Path) -> None:
    s = np.array([[0.1, 0.9], [1e-20, 1.0], [1 / 3, 2 / 3]])
    path = write_submission(tmp_path / "preds", "breastmnist", 28, "val", s, Metrics(1, 1), 7)
    reference = tmp_path / "ref.csv"
    pd.DataFrame(s).to_csv(reference, header=None)
    assert path.read_bytes() == reference.read_bytes()
    assert path.read_text().splitlines()[0] == "0,0.1,0.9"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left
    back = pd.read_csv(path, index_col=0, header=None).sort_index().values
    assert np.array_equal(back, s)  # floats round-trip exactly


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(MedMNISTLabError):
        write_submission(tmp_path, "breastmnist", 28, "val", np.zeros((2, 2, 2)), Metrics(1, 1), 1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("task", list(TASK_EXAMPLES))
@pytest.mark.parametrize("split", ["val", "test"])
def test_official_parse_and_evaluate_rescores(
    task: str, split: str, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = TASK_EXAMPLES[task]
    info = get_dataset(flag)
    labels = np.load(synthetic_root / f"{flag}.npz")[f"{split}_labels"]
    scores = random_scores(labels, info.task, info.n_classes, seed=len(flag))
    metrics = official_metrics(labels, scores, info.task)
    assert not np.isnan(metrics.auc)  # NaN != NaN would make the comparison below meaningless
    path = write_submission(tmp_path, flag, 28, split, scores, metrics, run=5)

    official_root(monkeypatch, synthetic_root)
    rescored = Evaluator.parse_and_evaluate(str(path))
    assert (metrics.auc, metrics.acc) == (rescored.AUC, rescored.ACC)
    # The official evaluator writes its own file next to ours; same name means same format.
    assert sorted(os.listdir(tmp_path)) == [path.name]


def test_official_rescoring_real_64px_file(real_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    labels = np.load(real_root / "breastmnist_64.npz")["test_labels"]
    assert labels.shape == (156, 1)
    scores = random_scores(labels, "binary-class", 2, seed=11)
    metrics = official_metrics(labels, scores, "binary-class")
    path = write_submission(tmp_path, "breastmnist", 64, "test", scores, metrics, run="real")
    assert path.name.startswith("breastmnist_64_test_[AUC]")

    official_root(monkeypatch, real_root)
    rescored = Evaluator.parse_and_evaluate(str(path))
    assert (metrics.auc, metrics.acc) == (rescored.AUC, rescored.ACC)
    assert sorted(os.listdir(tmp_path)) == [path.name]
