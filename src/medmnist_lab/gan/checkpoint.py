"""GAN checkpoints: written atomically, read with `torch.load(weights_only=True)`.

A checkpoint holds only tensors, dicts, lists, numbers and strings (state dicts, the spec and
config as plain dicts, the RNG state as a uint8 tensor), so the restricted unpickler can read
it and a file from elsewhere cannot run code on load.

Versions:
- 1: epochs counted from 1 ("epoch" = epochs done, history lines from 1); the config held the
  run's driving flags `resume` and `progress`.
- 2: the classifier engine's convention: "epoch" is the 0-based index of the last finished
  epoch, history lines count from 0; `resume`/`progress` are arguments of `train_gan`, not
  config; adds "precision", "elapsed_seconds" and "scaler".
`load_checkpoint` returns every version in the current layout (a version-1 file is upgraded in
memory and marked `upgraded_from: 1`), so sampling and evaluation read old runs unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from medmnist_lab.engine.checkpoint import atomic_save, safe_load
from medmnist_lab.errors import CheckpointError

__all__ = ["FORMAT", "VERSION", "atomic_save", "load_checkpoint"]

FORMAT = "medmnist-lab-gan"
VERSION = 2
REQUIRED = ("format", "version", "spec", "config", "epoch", "generator", "discriminator")
V1_RUN_FLAGS = ("resume", "progress")  # config fields of version 1 that are arguments now


def _upgrade_v1(ckpt: dict[str, Any]) -> dict[str, Any]:
    return {
        **ckpt,
        "version": VERSION,
        "upgraded_from": 1,
        "config": {k: v for k, v in ckpt["config"].items() if k not in V1_RUN_FLAGS},
        "epoch": int(ckpt["epoch"]) - 1,
        "history": [{**h, "epoch": int(h["epoch"]) - 1} for h in ckpt.get("history", [])],
        "precision": "fp32",  # version 1 always trained in fp32
    }


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
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
    if ckpt.get("version") not in (1, VERSION):
        raise CheckpointError(
            f"{path} has GAN checkpoint version {ckpt.get('version')!r}; this code reads versions 1 to {VERSION}"
        )
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}; it is incomplete")
    return _upgrade_v1(ckpt) if ckpt["version"] == 1 else ckpt
