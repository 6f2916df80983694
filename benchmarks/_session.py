"""A `fit` Session over synthetic images, for the benchmark scripts that time the training step.

Each of them times `engine.train_step`, the one step `fit` runs (the recipe's optimizer and
schedule, precision, grad scaler, EMA, augmentation and batch mixing), on a Session that
`engine.build_session` builds exactly as `fit` does. Only the images are synthetic: uint8 noise of
the dataset's real shape, channels and classes, written in the official file layout to a temporary
data root. Pixel values do not change the cost of a step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medmnist_lab.data.arrays import META_KEY
from medmnist_lab.data.registry import get_dataset
from medmnist_lab.engine import Session, build_session, resolve_config


def write_synthetic(root: Path, dataset: str, size: int, n_train: int, n_eval: int, seed: int = 0) -> Path:
    """A file of the official layout (marked as ours) with `n_train` training and `n_eval` val/test images."""
    info = get_dataset(dataset, warn_alias=False)
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for split, n in (("train", n_train), ("val", n_eval), ("test", n_eval)):
        shape = (n, size, size) if info.n_channels == 1 else (n, size, size, info.n_channels)
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        if info.is_multilabel:
            arrays[f"{split}_labels"] = rng.integers(0, 2, size=(n, info.n_classes), dtype=np.uint8)
        else:
            arrays[f"{split}_labels"] = (np.arange(n) % info.n_classes).astype(np.uint8)[:, None]
    arrays[META_KEY] = np.array(json.dumps({"origin": "benchmark"}))
    path = root / info.filename(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def synthetic_session(
    root: Path, dataset: str, size: int, n_train: int, n_eval: int = 16, recipe: str = "medmnist-v2", **overrides: Any
) -> Session:
    """`fit`'s Session for `dataset` at `size` px over synthetic images; `overrides` are RunConfig
    fields (model, batch_size, device, precision, channels_last, compile, augment, ...)."""
    write_synthetic(root, dataset, size, n_train, n_eval)
    config = resolve_config(dataset, recipe, size=size, root=str(root), out_dir=str(root / "runs"), **overrides)
    return build_session(config, get_dataset(dataset, warn_alias=False))


def endless_batches(s: Session) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The session's training batches (shuffled, augmented, normalised on the device), epoch after epoch."""
    while True:
        yield from s.batches


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
