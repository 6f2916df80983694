"""Output paths checked before work, atomic writes, temp cleanup and memory estimates (issue 12)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medmnist_lab.data.paths import dataset_files
from medmnist_lab.memory import MemoryEstimateError, available_bytes, check_fits
from medmnist_lab.outputs import (
    OutputError,
    atomic_path,
    check_output_dir,
    check_output_file,
    remove_temp_files,
    temp_name,
)


def test_output_file_checks(tmp_path: Path) -> None:
    (tmp_path / "old.png").write_bytes(b"old")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    assert check_output_file(tmp_path / "new.png", suffixes=(".png",)) == tmp_path / "new.png"
    # missing folders are fine (made when the file is written), and the check creates nothing
    assert check_output_file(tmp_path / "missing" / "deeper" / "x.png") == tmp_path / "missing" / "deeper" / "x.png"
    assert not (tmp_path / "missing").exists()
    bad = {
        tmp_path / "x.gif": "must end in .png",
        tmp_path / "adir": "is a folder",
        tmp_path / "afile" / "x.png": "is a file, not a folder",
        tmp_path / "afile" / "sub" / "x.png": "is a file, so no folder can be created under it",
        tmp_path / "old.png": "already exists; pass --overwrite",
    }
    for path, text in bad.items():
        suffixes = (".png",) if path.name != "adir" else ()
        with pytest.raises(OutputError, match=text):
            check_output_file(path, suffixes=suffixes)
    assert check_output_file(tmp_path / "old.png", overwrite=True) == tmp_path / "old.png"


def test_a_dataset_file_of_the_root_is_never_an_output(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    for name in ("breastmnist.npz", "retinamnist_64.npz"):  # present or not, never written
        if name.startswith("breast"):
            (root / name).write_bytes(b"data")
        with pytest.raises(OutputError, match="never written or overwritten"):
            check_output_file(root / name, overwrite=True, protected=dataset_files(root))
    assert (root / "breastmnist.npz").read_bytes() == b"data"
    assert check_output_file(root / "mine.npz", protected=dataset_files(root)) == root / "mine.npz"


def test_output_dir_checks(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    assert check_output_dir(tmp_path / "a" / "b" / "c") == tmp_path / "a" / "b" / "c"
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "afile")
    with pytest.raises(OutputError, match="no folder can be created under it"):
        check_output_dir(tmp_path / "afile" / "run")


def test_atomic_path_keeps_the_old_file_on_any_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed midway")
    assert target.read_text() == "old" and not temp_name(target).exists()
    unchanged = r"could not write .*out\.json .*the previous out\.json is unchanged"
    with pytest.raises(OutputError, match=unchanged), atomic_path(target):
        raise OSError(28, "No space left on device")
    assert target.read_text() == "old"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and not list(tmp_path.glob(".*.tmp"))
    with atomic_path(tmp_path / "new" / "folders" / "out.json") as tmp:  # missing folders are made
        tmp.write_text("deep")
    assert (tmp_path / "new" / "folders" / "out.json").read_text() == "deep"


def test_temp_files_of_dead_writers_are_removed_and_a_live_writers_are_kept(tmp_path: Path) -> None:
    dead = tmp_path / f".last.pt.{2**22 + 1}.tmp"  # above the default pid_max: no such process
    live = tmp_path / ".best.pt.1.tmp"  # pid 1 is alive
    own = tmp_path / f".config.yaml.{os.getpid()}.tmp"
    for p in (dead, live, own):
        p.write_bytes(b"x")
    removed = remove_temp_files(tmp_path)
    assert sorted(removed) == sorted([dead, own]) and live.exists()


def test_memory_estimates() -> None:
    free = available_bytes()
    assert free is not None and free > 2**20
    check_fits(1024, "a small request", "ask for less")
    message = r"needs about 2\.0 GiB of memory, but only 1\.0 GiB is available; ask"
    with pytest.raises(MemoryEstimateError, match=message):
        check_fits(2 * 2**30, "a big request", "ask for less", available=2**30)
