"""`evaluate(checkpoint, split)`: score a saved model without the training code's state;
`evaluate_ensemble(checkpoints, split)`: score the averaged probabilities of several."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medmnist_lab.data.arrays import SplitData
from medmnist_lab.data.registry import SPLITS, get_dataset
from medmnist_lab.engine.calibration import Calibration, find_calibration, off_record
from medmnist_lab.engine.checkpoint import check_compatible, load_checkpoint
from medmnist_lab.engine.config import RunConfig
from medmnist_lab.engine.data import load_eval_split
from medmnist_lab.engine.device import SCORE_PRECISION, resolve_device, scoring_precision, to_channels_last
from medmnist_lab.engine.inference import (
    SplitResult,
    check_eval_memory,
    predict,
    score_probabilities,
    score_split,
    uses_flips,
)
from medmnist_lab.engine.train import build_model
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.metrics.selective import selective_metrics
from medmnist_lab.records import write_json


@dataclass
class EvalResult:
    checkpoint: Path
    split: str
    result: SplitResult
    config: RunConfig
    precision: str = "fp32"  # what the scores were computed in
    calibration: Calibration | None = None  # applied to the logits before scoring
    uncalibrated: bool = False  # a calibration was switched off (--uncalibrated)

    @property
    def calibration_record(self) -> dict[str, Any]:
        return self.calibration.to_dict() if self.calibration is not None else off_record(self.uncalibrated)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "split": self.split,
            "precision": self.precision,
            "tta": self.config.tta,  # scored with test-time flips (trained in, or asked for)
            "calibration_applied": self.calibration_record,  # ("calibration" is the reliability diagram)
            **self.result.to_dict(),
        }


def load_model(checkpoint: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint with its weights; returns (model in eval mode, state)."""
    state = load_checkpoint(checkpoint)
    config = RunConfig.from_dict(state["config"])
    info = get_dataset(config.dataset, warn_alias=False)
    check_compatible(state, info.flag, config.size, info.n_classes, f"checkpoint {checkpoint}")
    model = build_model(config, info)
    model.load_state_dict(state["model"])
    return model.to(resolve_device(device)).eval(), state


def evaluate(
    checkpoint: str | Path,
    split: str = "test",
    *,
    root: str | None = None,
    device: str | None = None,
    dataset: str | None = None,
    size: int | None = None,
    precision: str = SCORE_PRECISION,
    tta: bool = False,
    use_calibration: bool = True,
) -> EvalResult:
    """Score `checkpoint` on `split` of its dataset; `dataset`/`size`, when given, must match it.
    `precision` defaults to fp32 whatever the run trained in: the same numbers on every CPU.
    `tta` scores each image with its mirror too (`predict --tta`'s numbers); a run trained with
    `tta` is scored so anyway, and its mirror still runs once. The checkpoint's calibration.json,
    when it exists and `use_calibration`, rescales the logits before scoring (`engine.calibration`)."""
    return _evaluate(checkpoint, split, root, device, dataset, size, precision, tta, use_calibration)[0]


@dataclass
class _Scorer:
    """A checkpoint's model ready to run on its dataset's splits."""

    model: torch.nn.Module
    config: RunConfig
    info: Any
    device: torch.device
    scoring: Any
    channels_last: bool
    state: dict[str, Any]

    def logits(self, split: str) -> tuple[torch.Tensor, SplitData]:
        data = load_eval_split(self.config, self.info, split)
        return predict(self.model, data, self.config, self.device, self.scoring, self.channels_last), data


def _scorer(
    checkpoint: str | Path,
    root: str | None,
    device: str | None,
    dataset: str | None = None,
    size: int | None = None,
    precision: str = SCORE_PRECISION,
    tta: bool = False,
) -> _Scorer:
    state = load_checkpoint(checkpoint)
    config = RunConfig.from_dict(state["config"])
    config = replace(config, root=root or config.root, device=device or config.device, tta=uses_flips(config.tta, tta))
    if dataset is not None or size is not None:
        info = get_dataset(dataset or config.dataset)
        check_compatible(state, info.flag, size or config.size, info.n_classes, f"checkpoint {checkpoint}")
    info = get_dataset(config.dataset, warn_alias=False)
    check_compatible(state, info.flag, config.size, info.n_classes, f"checkpoint {checkpoint}")
    dev = resolve_device(config.device)
    check_eval_memory(config, dev)
    scoring = scoring_precision(dev, precision, config)
    channels_last = dev.type == "cuda" if config.channels_last is None else config.channels_last
    model = build_model(config, info)
    model.load_state_dict(state["model"])
    model = model.to(dev)
    if channels_last:
        model = to_channels_last(model)
    return _Scorer(model, config, info, dev, scoring, channels_last, state)


@dataclass
class SplitLogits:
    """A checkpoint's logits (N, K) float32 on splits of its dataset, with their labels."""

    checkpoint: Path
    config: RunConfig
    task: str
    label_names: tuple[str, ...]
    logits: dict[str, torch.Tensor]
    labels: dict[str, np.ndarray]
    state: dict[str, Any]


