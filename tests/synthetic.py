"""Synthetic MedMNIST-layout npz files for tests (every task type and channel count, 2D and 3D)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medmnist_lab.data.arrays import META_KEY
from medmnist_lab.data.registry import get_dataset

# One dataset per task type / channel count.
TASK_EXAMPLES = {
    "binary-class": "breastmnist",  # 1 channel
    "multi-class": "dermamnist",  # 3 channels
    "multi-label, binary-class": "chestmnist",  # 1 channel, 14 labels
    "ordinal-regression": "retinamnist",  # 3 channels
}


def make_arrays(flag: str, size: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose brightness depends on the label, so tiny models can learn something."""
    info = get_dataset(flag)
    rng = np.random.default_rng(seed)
    if info.is_multilabel:
        labels = (rng.random((n, info.n_classes)) < 0.3).astype(np.uint8)
        level = labels[:, 0].astype(np.float64)
    else:
        labels = (np.arange(n) % info.n_classes).astype(np.uint8)[:, None]
        rng.shuffle(labels)
        level = labels[:, 0] / max(info.n_classes - 1, 1)
    # The official layout on disk: (n, H, W), (n, H, W, C), or volumes (n, D, H, W).
    spatial = (size,) * info.spatial_dims
    shape = (n, *spatial) if info.n_channels == 1 else (n, *spatial, info.n_channels)
    noise = rng.normal(0, 25, size=shape)
    base = (40 + 160 * level).reshape((n,) + (1,) * (len(shape) - 1))
    images = np.clip(base + noise, 0, 255).astype(np.uint8)
    return images, labels


def write_npz(
    path: Path,
    flag: str,
    size: int = 28,
    counts: tuple[int, int, int] = (40, 16, 16),
    seed: int = 0,
    official_counts: bool = False,
    compressed: bool = True,
) -> Path:
    """Write a synthetic file. With official_counts the registry's split sizes are used and no
    medmnist-lab marker is written, so it passes the strict checks of an official file."""
    info = get_dataset(flag, warn_alias=False)
    arrays: dict[str, np.ndarray] = {}
    for i, split in enumerate(("train", "val", "test")):
        n = info.n_samples[split] if official_counts else counts[i]
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = make_arrays(flag, size, n, seed + i)
    if not official_counts:
        arrays[META_KEY] = np.array(json.dumps({"origin": "test-fixture"}))
    path.parent.mkdir(parents=True, exist_ok=True)
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path
