"""Draw images from a trained GAN with exact per-class counts, and write them as a training npz.

The npz has the official layout of a training split (`train_images` (N, H, W) or (N, H, W, C)
uint8, `train_labels` (N, 1) uint8) plus the medmnist-lab marker (`META_KEY`), so
`load_split(flag, "train", size, path=FILE)` reads it and the training engine can add it to the
real training split.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medmnist_lab.data.arrays import META_KEY
from medmnist_lab.engine.device import resolve_device
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.gan.checkpoint import load_checkpoint
from medmnist_lab.gan.config import GANConfig
from medmnist_lab.gan.modes import GANSpec, build_nets
from medmnist_lab.gan.train import generate, to_uint8
from medmnist_lab.memory import check_fits
from medmnist_lab.outputs import atomic_path


@dataclass
class LoadedGAN:
    spec: GANSpec
    generator: nn.Module
    class_counts: list[int]  # real train images per class, as seen in training
    epoch: int  # the last finished epoch (0-based)
    path: Path
    config: GANConfig


def load_gan(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedGAN:
    ckpt = load_checkpoint(path, map_location=device)
    spec = GANSpec.from_dict(ckpt["spec"])
    g, _ = build_nets(spec)
    g.load_state_dict(ckpt["generator"])
    g.to(device).eval()
    config = GANConfig.from_dict(ckpt["config"])  # load_checkpoint gives every version the current layout
    return LoadedGAN(spec, g, [int(c) for c in ckpt["class_counts"]], int(ckpt["epoch"]), Path(path), config)


def resolve_counts(
    real_counts: list[int], per_class: int | None = None, balance: bool = False, ratio: float | None = None
) -> list[int]:
    """Images to generate per class for exactly one of the three ways of asking.

    per_class=N: N of every class. balance: tops every class up to the largest real class
    (the largest gets 0). ratio=R: round(R x real count) of each class.
    """
    given = [per_class is not None, bool(balance), ratio is not None]
    if sum(given) != 1:
        raise MedMNISTLabError("choose exactly one of per-class N, balance, or ratio R")
    if per_class is not None:
        if per_class <= 0:
            raise MedMNISTLabError(f"per-class count must be positive, got {per_class}")
        counts = [per_class] * len(real_counts)
    elif balance:
        counts = [max(real_counts) - n for n in real_counts]
    else:
        assert ratio is not None
        if not (ratio > 0 and np.isfinite(ratio)):
            raise MedMNISTLabError(f"ratio must be a positive number, got {ratio}")
        counts = [round(ratio * n) for n in real_counts]
    if sum(counts) == 0:
        why = "the real classes are already balanced" if balance else "every class rounds to 0 images"
        raise MedMNISTLabError(f"nothing to generate: {why} (real counts {real_counts})")
    return counts


def proportional_counts(real_counts: list[int], n: int) -> list[int]:
    """Split n over classes in proportion to real_counts, summing to exactly n (largest remainder)."""
    if n <= 0:
        raise MedMNISTLabError(f"number of samples must be positive, got {n}")
    share = np.asarray(real_counts, dtype=np.float64) * n / sum(real_counts)
    counts = np.floor(share).astype(int)
    for k in np.argsort(-(share - counts), kind="stable")[: n - counts.sum()]:
        counts[k] += 1
    return counts.tolist()


def check_sample_memory(spec: GANSpec, n: int) -> None:
    """Refuse a sample count whose images cannot fit in memory (uint8 images, a layout copy, the npz buffer)."""
    check_fits(
        3 * n * spec.channels * spec.size * spec.size,
        f"{n} generated {spec.size} px images",
        "ask for fewer (--per-class N or a smaller --ratio / --n)",
    )


def sample_counts(
    gan: LoadedGAN, counts: list[int], seed: int = 0, batch_size: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exactly counts[k] images of class k: uint8 (N, C, H, W) and int64 labels (N, 1), on the CPU."""
    if len(counts) != gan.spec.n_classes or any(c < 0 for c in counts):
        raise MedMNISTLabError(f"need {gan.spec.n_classes} non-negative counts, got {counts}")
    device = next(gan.generator.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    chunks = []
    for part in torch.split(labels, batch_size):
        z = torch.randn(len(part), gan.spec.nz, generator=gen, device=device)
        chunks.append(to_uint8(generate(gan.generator, z, part.to(device))).cpu())
    images = (
        torch.cat(chunks)
        if chunks
        else torch.empty(0, gan.spec.channels, gan.spec.size, gan.spec.size, dtype=torch.uint8)
    )
    return images, labels[:, None]


def sample(
    checkpoint: str | os.PathLike[str] | LoadedGAN,
    per_class: int | None = None,
    balance: bool = False,
    ratio: float | None = None,
    seed: int = 0,
    device: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate from a checkpoint: images uint8 (N, C, H, W), labels int64 (N, 1)."""
    gan = checkpoint if isinstance(checkpoint, LoadedGAN) else load_gan(checkpoint, resolve_device(device))
    counts = resolve_counts(gan.class_counts, per_class, balance, ratio)
    return sample_counts(gan, counts, seed)


def write_synthetic_npz(path: str | os.PathLike[str], images: torch.Tensor, labels: torch.Tensor, meta: dict) -> Path:
    """Write the official training-split keys plus the medmnist-lab marker (origin "synthetic")."""
    path = Path(path)
    if path.suffix != ".npz":
        raise MedMNISTLabError(f"output '{path}' must end in .npz")
    arr = images.numpy()
    arr = arr[:, 0] if arr.shape[1] == 1 else np.transpose(arr, (0, 2, 3, 1))  # official layout
    counts = np.bincount(labels[:, 0].numpy(), minlength=meta.get("n_classes", 0)).tolist()
    meta = {"origin": "synthetic", **meta, "n": len(arr), "counts": counts}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would append .npz
        np.savez_compressed(
            f,
            train_images=np.ascontiguousarray(arr),
            train_labels=labels.numpy().astype(np.uint8),
            **{META_KEY: np.array(json.dumps(meta))},
        )
    return path


def sample_to_npz(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    per_class: int | None = None,
    balance: bool = False,
    ratio: float | None = None,
    seed: int = 0,
    device: str = "auto",
) -> tuple[Path, list[int]]:
    """`gan sample`: generate and write; returns the file and the counts per class."""
    if Path(out).suffix != ".npz":  # before the (possibly long) sampling, not after
        raise MedMNISTLabError(f"output '{out}' must end in .npz")
    gan = load_gan(checkpoint, resolve_device(device))
    counts = resolve_counts(gan.class_counts, per_class, balance, ratio)
    check_sample_memory(gan.spec, sum(counts))
    images, labels = sample_counts(gan, counts, seed)
    request = {"per_class": per_class} if per_class is not None else {"balance": True} if balance else {"ratio": ratio}
    meta = {
        "dataset": gan.spec.dataset,
        "size": gan.spec.size,
        "n_classes": gan.spec.n_classes,
        "checkpoint": str(Path(checkpoint).resolve()),
        "epoch": gan.epoch,
        "mode": gan.spec.mode,
        "request": request,
        "real_counts": gan.class_counts,
        "seed": seed,
    }
    return write_synthetic_npz(out, images, labels, meta), counts
