"""Prediction files in the official MedMNIST submission format.

Name: `{flag}{size_flag}_{split}_[AUC]{auc:.3f}_[ACC]{acc:.3f}@{run}.csv`, `size_flag` empty for
28 px and `_{size}` otherwise. Content: what `pd.DataFrame(y_score).to_csv(path, header=None)`
writes (a row index column, then the scores, no header), which the official
`medmnist.Evaluator.parse_and_evaluate(path)` reads back and re-scores.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from medmnist_lab.data.registry import SPLITS, get_dataset
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.metrics.official import Metrics
from medmnist_lab.outputs import atomic_path

# parse_and_evaluate takes the run as the text between the last '@' and the first '.' after it.
_RUN_RE = re.compile(r"[A-Za-z0-9_-]+")


def check_run(run: str | int) -> None:
    """Refuse a run name the official parser would cut short; call it before a long run."""
    if not _RUN_RE.fullmatch(str(run)):
        raise MedMNISTLabError(
            f"run name '{run}' cannot go into an official prediction file name; use only letters, digits, '_' and '-'"
        )


def submission_filename(flag: str, size: int, split: str, metrics: Metrics, run: str | int) -> str:
    info = get_dataset(flag, warn_alias=False)  # the official name: v1 aliases contain '_'
    info.check_size(size)
    if split not in SPLITS:
        raise MedMNISTLabError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
    check_run(run)
    size_flag = "" if size == 28 else f"_{size}"
    return f"{info.flag}{size_flag}_{split}_[AUC]{metrics.auc:.3f}_[ACC]{metrics.acc:.3f}@{run}.csv"


def write_submission(
    folder: str | os.PathLike[str],
    flag: str,
    size: int,
    split: str,
    y_score: np.ndarray,
    metrics: Metrics,
    run: str | int,
) -> Path:
    """Write the scores atomically (`outputs.atomic_path`) and return the path."""
    import pandas as pd  # a dependency of medmnist; imported here because it is slow to import

    y_score = np.asarray(y_score)
    if y_score.ndim not in (1, 2):
        raise MedMNISTLabError(f"y_score must be (N,) or (N, C), got shape {y_score.shape}")
    path = Path(folder) / submission_filename(flag, size, split, metrics, run)
    # pandas writes the temporary file itself, so the file gets the usual permissions.
    with atomic_path(path) as tmp:
        pd.DataFrame(y_score).to_csv(tmp, header=None)
    return path
