from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from synthetic import TASK_EXAMPLES, write_npz

REAL_FILES = ("breastmnist.npz", "breastmnist_64.npz", "retinamnist.npz")

# The README's MEDMNIST_ROOT is relative; tests change directory (and the CLI makes the variable
# absolute against whatever directory it starts in), so it is made absolute once, here.
if os.environ.get("MEDMNIST_ROOT"):
    os.environ["MEDMNIST_ROOT"] = str(Path(os.environ["MEDMNIST_ROOT"]).expanduser().resolve())


@pytest.fixture(scope="session", autouse=True)
def speed_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dry run's speed cache in a temp folder: tests never write to the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("speed_cache")
    os.environ["MEDMNIST_LAB_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with a small synthetic 28 px file for each task type."""
    root = tmp_path_factory.mktemp("synthetic_root")
    for flag in TASK_EXAMPLES.values():
        write_npz(root / f"{flag}.npz", flag, 28)
    return root


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The shared real files. If MEDMNIST_ROOT is set, a missing file fails; it does not skip."""
    env = os.environ.get("MEDMNIST_ROOT")
    if not env:
        pytest.skip("MEDMNIST_ROOT is not set: real-data tests need the shared files")
    root = Path(env).resolve()  # the README's MEDMNIST_ROOT is relative; tests change directory
    missing = [f for f in REAL_FILES if not (root / f).is_file()]
    if missing:
        pytest.fail(f"MEDMNIST_ROOT={root} lacks {', '.join(missing)}")
    return root


@pytest.fixture(scope="module")
def one_thread():
    """Tiny nets run faster on one thread, and on a busy shared CPU two threads spin-wait on
    each other (a 2-epoch tiny GAN: 48 s with 2 threads vs 9 s with 1, measured under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
