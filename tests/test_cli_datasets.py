"""`medmnist-lab datasets ...` (list, info, montage, verify) and the verify module behind it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medmnist_lab.cli.main import main
from medmnist_lab.data.registry import get_dataset, list_datasets
from medmnist_lab.data.verify import md5sum, verify_file
from synthetic import write_npz

REAL = ("breastmnist.npz", "breastmnist_64.npz", "retinamnist.npz")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _flip_byte(path: Path, at: int | None = None) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2 if at is None else at] ^= 0x01
    path.write_bytes(bytes(blob))


@pytest.fixture
def real_copy(real_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    root.mkdir()
    for name in REAL:
        shutil.copyfile(real_root / name, root / name)
    return root


# --- list / info ----------------------------------------------------------------------------


def test_list_shows_all_datasets_and_local_sizes(capsys: pytest.CaptureFixture[str], synthetic_root: Path) -> None:
    rc, out, _ = _run(capsys, "datasets", "list", "--root", str(synthetic_root))
    assert rc == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:20]}
    assert len(rows) == 18
    assert [r[1] for r in rows.values()] == ["2D"] * 12 + ["3D"] * 6
    assert rows["breastmnist"][-1] == "28" and rows["pathmnist"][-1] == "-"
    assert rows["retinamnist"][-4:-1] == ["1080", "120", "400"]
    assert f"root: {synthetic_root}" in out


def test_info_without_the_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, _ = _run(capsys, "datasets", "info", "dermamnist", "--root", str(tmp_path))
    assert rc == 0
    info = get_dataset("dermamnist")
    assert all(name in out for name in info.label_names)
    assert info.license in out and "MedMNIST v2" in out
    assert "datasets download dermamnist" in out


def test_info_counts_classes_per_split(capsys: pytest.CaptureFixture[str], synthetic_root: Path) -> None:
    rc, out, _ = _run(capsys, "datasets", "info", "dermamnist", "--root", str(synthetic_root))
    assert rc == 0
    with np.load(synthetic_root / "dermamnist.npz") as npz:
        want = {s: np.bincount(npz[f"{s}_labels"][:, 0], minlength=7) for s in ("train", "val", "test")}
    for k in range(7):
        line = next(ln for ln in out.splitlines() if ln.startswith(f"{k} "))
        assert line.split()[-3:] == [str(want[s][k]) for s in ("train", "val", "test")]


def test_info_on_real_file(capsys: pytest.CaptureFixture[str], real_root: Path) -> None:
    rc, out, _ = _run(capsys, "datasets", "info", "breastmnist", "--size", "64", "--root", str(real_root))
    assert rc == 0
    with np.load(real_root / "breastmnist_64.npz") as npz:
        benign = int((npz["train_labels"] == 1).sum())
    assert "train (n=546)" in out
    assert any(ln.startswith("1 ") and ln.split()[-3] == str(benign) for ln in out.splitlines())


def test_info_counts_at_a_size_without_its_file(capsys: pytest.CaptureFixture[str], synthetic_root: Path) -> None:
    """The splits are the same at every size: the 28 px file's counts stand for 128 px too, not '?'."""
    rc, at_28, _ = _run(capsys, "datasets", "info", "dermamnist", "--root", str(synthetic_root))
    rc128, at_128, _ = _run(capsys, "datasets", "info", "dermamnist", "--size", "128", "--root", str(synthetic_root))
    assert rc == rc128 == 0 and "?" not in at_128
    rows = [ln for ln in at_28.splitlines() if ln[:2] in {f"{k} " for k in range(7)}]
    assert rows and all(row in at_128 for row in rows)
    assert "counts read from dermamnist.npz: the splits are the same at every size" in at_128


def test_info_multilabel(capsys: pytest.CaptureFixture[str], synthetic_root: Path) -> None:
    rc, out, _ = _run(capsys, "datasets", "info", "chestmnist", "--root", str(synthetic_root))
    assert rc == 0 and "positives per finding" in out and "pneumonia" in out


