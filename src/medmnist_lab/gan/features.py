"""The feature space GAN quality is measured in: a classifier trained on the real data.

Either a classifier checkpoint of the training engine (`medmnist-lab train ...`, its best.pt), or
by default a small ResNet-18 (width 16) trained here with the engine's `short` recipe for a few
epochs on the real training split, selected on the real validation split, and cached in the GAN
run folder (`quality/`), so later evaluations of the same GAN reuse it.
Features are `model.forward_features(x)`: the pooled penultimate layer, (N, D).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medmnist_lab.engine.summary import RunSummary
from medmnist_lab.errors import CheckpointError, MedMNISTLabError
from medmnist_lab.gan.summaries import FeatureExtractorInfo

DEFAULT_MODEL = "resnet18"
DEFAULT_WIDTH = 16
DEFAULT_EPOCHS = 10
DEFAULT_RECIPE = "short"


@dataclass
class FeatureNet:
    model: nn.Module  # exposes forward_features(x) -> (B, D)
    mean: float
    std: float
    in_channels: int
    description: FeatureExtractorInfo

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
        """uint8 (N, C, H, W) -> float64 (N, D) features, in fp32 (no autocast: FID is sensitive
        to the last digits of large covariance sums)."""
        self.model.eval()
        device = next(self.model.parameters()).device
        out = []
        for chunk in torch.split(images, batch_size):
            x = chunk.to(device).float().div_(255).sub_(self.mean).div_(self.std)
            if x.shape[1] != self.in_channels:
                x = x.expand(-1, self.in_channels, -1, -1)  # a grayscale set for an --as-rgb model
            out.append(self.model.forward_features(x).float().cpu())
        return torch.cat(out).double().numpy()


def load_feature_net(checkpoint: str | Path, dataset: str, size: int, device: str = "cpu") -> FeatureNet:
    """A classifier checkpoint of the training engine, checked against the GAN's dataset and size."""
    from medmnist_lab.engine import load_model

    model, state = load_model(checkpoint, device=device)
    ds = state["dataset"]
    if ds["flag"] != dataset or ds["size"] != size:
        raise CheckpointError(
            f"classifier {checkpoint} was trained on {ds['flag']} at {ds['size']} px; this GAN makes "
            f"{dataset} at {size} px: pass a classifier of the same dataset and size"
        )
    if not hasattr(model, "forward_features"):
        raise CheckpointError(f"classifier {checkpoint} ({state['config'].get('model')}) has no forward_features()")
    description = FeatureExtractorInfo(
        source="user",
        model=state["config"].get("model"),
        width=state["config"].get("width"),
        checkpoint=str(Path(checkpoint).resolve()),
        epoch=state.get("epoch"),
    )
    return FeatureNet(model, float(ds["mean"]), float(ds["std"]), int(ds["n_channels"]), description)


def classifier_config(
    dataset: str,
    size: int,
    out_dir: Path,
    name: str,
    *,
    root: str | None,
    epochs: int,
    width: int,
    seed: int,
    device: str,
    train_npz: str | None = None,
) -> Any:
    """The engine config shared by the default feature classifier and the CAS classifier, so the
    real and the synthetic-trained classifier differ only in their training data."""
    from medmnist_lab.engine import resolve_config

    return resolve_config(
        dataset,
        DEFAULT_RECIPE,
        size=size,
        root=root,
        model=DEFAULT_MODEL,
        width=width,
        epochs=epochs,
        seed=seed,
        device=device,
        out_dir=str(out_dir),
        name=name,
        train_npz=train_npz,
    )


def fit_cached(config: Any) -> tuple[Path, RunSummary]:
    """Train with the engine unless a finished run of that name exists; returns (best.pt, RunSummary)."""
    from medmnist_lab.data.registry import get_dataset
    from medmnist_lab.engine import fit
    from medmnist_lab.engine.runinfo import run_path

    # run_path, not run_dir_for: the latter refuses an existing folder, which here is the cache hit.
    run_dir = run_path(config, get_dataset(config.dataset, warn_alias=False), config.name)
    summary = run_dir / "summary.json"
    if summary.is_file() and (run_dir / "best.pt").is_file():
        return run_dir / "best.pt", RunSummary.read(summary)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # our own cache folder, left half-written by an interrupted run
    result = fit(config, progress=False)
    return result.run_dir / "best.pt", result.summary


def feature_run_name(width: int, epochs: int, seed: int) -> str:
    return f"features-{DEFAULT_MODEL}-w{width}-e{epochs}-s{seed}"


def default_feature_net(
    dataset: str,
    size: int,
    cache: Path,
    *,
    root: str | None = None,
    epochs: int = DEFAULT_EPOCHS,
    width: int = DEFAULT_WIDTH,
    seed: int = 0,
    device: str = "auto",
) -> tuple[FeatureNet, RunSummary]:
    """Train (or reuse from `cache`) the default feature classifier; returns it and its RunSummary."""
    if epochs <= 0 or width <= 0:
        raise MedMNISTLabError(f"classifier epochs and width must be positive, got {epochs}, {width}")
    config = classifier_config(
        dataset,
        size,
        cache,
        feature_run_name(width, epochs, seed),
        root=root,
        epochs=epochs,
        width=width,
        seed=seed,
        device=device,
    )
    best, summary = fit_cached(config)
    net = load_feature_net(best, dataset, size, device=device)
    net.description = replace(net.description, source="default", test=summary.split("test"), val=summary.split("val"))
    return net, summary
