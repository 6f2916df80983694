"""Offline expansion: the seed's approach done right.

The new training split is every original image, unchanged, followed by `factor` augmented
copies of the whole split (copy 1 of every image in the original order, then copy 2, ...), each
with the label of its original. Val and test are copied byte for byte. The file is an ordinary
MedMNIST npz plus the `META_KEY` marker, so `load_split(..., path=...)` and
`train --train-npz` accept it, and it is written atomically (a crash leaves no half file).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medmnist_lab import __version__
from medmnist_lab.augment.policies import build_augment
from medmnist_lab.data.arrays import META_KEY, load_split, open_npz
from medmnist_lab.data.paths import data_path
from medmnist_lab.data.registry import get_dataset
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.memory import check_fits
from medmnist_lab.outputs import atomic_path

MAX_FACTOR = 64


def _to_npz_layout(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) -> (N, H, W) for grayscale or (N, H, W, C), as the official files."""
    arr = images[:, 0] if images.shape[1] == 1 else images.permute(0, 2, 3, 1)
    return np.ascontiguousarray(arr.numpy())


def expand_dataset(
    dataset: str,
    policy: str,
    factor: int,
    output: str | os.PathLike[str],
    size: int = 28,
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
    batch_size: int = 1024,
    **magnitudes: Any,
) -> Path:
    """Write `output` (.npz) with the expanded training split; returns its path."""
    info = get_dataset(dataset)
    if info.is_3d:  # an expanded file of volumes would be 1188 x 28^3 per copy: augment online instead
        raise MedMNISTLabError(
            f"augment expand writes 2D images; {info.flag} holds 3D volumes: augment them online with "
            "`train --augment volume`"
        )
    if not 1 <= factor <= MAX_FACTOR:
        raise MedMNISTLabError(f"factor must be between 1 and {MAX_FACTOR}, got {factor}")
    out = Path(output)
    if out.suffix != ".npz":
        raise MedMNISTLabError(f"output '{out}' must end in .npz")
    train = load_split(info, "train", size, root, mmap=False)
    aug = build_augment(policy, size, int(train.images.shape[1]), dataset=info.flag, **magnitudes)
    if aug.mixes:
        raise MedMNISTLabError(
            f"'{aug.spec}' mixes images into soft labels, which an npz of integer labels cannot "
            "hold; expand with an image policy and apply mixup/cutmix online (train --augment)"
        )
    per_image = int(train.images[0].numel())
    check_fits(
        3 * (factor + 1) * len(train) * per_image,  # the copies, the concatenated split, the npz buffer
        f"expanding {info.flag} ({len(train)} train images at {size} px) by {factor} copies",
        "lower --factor",
    )
    source = data_path(info, size, root)
    with open_npz(source, info, size) as npz:
        # The originals and val/test come straight from the file, not through any conversion.
        arrays = {k: npz[k] for k in npz.files if k != META_KEY}
        source_meta = json.loads(str(npz[META_KEY])) if META_KEY in npz.files else None
    generator = torch.Generator().manual_seed(seed)
    copies = [
        torch.cat([aug.images(chunk, generator) for chunk in train.images.split(batch_size)]) for _ in range(factor)
    ]
    arrays["train_images"] = np.concatenate([arrays["train_images"], *(_to_npz_layout(c) for c in copies)])
    arrays["train_labels"] = np.concatenate([arrays["train_labels"]] * (factor + 1))
    meta = {
        "origin": "augment-expand",
        "dataset": info.flag,
        "size": size,
        "source": source.name,
        "source_meta": source_meta,
        "policy": aug.spec,
        "augment": aug.describe(),
        "factor": factor,
        "seed": seed,
        "n_original_train": len(train),
        "layout": "train = originals, then copy 1 of every original, ..., copy `factor`",
        "medmnist_lab_version": __version__,
    }
    arrays[META_KEY] = np.array(json.dumps(meta))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
        np.savez_compressed(f, **arrays)
    return out