# --- montage --------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["breastmnist", "dermamnist", "chestmnist"])
def test_montage_writes_a_png(
    flag: str, capsys: pytest.CaptureFixture[str], synthetic_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / f"{flag}.png"
    rc, text, _ = _run(
        capsys,
        "datasets",
        "montage",
        flag,
        "--root",
        str(synthetic_root),
        "--per-class",
        "3",
        "--cell",
        "32",
        "-o",
        str(out),
    )
    assert rc == 0 and f"wrote {out}" in text
    with Image.open(out) as img:
        assert img.format == "PNG" and img.mode == "RGB"
        n_rows = get_dataset(flag).n_classes
        assert img.height == n_rows * (32 + 2) + 2
        assert img.width == 150 + 3 * (32 + 2) + 2
        colours = np.unique(np.asarray(img).reshape(-1, 3), axis=0)
        assert len(colours) > 10, "it drew images, not a blank canvas"


def test_montage_missing_file_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, _, err = _run(
        capsys,
        "datasets",
        "montage",
        "breastmnist",
        "--root",
        str(tmp_path),
        "-o",
        str(tmp_path / "g.png"),
    )
    assert rc == 2 and err.count("\n") == 1 and "not found at" in err and "Traceback" not in err
    assert not (tmp_path / "g.png").exists()


# --- unknown names --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["info", "montage", "download", "verify"])
def test_unknown_name_exits_2_with_one_line(command: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["datasets", command, "dermamnsit", "--root", str(tmp_path)]
    if command == "montage":
        argv += ["-o", str(tmp_path / "x.png")]
    rc, out, err = _run(capsys, *argv)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: unknown dataset 'dermamnsit'")
    assert "did you mean 'dermamnist'" in err and "pathmnist" in err
    assert "Traceback" not in err + out


# --- verify ---------------------------------------------------------------------------------


def test_md5sum_streams_in_chunks(tmp_path: Path) -> None:
    data = np.random.default_rng(0).bytes(10_000)
    (tmp_path / "f").write_bytes(data)
    assert md5sum(tmp_path / "f", chunk=777) == hashlib.md5(data).hexdigest()


def test_verify_reports_the_real_files_valid(capsys: pytest.CaptureFixture[str], real_root: Path) -> None:
    rc, out, _ = _run(capsys, "datasets", "verify", "--root", str(real_root))
    n = sum((real_root / info.filename(s)).is_file() for info in list_datasets() for s in info.sizes)
    assert rc == 0 and n >= len(REAL)  # the shared folder may hold more (the 3D AdrenalMNIST3D files)
    assert out.count("\nok ") + out.startswith("ok ") == n
    assert f"{n} valid, 0 bad" in out
    for name in REAL:
        assert str(real_root / name) in out


@pytest.mark.parametrize("quick", [False, True])
def test_verify_a_copy_with_one_byte_changed_is_corrupt(
    quick: bool, capsys: pytest.CaptureFixture[str], real_copy: Path
) -> None:
    _flip_byte(real_copy / "breastmnist.npz")
    argv = ["datasets", "verify", "--root", str(real_copy)] + (["--quick"] if quick else [])
    rc, out, _ = _run(capsys, *argv)
    assert rc != 0
    line = next(ln for ln in out.splitlines() if str(real_copy / "breastmnist.npz") in ln)
    assert line.startswith("corrupt")
    assert "2 valid, 1 bad" in out
    assert get_dataset("breastmnist").md5s[28] in out


def test_verify_by_name_reports_missing(capsys: pytest.CaptureFixture[str], real_copy: Path) -> None:
    (real_copy / "breastmnist_64.npz").unlink()
    rc, out, _ = _run(capsys, "datasets", "verify", "breastmnist", "--root", str(real_copy))
    assert rc == 0
    assert f"missing  breastmnist 64px  {real_copy / 'breastmnist_64.npz'}" in out
    assert "1 valid, 0 bad" in out


def test_verify_that_checks_nothing_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An empty or missing root, or a named dataset without any local file: exit 1, and how to download."""
    rc, _, err = _run(capsys, "datasets", "verify", "--root", str(tmp_path))
    assert rc == 1 and f"no MedMNIST files found under {tmp_path}" in err and "datasets download" in err
    rc, _, err = _run(capsys, "datasets", "verify", "--root", str(tmp_path / "missing"))
    assert rc == 1 and f"data root {tmp_path / 'missing'} does not exist" in err
    write_npz(tmp_path / "breastmnist.npz", "breastmnist", 28)
    rc, out, err = _run(capsys, "datasets", "verify", "breastmnist", "dermamnist", "--root", str(tmp_path), "--quick")
    assert rc == 1 and "breastmnist 28px" in out and err.count("\n") == 1
    assert f"no local file of dermamnist under {tmp_path}" in err
    assert f"datasets download dermamnist --root {tmp_path}" in err


def test_verify_file_statuses(real_copy: Path) -> None:
    info = get_dataset("breastmnist")
    ok = verify_file(info, 28, real_copy / "breastmnist.npz")
    assert ok.ok and ok.status == "ok" and info.md5s[28] in ok.message
    missing = verify_file(info, 128, real_copy / "breastmnist_128.npz")
    assert missing.status == "missing" and not missing.ok
    path = real_copy / "breastmnist.npz"
    _flip_byte(path)
    deep = verify_file(info, 28, path)
    assert deep.status == "corrupt" and not deep.ok
    assert info.md5s[28] in deep.message and md5sum(path) in deep.message
    assert "--force" in deep.message
    assert verify_file(info, 28, path, deep=False).status == "corrupt"


def test_verify_truncated_file(real_copy: Path) -> None:
    path = real_copy / "retinamnist.npz"
    path.write_bytes(path.read_bytes()[:-5000])
    result = verify_file(get_dataset("retinamnist"), 28, path)
    assert result.status == "corrupt" and "truncated or corrupt" in result.message


def test_verify_an_intact_archive_with_a_flipped_pixel_fails_its_crc(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "breastmnist.npz", "breastmnist", official_counts=True, compressed=False)
    _flip_byte(path, at=path.stat().st_size // 3)
    result = verify_file(get_dataset("breastmnist"), 28, path)
    assert result.status == "corrupt" and "CRC" in result.message


def test_verify_invalid_structure(tmp_path: Path) -> None:
    """A readable file that disagrees with the registry is invalid, not merely corrupt."""
    path = write_npz(tmp_path / "breastmnist.npz", "breastmnist", 28, official_counts=True)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["test_labels"] = arrays["test_labels"] + 2  # outside 0..1
    np.savez_compressed(path, **arrays)
    result = verify_file(get_dataset("breastmnist"), 28, path)
    assert result.status == "invalid"
    assert "test_labels range over [2, 3]" in result.message and "MD5" in result.message


def test_verify_a_marked_synthetic_file_is_not_the_official_one(tmp_path: Path) -> None:
    # Its own sample counts are fine for loading, but it is not byte-identical to the release.
    path = write_npz(tmp_path / "breastmnist.npz", "breastmnist", 28, counts=(3, 3, 3))
    result = verify_file(get_dataset("breastmnist"), 28, path)
    assert result.status == "corrupt" and "differs from the official" in result.message


def test_verify_cli_shows_why_a_file_is_bad(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "bloodmnist.npz").write_bytes(b"<html>503 Service Unavailable</html>")
    rc, out, _ = _run(capsys, "datasets", "verify", "--root", str(tmp_path))
    assert rc == 1
    assert "corrupt  bloodmnist 28px" in out and "not a readable npz archive" in out
    assert "0 valid, 1 bad" in out
