"""Rows of a preview grid: each picked original followed by `copies` augmented versions of it,
drawn with per-sample randomness as in training (mixing with other images of the batch when the
spec mixes). Used by `augment preview` and by the study pages of reports."""

from __future__ import annotations

import numpy as np
import torch

from medmnist_lab.augment.policies import BatchAugment
from medmnist_lab.data.arrays import SplitData


def preview_rows(
    data: SplitData, aug: BatchAugment, n: int, copies: int, seed: int
) -> tuple[list[list[torch.Tensor]], np.ndarray]:
    """(rows of uint8 (C, H, W) images or (C, D, H, W) volumes, the indices of the originals), n <= len(data)."""
    info = data.info
    pick = np.sort(np.random.default_rng(seed).choice(len(data), n, replace=False))
    originals = data.images[torch.from_numpy(pick)]
    batch = originals.repeat_interleave(copies, 0)  # each original `copies` times in a row
    generator = torch.Generator().manual_seed(seed)
    out = aug.images(batch, generator)
    if aug.mixes:  # show what the model would see: mixed with other images of the batch
        labels = data.labels[torch.from_numpy(pick)].repeat_interleave(copies, 0)
        targets = torch.zeros(len(out), info.n_classes)
        if info.is_multilabel:
            targets = labels.float()
        else:
            targets[torch.arange(len(out)), labels[:, 0]] = 1
        mixed, _ = aug.mix(out.float() / 255, targets, generator)
        out = (mixed * 255).round().clamp(0, 255).to(torch.uint8)
    rows = [[originals[i], *out[i * copies : (i + 1) * copies]] for i in range(len(pick))]
    return rows, pick
