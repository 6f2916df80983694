"""Checkpoints: written atomically, read with `torch.load(weights_only=True)`.

weights_only=True means a checkpoint from a stranger cannot run code on load: only tensors and
plain containers/numbers/strings are allowed, so everything stored here is kept to those types.
`atomic_save` and `safe_load` are shared by classifier and GAN checkpoints.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from medmnist_lab.errors import CheckpointError
from medmnist_lab.outputs import atomic_path

FORMAT = "medmnist-lab/1"
# Every checkpoint (best.pt kept as weights only included) has these; resuming needs RESUME_KEYS too.
REQUIRED = ("model", "config", "dataset", "epoch")
RESUME_KEYS = ("optimizer", "scheduler", "rng", "best_auc", "best_epoch", "elapsed_seconds")


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """torch.save to a temporary file in the same folder, then os.replace: a crash mid-write
    leaves the previous checkpoint intact, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Serialized in memory first, then written with a plain file write: a full disk or a file-size
    # limit then surfaces as ENOSPC/EFBIG (torch's own writer reports only "unexpected pos"), which
    # atomic_path turns into a message saying the previous file is intact.
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(buffer.getbuffer())
    return path


def _kind_of_file(path: Path) -> str | None:
    """None for what torch.save writes (a zip archive, or a legacy pickle); else what the file looks like."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return None  # torch.load reports it
    if head.startswith(b"PK") or head.startswith(b"\x80"):
        return None
    if not head:
        return "an empty file"
    return "a text file" if head.isascii() else "not a PyTorch file (neither a zip archive nor a pickle)"


def exported_format(path: Path) -> str | None:
    """The format of a model file written by `export` (ONNX or TorchScript), or None for any other file."""
    name = path.name.lower()
    if name.endswith(".onnx"):
        return "ONNX"
    if name.endswith((".ts", ".torchscript", ".torchscript.pt")):
        return "TorchScript"
    try:  # a TorchScript archive is a zip like torch.save's, with the model's code in it
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    return "TorchScript" if any(n.endswith("/constants.pkl") or "/code/" in n for n in names) else None


def safe_load(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """torch.load(weights_only=True) with user-facing errors for unsafe or unreadable files."""
    if (fmt := exported_format(path)) is not None:
        raise CheckpointError(
            f"{path} is an exported {fmt} model, not a checkpoint; give a .pt written by medmnist-lab "
            "(best.pt or last.pt of a run)"
        )
    kind = _kind_of_file(path)
    if kind is not None:
        raise CheckpointError(f"{path} is not a checkpoint: it is {kind}; give a .pt written by medmnist-lab")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses anything but tensors and plain containers: a file that needs more
        # is not ours, and loading it fully could run arbitrary code.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain data ({first}); "
            "medmnist-lab checkpoints never do, so the file is foreign or tampered with"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})") from None


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    atomic_save({"format": FORMAT, **state}, path)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        inside = [str(path / n) for n in ("best.pt", "last.pt") if (path / n).is_file()]
        hint = f"did you mean {' or '.join(inside)}?" if inside else "give best.pt or last.pt of a run folder"
        raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file; {hint}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    state = safe_load(path, map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a medmnist-lab checkpoint (format {FORMAT!r} expected)")
    check_keys(state, REQUIRED, path, "it is incomplete")
    return state


def check_keys(state: dict[str, Any], keys: tuple[str, ...], path: Path, why: str) -> None:
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: {why}")


def check_compatible(state: dict[str, Any], flag: str, size: int, n_classes: int, what: str) -> None:
    """Refuse a checkpoint made for another dataset, size or class count."""
    ds = state["dataset"]
    problems = []
    if ds["flag"] != flag:
        problems.append(f"dataset {ds['flag']} (not {flag})")
    if ds["size"] != size:
        problems.append(f"size {ds['size']} (not {size})")
    if ds["n_classes"] != n_classes:
        problems.append(f"{ds['n_classes']} classes (not {n_classes})")
    if problems:
        raise CheckpointError(f"{what} was trained on {', '.join(problems)}; it cannot be used here")
