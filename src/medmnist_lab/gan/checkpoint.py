"""GAN checkpoints: written atomically, read with `torch.load(weights_only=True)`.

A checkpoint holds only tensors, dicts, lists, numbers and strings (state dicts, the spec and
config as plain dicts, the RNG state as a uint8 tensor), so the restricted unpickler can read
it and a file from elsewhere cannot run code on load.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from medmnist_lab.errors import CheckpointError

FORMAT = "medmnist-lab-gan"
VERSION = 1
REQUIRED = ("format", "version", "spec", "config", "epoch", "generator", "discriminator")


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """torch.save to a temporary file in the same folder, then os.replace: a crash mid-write
    leaves the previous checkpoint intact, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict:
    """Read and check a GAN checkpoint; user-facing errors for missing, unsafe or foreign files."""
    path = Path(path)
    if not path.is_file():
        hint = f"; a GAN run folder holds last.pt: try {path / 'last.pt'}" if path.is_dir() else ""
        raise CheckpointError(f"GAN checkpoint {path} not found{hint}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses anything but tensors and plain containers: a file that needs
        # more is not ours, and loading it fully could run arbitrary code.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path} is not a safe medmnist-lab GAN checkpoint: it holds objects beyond tensors "
            f"and plain containers, refused by torch.load(weights_only=True) ({first})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({exc})") from None
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
