"""Assemble the training split: real (or an expanded npz), plus optional synthetic samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from medmnist_lab.data.arrays import SplitData, load_split
from medmnist_lab.data.registry import DatasetInfo
from medmnist_lab.engine.config import RunConfig
from medmnist_lab.errors import MedMNISTLabError


@dataclass
class TrainData:
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N, L) int64
    memory_mapped: bool
    provenance: dict[str, Any] = field(default_factory=dict)


def load_eval_split(config: RunConfig, info: DatasetInfo, split: str) -> SplitData:
    """Validation and test always come from the official file, never from train_npz/synthetic."""
    return load_split(info, split, config.size, config.root, as_rgb=config.as_rgb)


def load_train_data(config: RunConfig, info: DatasetInfo) -> TrainData:
    real = load_split(
        info,
        "train",
        config.size,
        config.root,
        path=config.train_npz,
        as_rgb=config.as_rgb,
        subset=config.subset,
    )
    provenance: dict[str, Any] = {"train_source": str(real.source), "n_real": len(real)}
    if real.meta.get("origin"):
        provenance["train_meta"] = {k: v for k, v in real.meta.items() if k != "memory_mapped"}
    if config.synthetic is None:
        return TrainData(real.images, real.labels, real.memory_mapped, provenance)

    syn = load_split(info, "train", config.size, path=config.synthetic, as_rgb=config.as_rgb, mmap=False)
    n_syn = len(syn)
    if config.synthetic_ratio is not None:
        n_syn = round(config.synthetic_ratio * len(real))
        if n_syn > len(syn):
            raise MedMNISTLabError(
                f"--synthetic-ratio {config.synthetic_ratio} asks for {n_syn} synthetic images "
                f"({config.synthetic_ratio} x {len(real)} real), but {config.synthetic} holds {len(syn)}"
            )
    # A seeded choice, so the same config always uses the same synthetic images.
    pick = torch.randperm(len(syn), generator=torch.Generator().manual_seed(config.seed))[:n_syn].sort().values
    images = torch.cat([real.images.contiguous(), syn.images[pick]])
    labels = torch.cat([real.labels, syn.labels[pick]])
    provenance.update(
        synthetic=str(config.synthetic),
        n_synthetic=int(n_syn),
        synthetic_meta={k: v for k, v in syn.meta.items() if k != "memory_mapped"},
    )
    return TrainData(images, labels, False, provenance)
