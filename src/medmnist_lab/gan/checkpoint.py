"""GAN checkpoints: written atomically, read with `torch.load(weights_only=True)`.

A checkpoint holds only tensors, dicts, lists, numbers and strings (state dicts, the spec and
config as plain dicts, the RNG state as a uint8 tensor), so the restricted unpickler can read
it and a file from elsewhere cannot run code on load.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from medmnist_lab.engine.checkpoint import atomic_save, safe_load
from medmnist_lab.errors import CheckpointError

__all__ = ["FORMAT", "VERSION", "atomic_save", "load_checkpoint"]

FORMAT = "medmnist-lab-gan"
VERSION = 1
REQUIRED = ("format", "version", "spec", "config", "epoch", "generator", "discriminator")


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict:
    """Read and check a GAN checkpoint; user-facing errors for missing, unsafe or foreign files."""
    path = Path(path)
    if not path.is_file():
        hint = f"; a GAN run folder holds last.pt: try {path / 'last.pt'}" if path.is_dir() else ""
        raise CheckpointError(f"GAN checkpoint {path} not found{hint}")
    ckpt = safe_load(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a medmnist-lab GAN checkpoint (no '{FORMAT}' format tag); "
            "classifier checkpoints go to `medmnist-lab evaluate`, GAN ones come from `gan train`"
        )
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} has GAN checkpoint version {ckpt['version']}; this code reads <= {VERSION}")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}; it is incomplete")
    return ckpt