def split_logits(
    checkpoint: str | Path,
    splits: Sequence[str] = ("val", "test"),
    *,
    root: str | None = None,
    device: str | None = None,
    precision: str = SCORE_PRECISION,
) -> SplitLogits:
    """The logits `evaluate` scores (the run's test-time flips included), for several splits."""
    for split in splits:
        if split not in SPLITS:
            raise MedMNISTLabError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
    scorer = _scorer(checkpoint, root, device, precision=precision)
    logits, labels = {}, {}
    for split in splits:
        logits[split], data = scorer.logits(split)
        labels[split] = data.labels.numpy()
    info = scorer.info
    return SplitLogits(
        Path(checkpoint), scorer.config, info.task, tuple(info.label_names), logits, labels, scorer.state
    )


def _evaluate(
    checkpoint: str | Path,
    split: str,
    root: str | None,
    device: str | None,
    dataset: str | None,
    size: int | None,
    precision: str = SCORE_PRECISION,
    tta: bool = False,
    use_calibration: bool = True,
) -> tuple[EvalResult, SplitData]:
    """`evaluate`, also returning the split it loaded (an ensemble scores its average on it)."""
    if split not in SPLITS:
        raise MedMNISTLabError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
    scorer = _scorer(checkpoint, root, device, dataset, size, precision, tta)
    calibration = find_calibration(checkpoint, use_calibration, scorer.state)
    logits, data = scorer.logits(split)
    if calibration is not None:
        logits = calibration.apply(logits.cpu())
    result = with_selective(score_split(logits, data, scorer.info), data, scorer.info.task)
    uncalibrated = not use_calibration
    out = EvalResult(Path(checkpoint), split, result, scorer.config, scorer.scoring.name, calibration, uncalibrated)
    return out, data


def with_selective(result: SplitResult, data: SplitData, task: str) -> SplitResult:
    """Add selective prediction (risk-coverage curve, AURC, accuracy at 90%/80% coverage) to the
    extras of a scored split."""
    result.extras["selective"] = selective_metrics(data.labels.numpy(), result.scores, task)
    return result


def save_eval(result: EvalResult) -> Path:
    return write_json(
        result.to_dict(), result.checkpoint.with_name(f"eval_{result.checkpoint.stem}_{result.split}.json")
    )


@dataclass
class EnsembleResult:
    """The members' probabilities averaged (each member with its own test-time flips, if its run used
    them), scored like one model; `members` keeps each member's own scores."""

    split: str
    result: SplitResult
    members: list[EvalResult]

    @property
    def config(self) -> RunConfig:
        return self.members[0].config

    def to_dict(self) -> dict[str, Any]:
        return {
            "ensemble": [str(m.checkpoint) for m in self.members],
            "split": self.split,
            **self.result.to_dict(),
            "members": [m.to_dict() for m in self.members],
        }


def evaluate_ensemble(
    checkpoints: Sequence[str | Path],
    split: str = "test",
    *,
    root: str | None = None,
    device: str | None = None,
    dataset: str | None = None,
    size: int | None = None,
    precision: str = SCORE_PRECISION,
    tta: bool = False,
    use_calibration: bool = True,
) -> EnsembleResult:
    """Average the probabilities of several checkpoints of one dataset and size on `split`, and score
    the average with the official metrics (for single-label tasks the average is still a distribution,
    so ACC is its argmax, and the binary threshold applies to the averaged positive class). `tta`: each
    member with test-time flips, as `evaluate`'s, and with its own calibration.json unless
    `use_calibration` is False."""
    paths = [Path(c) for c in checkpoints]
    if len(paths) < 2:
        raise MedMNISTLabError(f"an ensemble needs at least two checkpoints, got {len(paths)}")
    seen: set[Path] = set()
    for path in paths:
        key = path.resolve()
        if key in seen:
            raise MedMNISTLabError(f"checkpoint {path} is listed twice; an ensemble averages different models")
        seen.add(key)
    scored = [_evaluate(p, split, root, device, dataset, size, precision, tta, use_calibration) for p in paths]
    members = [member for member, _ in scored]
    first = members[0].config
    for m in members[1:]:
        if (m.config.dataset, m.config.size) != (first.dataset, first.size):
            raise MedMNISTLabError(
                f"checkpoint {m.checkpoint} is {m.config.dataset} at {m.config.size} px, but {members[0].checkpoint} "
                f"is {first.dataset} at {first.size} px; an ensemble's members must share dataset and size"
            )
    info = get_dataset(first.dataset, warn_alias=False)
    data = scored[0][1]  # the labels are the split's, whichever member loaded it
    mean = np.mean([m.result.scores for m in members], axis=0)
    return EnsembleResult(split, with_selective(score_probabilities(mean, data, info), data, info.task), members)
