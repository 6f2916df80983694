"""Loss and targets per task type.

Binary and multi-class: cross-entropy over C logits. Ordinal regression (RetinaMNIST) is trained
as multi-class, as the official benchmark does. Multi-label (ChestMNIST): BCE-with-logits per
label. Soft targets (MixUp/CutMix) are (B, K) floats; both losses accept them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dense_targets(y: torch.Tensor, n_classes: int, multilabel: bool) -> torch.Tensor:
    """(B, L) int labels -> (B, K) float one-hot (single-label) or multi-hot (multi-label)."""
    if multilabel:
        return y.float()
    return F.one_hot(y[:, 0], n_classes).float()


def task_loss(logits: torch.Tensor, y: torch.Tensor, multilabel: bool, label_smoothing: float = 0.0) -> torch.Tensor:
    """y: (B, L) int64 labels, or (B, K) float soft targets."""
    logits = logits.float()  # losses in fp32 even under autocast
    if multilabel:
        target = y.float()
        if label_smoothing:
            target = target * (1 - label_smoothing) + 0.5 * label_smoothing
        return F.binary_cross_entropy_with_logits(logits, target)
    target = y if y.is_floating_point() else y[:, 0]
    return F.cross_entropy(logits, target, label_smoothing=label_smoothing)
