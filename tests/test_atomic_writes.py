"""Every file the project writes goes through `outputs.atomic_path`: a write interrupted midway
leaves the previous file as it was and no temporary file behind ("One house", point 6).

Each test writes a file once, then writes it again with the writer patched to put half of its
bytes into the file it was given and die, the way a Ctrl-C or a kill between two writes would.
The interruption is a `BaseException`, not an `Exception`, so cleanup that only handles errors
would not pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from medmnist_lab.data.arrays import load_split
from medmnist_lab.engine.config import RunConfig
from medmnist_lab.metrics.official import Metrics
from medmnist_lab.metrics.submission import write_submission
from medmnist_lab.outputs import OutputError, atomic_path, write_bytes_atomic, write_text_atomic
from medmnist_lab.report.style import save, save_image
from synthetic import write_npz


class Killed(BaseException):
    """What a signal does to a writer: not an error a handler of `Exception` would catch."""


def dies_midway(path_arg: int = 0) -> Callable[..., None]:
    """A stand-in writer: half a file at its `path_arg`-th positional argument (0: a patched
    `Path` method's own path; 1: the path given to a method such as `DataFrame.to_csv`), then `Killed`."""

    def writer(*args: Any, **kwargs: Any) -> None:
        with open(args[path_arg], "wb") as f:  # not Path.write_bytes: that may be the patched one
            f.write(b"half a fi")
        raise Killed

    return writer


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too: that is where temporary files would be)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- the helper ---------------------------------------------------------------------------------


def test_helpers_write_whole_files_and_return_the_path(tmp_path: Path) -> None:
    text = tmp_path / "new" / "folder" / "a.txt"  # missing folders are made
    assert write_text_atomic(text, "é\n") == text
    assert text.read_bytes() == "é\n".encode()  # UTF-8 whatever the locale
    assert write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01") == tmp_path / "b.bin"
    assert snapshot(tmp_path) == {"new/folder/a.txt": "é\n".encode(), "b.bin": b"\x00\x01"}


@pytest.mark.parametrize("helper", ["text", "bytes", "atomic_path"])
def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_temp_file(
    helper: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.json"
    target.write_bytes(b"old")
    monkeypatch.setattr(Path, "write_text", dies_midway())
    monkeypatch.setattr(Path, "write_bytes", dies_midway())
    with pytest.raises(Killed):
        if helper == "text":
            write_text_atomic(target, "new")
        elif helper == "bytes":
            write_bytes_atomic(target, b"new")
        else:
            with atomic_path(target) as tmp, open(tmp, "wb") as f:
                f.write(b"half")
                raise Killed
    monkeypatch.undo()
    assert snapshot(tmp_path) == {"out.json": b"old"}


def test_an_interrupted_first_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Path, "write_text", dies_midway())
    with pytest.raises(Killed):
        write_text_atomic(tmp_path / "sub" / "out.txt", "new")
    monkeypatch.undo()
    assert snapshot(tmp_path) == {}


def test_a_failed_rename_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The temporary file is complete, but the final rename fails (a full disk, a lost mount)."""
    target = tmp_path / "out.txt"
    target.write_text("old")

    def no_rename(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OutputError, match=r"could not write .*out\.txt \(No space left on device\); the previous"):
        write_text_atomic(target, "new")
    monkeypatch.undo()
    assert snapshot(tmp_path) == {"out.txt": b"old"}


# --- the project's writers ----------------------------------------------------------------------


def test_submission_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scores = np.array([[0.25, 0.75], [0.5, 0.5]])
    path = write_submission(tmp_path, "breastmnist", 28, "test", scores, Metrics(0.5, 0.5), run=1)
    before = snapshot(tmp_path)
    assert list(before) == ["breastmnist_test_[AUC]0.500_[ACC]0.500@1.csv"]
    assert before[path.name].decode().splitlines() == ["0,0.25,0.75", "1,0.5,0.5"]
    monkeypatch.setattr(pd.DataFrame, "to_csv", dies_midway(path_arg=1))  # (self, path, ...)
    with pytest.raises(Killed):
        write_submission(tmp_path, "breastmnist", 28, "test", scores[::-1], Metrics(0.5, 0.5), run=1)
    assert snapshot(tmp_path) == before


def test_report_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    assert save(fig, tmp_path, "curve", "a caption").png == "curve.png"
    save_image(Image.new("RGB", (4, 4), "white"), tmp_path, "grid", "a grid")
    before = snapshot(tmp_path)
    assert sorted(before) == ["curve.png", "curve.svg", "grid.png"]
    assert before["curve.png"].startswith(b"\x89PNG") and b"<svg" in before["curve.svg"]

    monkeypatch.setattr(Figure, "savefig", dies_midway(path_arg=1))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    with pytest.raises(Killed):
        save(fig, tmp_path, "curve", "a caption")
    assert not plt.get_fignums(), "a failed save still closes its figure"
    monkeypatch.setattr(Image.Image, "save", dies_midway(path_arg=1))
    with pytest.raises(Killed):
        save_image(Image.new("RGB", (4, 4), "black"), tmp_path, "grid", "a grid")
    assert snapshot(tmp_path) == before


def test_config_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.yaml"
    RunConfig("breastmnist", epochs=3).to_yaml(path)
    before = snapshot(tmp_path)
    assert list(before) == ["config.yaml"] and RunConfig.from_yaml(path).epochs == 3
    monkeypatch.setattr(Path, "write_text", dies_midway())
    with pytest.raises(Killed):
        RunConfig("breastmnist", epochs=7).to_yaml(path)
    monkeypatch.undo()
    assert snapshot(tmp_path) == before and RunConfig.from_yaml(path).epochs == 3


def test_memory_map_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The `.npy` copy of a large split: a conversion killed midway never becomes the cache."""
    import shutil

    def copy_dies_midway(src: Any, dst: Any, length: int = 0) -> None:
        dst.write(src.read(100))
        raise Killed

    write_npz(tmp_path / "breastmnist_128.npz", "breastmnist", 128, counts=(3, 2, 2))
    monkeypatch.setattr(shutil, "copyfileobj", copy_dies_midway)
    with pytest.raises(Killed):
        load_split("breastmnist", "val", 128, tmp_path)
    monkeypatch.undo()
    assert sorted(snapshot(tmp_path)) == ["breastmnist_128.npz"]
    assert len(load_split("breastmnist", "val", 128, tmp_path)) == 2  # converted whole this time
    cache = tmp_path / ".npy_cache" / "breastmnist_128"
    assert sorted(p.name for p in cache.iterdir()) == ["val_images.npy", "val_images.source"]
