"""Prediction and scoring: large batches under inference mode, official metrics plus extras.

Test-time flips live here, once: `flip_logits` is the only code that runs a model on an image's
horizontal mirror, and its rule is "average the two views' logits, then score the average".
`evaluate`, fit's val/test scoring, the PyTorch and ONNX predictors and the exported graph all call
it, so a model gives the same probabilities whichever of them runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medmnist_lab.data.arrays import SplitData
from medmnist_lab.data.registry import DatasetInfo
from medmnist_lab.engine.batcher import DeviceBatcher
from medmnist_lab.engine.config import RunConfig
from medmnist_lab.engine.device import Precision, autocast
from medmnist_lab.memory import check_fits
from medmnist_lab.metrics.extra import extra_metrics
from medmnist_lab.metrics.official import Metrics, official_metrics, scores_from_logits
from medmnist_lab.metrics.submission import write_submission

Forward = Callable[[torch.Tensor], torch.Tensor]  # (N, C, S, S) images -> (N, K) logits


def uses_flips(trained_with_tta: bool, requested: bool = False) -> bool:
    """Whether scoring runs the mirror: a run trained with `tta` is always scored with it (its val
    selection was), and a caller may ask for it on any other model. Either way the mirror runs once:
    asking again for a model that flips already adds nothing."""
    return bool(trained_with_tta) or bool(requested)


def flip_logits(forward: Forward, x: torch.Tensor, flip: bool) -> torch.Tensor:
    """Float32 logits of `x`, and with `flip` the mean of those of `x` and of its horizontal mirror
    (a flip that keeps every MedMNIST label meaningful). Logits are averaged rather than
    probabilities so that the result is one model's logits, scored by the task's one score function
    (softmax/sigmoid) wherever it runs: in PyTorch, in an ONNX graph, in float64 for the metrics.

    `forward` is any batch -> logits function (a module, an ONNX session's logits output); the flip
    is on the last (width) axis, which commutes with the per-pixel normalisation, so raw pixels and
    normalised inputs flip alike."""
    logits = forward(x).float()
    if flip:
        logits = (logits + forward(x.flip(-1)).float()) / 2
    return logits


def eval_batch_size(config: RunConfig) -> int:
    if config.eval_batch_size:
        return config.eval_batch_size
    # ~1024 at 28 px, scaled by pixel count so activations stay bounded at 128/224 px.
    return max(16, int(1024 * (28 / config.size) ** 2))


def check_eval_memory(config: RunConfig, device: torch.device) -> None:
    """Refuse an evaluation batch whose activations cannot fit in host memory (CPU runs only).

    A rough upper bound per image: three live feature maps of the widest early stage (4x the base
    width for the bottleneck ResNet-50) at full resolution, in fp32.
    """
    if device.type != "cpu":
        return
    expansion = 4 if "50" in config.model else 1
    per_image = 3 * expansion * config.width * config.size**2 * 4
    batch = eval_batch_size(config)
    check_fits(
        batch * per_image,
        f"an evaluation batch of {batch} images at {config.size} px ({config.model}, width {config.width})",
        "lower --eval-batch-size",
    )


@torch.inference_mode()
def predict(
    model: torch.nn.Module,
    data: SplitData,
    config: RunConfig,
    device: torch.device,
    precision: Precision,
    channels_last: bool,
) -> torch.Tensor:
    """Logits (N, K) float32 on the CPU, in the order of the split; with `config.tta`, those of each
    image and its mirror averaged (`flip_logits`)."""
    model.eval()
    batches = DeviceBatcher(
        data.images,
        data.labels,
        eval_batch_size(config),
        device,
        mean=config.mean,
        std=config.std,
        channels_last=channels_last,
        memory_mapped=data.memory_mapped,
    )
    out = []
    for x, _ in batches:
        with autocast(device, precision):
            logits = flip_logits(model, x, config.tta)
        out.append(logits)
    return torch.cat(out).cpu()


@dataclass
class SplitResult:
    metrics: Metrics
    scores: np.ndarray  # (N, K) float64 probabilities, what the official evaluator scores
    extras: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"auc": self.metrics.auc, "acc": self.metrics.acc, **self.extras}

    def write_predictions(self, folder: Path, flag: str, size: int, split: str, run: str) -> Path:
        return write_submission(folder, flag, size, split, self.scores, self.metrics, run)


def score_split(logits: torch.Tensor, data: SplitData, info: DatasetInfo) -> SplitResult:
    return score_probabilities(scores_from_logits(logits, info.task), data, info)


def score_probabilities(scores: np.ndarray, data: SplitData, info: DatasetInfo) -> SplitResult:
    """Official metrics and extras of (N, K) probabilities (an ensemble's averaged ones, say)."""
    y_true = data.labels.numpy()
    metrics = official_metrics(y_true, scores, info.task)
    extras = extra_metrics(y_true, scores, info.task, list(info.label_names))
    return SplitResult(metrics, scores, extras)
