from __future__ import annotations

import os
from pathlib import Path

import pytest

from synthetic import TASK_EXAMPLES, write_npz

REAL_FILES = ("breastmnist.npz", "breastmnist_64.npz", "retinamnist.npz")


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
    root = Path(env)
    missing = [f for f in REAL_FILES if not (root / f).is_file()]
    if missing:
        pytest.fail(f"MEDMNIST_ROOT={root} lacks {', '.join(missing)}")
    return root
