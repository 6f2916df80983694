"""`evaluate(checkpoint, split)`: score a saved model without the training code's state."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from medmnist_lab.data.registry import SPLITS, get_dataset
from medmnist_lab.engine.checkpoint import check_compatible, load_checkpoint
from medmnist_lab.engine.config import RunConfig
from medmnist_lab.engine.data import load_eval_split
from medmnist_lab.engine.device import resolve_device, resolve_precision
from medmnist_lab.engine.evaluation import SplitResult, check_eval_memory, predict, score_split
from medmnist_lab.engine.train import build_model
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.records import write_json


@dataclass
class EvalResult:
    checkpoint: Path
    split: str
    result: SplitResult
    config: RunConfig

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": str(self.checkpoint), "split": self.split, **self.result.to_dict()}


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
) -> EvalResult:
    """Score `checkpoint` on `split` of its dataset; `dataset`/`size`, when given, must match it."""
    if split not in SPLITS:
        raise MedMNISTLabError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
    state = load_checkpoint(checkpoint)
    config = RunConfig.from_dict(state["config"])
    config = replace(config, root=root or config.root, device=device or config.device)
    if dataset is not None or size is not None:
        info = get_dataset(dataset or config.dataset)
        check_compatible(state, info.flag, size or config.size, info.n_classes, f"checkpoint {checkpoint}")
    info = get_dataset(config.dataset, warn_alias=False)
    check_compatible(state, info.flag, config.size, info.n_classes, f"checkpoint {checkpoint}")
    dev = resolve_device(config.device)
    check_eval_memory(config, dev)
    precision = resolve_precision(dev, config.amp)
    channels_last = dev.type == "cuda" if config.channels_last is None else config.channels_last
    model = build_model(config, info)
    model.load_state_dict(state["model"])
    model = model.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    data = load_eval_split(config, info, split)
    result = score_split(predict(model, data, config, dev, precision, channels_last), data, info)
    return EvalResult(Path(checkpoint), split, result, config)


def save_eval(result: EvalResult) -> Path:
    return write_json(
        result.to_dict(), result.checkpoint.with_name(f"eval_{result.checkpoint.stem}_{result.split}.json")
    )
