"""Run folder naming and the environment facts recorded in every summary."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medmnist_lab import __version__
from medmnist_lab.data.registry import DatasetInfo
from medmnist_lab.engine.config import RunConfig
from medmnist_lab.metrics.submission import check_run


def run_path(config: RunConfig, info: DatasetInfo, name: str) -> Path:
    """The run folder layout, `{out_dir}/{flag}_{size}/{model}/{name}`, with no checks."""
    return Path(config.out_dir) / f"{info.flag}_{config.size}" / config.model.lower() / name


def run_dir_for(config: RunConfig, info: DatasetInfo) -> Path:
    """The folder of a new run (`run_path`); `RunFolder.start_fresh` refuses one holding work."""
    name = config.name or f"{config.recipe}-s{config.seed}-{datetime.now():%Y%m%d-%H%M%S}"
    check_run(name)  # the name goes into official prediction file names: refuse it before training
    return run_path(config, info, name)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


# Read once, when the engine's code is loaded: a summary written hours later (a long run, a study worker)
# must name the commit whose code ran, not one committed in the checkout meanwhile.
LOADED_COMMIT = git_commit()


def environment_info() -> dict[str, Any]:
    return {
        "versions": {
            "medmnist_lab": __version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "threads": torch.get_num_threads(),
        },
        "git_commit": LOADED_COMMIT,
    }
