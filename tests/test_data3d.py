"""The data layer of the six 3D MedMNIST datasets: registry, loading, checks, verify."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from medmnist.info import INFO
from PIL import Image

from medmnist_lab.cli.main import main
from medmnist_lab.data.arrays import load_split
from medmnist_lab.data.download import download
from medmnist_lab.data.montage import volume_panels
from medmnist_lab.data.registry import FLAGS_2D, FLAGS_3D, get_dataset
from medmnist_lab.data.verify import md5sum, verify_file
from medmnist_lab.errors import DataFileError, MedMNISTLabError
from synthetic import make_arrays, write_npz

REAL_3D = ("adrenalmnist3d.npz", "adrenalmnist3d_64.npz")


@pytest.fixture(scope="module")
def real_3d_root() -> Path:
    """The shared AdrenalMNIST3D files; as `real_root`: skipped without MEDMNIST_ROOT, failed
    when MEDMNIST_ROOT is set and lacks them (a skipped test proves nothing)."""
    env = os.environ.get("MEDMNIST_ROOT")
    if not env:
        pytest.skip("MEDMNIST_ROOT is not set: real-data tests need the shared files")
    root = Path(env).resolve()
    missing = [f for f in REAL_3D if not (root / f).is_file()]
    if missing:
        pytest.fail(f"MEDMNIST_ROOT={root} lacks {', '.join(missing)}")
    return root


@pytest.fixture(scope="module")
def root_3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic 28 px file of every 3D dataset."""
    root = tmp_path_factory.mktemp("root_3d")
    for flag in FLAGS_3D:
        write_npz(root / f"{flag}.npz", flag, 28, counts=(12, 6, 6))
    return root


# --- registry -------------------------------------------------------------------------------


def test_six_3d_flags() -> None:
    assert FLAGS_3D == (
        "organmnist3d",
        "nodulemnist3d",
        "adrenalmnist3d",
        "fracturemnist3d",
        "vesselmnist3d",
        "synapsemnist3d",
    )
    assert not set(FLAGS_3D) & set(FLAGS_2D)


@pytest.mark.parametrize("flag", FLAGS_3D)
def test_3d_entries_match_the_official_info(flag: str) -> None:
    info, official = get_dataset(flag), INFO[flag]
    assert info.is_3d and info.spatial_dims == 3
    assert info.sizes == (28, 64)
    assert info.task == official["task"] and info.n_channels == official["n_channels"] == 1
    assert info.n_samples == official["n_samples"]
    assert info.label_names == tuple(official["label"][str(i)] for i in range(info.n_classes))
    assert info.urls == {28: official["url"], 64: official["url_64"]}
    assert info.md5s == {28: official["MD5"], 64: official["MD5_64"]}
    assert (info.filename(28), info.filename(64)) == (f"{flag}.npz", f"{flag}_64.npz")
    assert info.spatial_shape(64) == (64, 64, 64)
    with pytest.raises(DataFileError, match=r"size 128 is not available for .*; choose one of: 28, 64"):
        info.check_size(128)


def test_2d_entries_are_not_3d() -> None:
    info = get_dataset("breastmnist")
    assert not info.is_3d and info.spatial_dims == 2 and info.spatial_shape(28) == (28, 28)


# --- synthetic files and loading ------------------------------------------------------------


@pytest.mark.parametrize("flag", FLAGS_3D)
def test_synthetic_arrays_have_the_official_layout(flag: str) -> None:
    images, labels = make_arrays(flag, 28, 10)
    assert images.shape == (10, 28, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10, 1)
    # brightness follows the label, so tiny models can learn something
    if get_dataset(flag).n_classes > 1:
        lo, hi = labels[:, 0] == 0, labels[:, 0] == labels.max()
        assert images[lo].mean() < images[hi].mean()


@pytest.mark.parametrize("flag", FLAGS_3D)
def test_load_split_gives_ncdhw_uint8_and_int64_labels(flag: str, root_3d: Path) -> None:
    info = get_dataset(flag)
    for split, n in zip(("train", "val", "test"), (12, 6, 6), strict=True):
        data = load_split(flag, split, 28, root_3d)
        assert data.images.shape == (n, 1, 28, 28, 28) and data.images.dtype == torch.uint8
        assert data.labels.shape == (n, 1) and data.labels.dtype == torch.int64
        assert int(data.labels.max()) < info.n_classes
        assert data.images.is_contiguous() and not data.memory_mapped
    raw = np.load(root_3d / f"{flag}.npz")["train_images"]
    assert torch.equal(load_split(flag, "train", 28, root_3d).images[:, 0], torch.from_numpy(raw))


def test_as_rgb_repeats_the_channel(root_3d: Path) -> None:
    gray = load_split("organmnist3d", "val", 28, root_3d)
    rgb = load_split("organmnist3d", "val", 28, root_3d, as_rgb=True)
    assert rgb.images.shape == (6, 3, 28, 28, 28)
    assert all(torch.equal(rgb.images[:, c], gray.images[:, 0]) for c in range(3))


def test_subset_and_per_class(root_3d: Path) -> None:
    assert load_split("fracturemnist3d", "train", 28, root_3d, subset=5).images.shape == (5, 1, 28, 28, 28)
    per = load_split("fracturemnist3d", "train", 28, root_3d, per_class=2)
    assert torch.bincount(per.labels[:, 0]).tolist() == [2, 2, 2]


def test_64_px_volumes_and_explicit_memory_map(tmp_path: Path) -> None:
    write_npz(tmp_path / "vesselmnist3d_64.npz", "vesselmnist3d", 64, counts=(4, 2, 2))
    in_ram = load_split("vesselmnist3d", "train", 64, tmp_path)
    assert in_ram.images.shape == (4, 1, 64, 64, 64) and not in_ram.memory_mapped
    mapped = load_split("vesselmnist3d", "train", 64, tmp_path, mmap=True)
    assert mapped.memory_mapped and torch.equal(mapped.images, in_ram.images)
    assert (tmp_path / ".npy_cache" / "vesselmnist3d_64" / "train_images.npy").is_file()
    rgb = load_split("vesselmnist3d", "train", 64, tmp_path, mmap=True, as_rgb=True)
    assert rgb.images.shape == (4, 3, 64, 64, 64) and torch.equal(rgb.images[:, 2], in_ram.images[:, 0])


# --- bad input ------------------------------------------------------------------------------


def test_a_2d_file_for_a_3d_dataset_gets_one_clear_message(tmp_path: Path) -> None:
    flat = write_npz(tmp_path / "flat.npz", "breastmnist", 28, counts=(4, 2, 2))
    with pytest.raises(DataFileError) as exc:
        load_split("adrenalmnist3d", "train", 28, path=flat)
    msg = str(exc.value)
    assert "holds 2D images of shape (4, 28, 28)" in msg and "adrenalmnist3d is a 3D dataset" in msg
    assert "(N, 28, 28, 28)" in msg and str(flat) in msg
    # the official name in the root too
    (tmp_path / "adrenalmnist3d.npz").write_bytes(flat.read_bytes())
    with pytest.raises(DataFileError, match="adrenalmnist3d is a 3D dataset"):
        load_split("adrenalmnist3d", "train", 28, tmp_path)


def test_an_rgb_2d_file_for_a_3d_dataset(tmp_path: Path) -> None:
    rgb = write_npz(tmp_path / "rgb.npz", "dermamnist", 28, counts=(4, 2, 2))
    with pytest.raises(DataFileError, match=r"holds 2D images of shape \(4, 28, 28, 3\), but nodulemnist3d"):
        load_split("nodulemnist3d", "train", 28, path=rgb)


@pytest.mark.parametrize("flag", ["breastmnist", "dermamnist"])
def test_a_3d_file_for_a_2d_dataset_gets_one_clear_message(flag: str, tmp_path: Path) -> None:
    vol = write_npz(tmp_path / "vol.npz", "organmnist3d", 28, counts=(4, 2, 2))
    with pytest.raises(DataFileError) as exc:
        load_split(flag, "train", 28, path=vol)
    msg = str(exc.value)
    assert "holds 3D volumes of shape (4, 28, 28, 28)" in msg and f"{flag} is a 2D dataset" in msg


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((4, 28, 28, 28, 2), r"shape \(4, 28, 28, 28, 2\), expected \(N, 28, 28, 28\)"),  # wrong rank
        ((4, 28), r"shape \(4, 28\), expected \(N, 28, 28, 28\)"),
        ((4, 64, 64, 64), r"shape \(4, 64, 64, 64\), expected \(N, 28, 28, 28\) for synapsemnist3d at 28 px"),
    ],
)
def test_wrong_rank_or_size_names_the_file_and_the_shape(shape: tuple[int, ...], expected: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = np.zeros(shape, np.uint8)
        arrays[f"{split}_labels"] = np.zeros((shape[0], 1), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(DataFileError, match=expected) as exc:
        load_split("synapsemnist3d", "train", 28, path=path)
    assert str(path) in str(exc.value)


def test_official_sample_counts_are_enforced(tmp_path: Path) -> None:
    images, labels = make_arrays("nodulemnist3d", 28, 7)
    arrays = {f"{s}_{k}": v for s in ("train", "val", "test") for k, v in (("images", images), ("labels", labels))}
    np.savez(tmp_path / "nodulemnist3d.npz", **arrays)  # no medmnist-lab marker: an "official" file
    with pytest.raises(DataFileError, match="train has 7 samples, the official nodulemnist3d has 1158"):
        load_split("nodulemnist3d", "train", 28, tmp_path)


def test_wrong_dtype(tmp_path: Path) -> None:
    images, labels = make_arrays("organmnist3d", 28, 3)
    arrays = {f"{s}_images": images.astype(np.float32) for s in ("train", "val", "test")}
    arrays |= {f"{s}_labels": labels for s in ("train", "val", "test")}
    np.savez(tmp_path / "f.npz", **arrays)
    with pytest.raises(DataFileError, match="train_images has dtype float32, expected uint8"):
        load_split("organmnist3d", "train", 28, path=tmp_path / "f.npz")


# --- the real AdrenalMNIST3D files ------------------------------------------------------------


@pytest.mark.parametrize("size", [28, 64])
def test_real_adrenalmnist3d_loads(size: int, real_3d_root: Path) -> None:
    counts = {}
    for split in ("train", "val", "test"):
        data = load_split("adrenalmnist3d", split, size, real_3d_root)
        assert data.images.shape[1:] == (1, size, size, size) and data.images.dtype == torch.uint8
        assert data.labels.dtype == torch.int64 and set(data.labels.unique().tolist()) == {0, 1}
        counts[split] = len(data)
    assert counts == {"train": 1188, "val": 98, "test": 298}


def test_real_adrenalmnist3d_matches_the_raw_npz(real_3d_root: Path) -> None:
    data = load_split("adrenalmnist3d", "val", 28, real_3d_root)
    with np.load(real_3d_root / "adrenalmnist3d.npz") as raw:
        assert torch.equal(data.images[:, 0], torch.from_numpy(raw["val_images"]))
        assert torch.equal(data.labels, torch.from_numpy(raw["val_labels"].astype(np.int64)))


@pytest.mark.parametrize("size", [28, 64])
def test_real_adrenalmnist3d_verifies(size: int, real_3d_root: Path) -> None:
    info = get_dataset("adrenalmnist3d")
    result = verify_file(info, size, real_3d_root / info.filename(size))
    assert result.ok, result.message
    assert info.md5s[size] in result.message and "all splits valid" in result.message


def test_real_adrenalmnist3d_flipped_byte_fails_verify(real_3d_root: Path, tmp_path: Path) -> None:
    info = get_dataset("adrenalmnist3d")
    copy = tmp_path / info.filename(28)
    blob = bytearray((real_3d_root / info.filename(28)).read_bytes())
    blob[len(blob) // 2] ^= 0x01
    copy.write_bytes(bytes(blob))
    result = verify_file(info, 28, copy, deep=False)
    assert result.status == "corrupt" and info.md5s[28] in result.message


# --- the command line -----------------------------------------------------------------------


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_list_marks_the_3d_datasets(capsys: pytest.CaptureFixture[str], root_3d: Path) -> None:
    rc, out, _ = _run(capsys, "datasets", "list", "--root", str(root_3d))
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:20]}
    assert rc == 0 and {f for f, r in rows.items() if r[1] == "3D"} == set(FLAGS_3D)
    assert rows["organmnist3d"][-4:] == ["971", "161", "610", "28"]
    assert rows["breastmnist"][1] == "2D"


def test_info_of_a_3d_dataset(capsys: pytest.CaptureFixture[str], root_3d: Path) -> None:
    rc, out, _ = _run(capsys, "datasets", "info", "fracturemnist3d", "--root", str(root_3d))
    info = get_dataset("fracturemnist3d")
    assert rc == 0 and "3D volumes" in out and "sizes: 28, 64;" in out
    assert all(name in out for name in info.label_names)
    rc, _, err = _run(capsys, "datasets", "info", "fracturemnist3d", "--size", "128", "--root", str(root_3d))
    assert rc == 2 and err == "error: size 128 is not available for fracturemnist3d; choose one of: 28, 64\n"


def test_volume_panels() -> None:
    vol = torch.zeros((1, 6, 6, 6), dtype=torch.uint8)
    vol[0, 1, 2, 4] = 200  # off the middle slices: seen only by the projections
    vol[0, 3, 3, 3] = 100  # at the middle of every axis
    slices, mip = volume_panels(vol, "slices"), volume_panels(vol, "mip")
    assert slices.shape == mip.shape == (1, 6, 6 * 3 + 2)
    assert slices.max() == 128 and (slices == 100).sum() == 3  # the grey gaps, the centre voxel thrice
    assert (mip == 200).sum() == 3  # the bright voxel projected on each axis
    assert mip[0, 2, 4] == 200 and mip[0, 1, 7 + 4] == 200 and mip[0, 1, 14 + 2] == 200
    with pytest.raises(MedMNISTLabError, match="unknown volume view 'axial'; choose one of: slices, mip"):
        volume_panels(vol, "axial")


@pytest.mark.parametrize("view", [None, "slices", "mip"])
def test_montage_of_volumes_writes_a_png(
    view: str | None, capsys: pytest.CaptureFixture[str], root_3d: Path, tmp_path: Path
) -> None:
    out = tmp_path / "vol.png"
    argv = ["datasets", "montage", "organmnist3d", "--root", str(root_3d), "--per-class", "1", "--cell", "32"]
    rc, text, _ = _run(capsys, *argv, *(["--view", view] if view else []), "-o", str(out))
    assert rc == 0 and f"volumes as {view or 'slices'}" in text
    with Image.open(out) as img:
        assert img.format == "PNG"
        # 11 classes, one volume each: a title line, then rows of one cell of 3 panels (28+1+28+1+28 px wide)
        assert img.height == 16 + 11 * (32 + 10) + 10
        assert img.width == 150 + (round(32 * 86 / 28) + 10) + 10
        assert len(np.unique(np.asarray(img).reshape(-1, 3), axis=0)) > 10


def test_montage_of_the_real_adrenalmnist3d(
    capsys: pytest.CaptureFixture[str], real_3d_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "adrenal.png"
    argv = ["datasets", "montage", "adrenalmnist3d", "--size", "64", "--view", "mip", "--root", str(real_3d_root)]
    rc, _, _ = _run(capsys, *argv, "--per-class", "2", "-o", str(out))
    with Image.open(out) as img:
        assert rc == 0 and img.height == 16 + 2 * (64 + 10) + 10
        assert len(np.unique(np.asarray(img).reshape(-1, 3), axis=0)) > 2


def test_view_is_refused_for_a_2d_dataset(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = [
        "datasets",
        "montage",
        "breastmnist",
        "--view",
        "mip",
        "--root",
        str(tmp_path),
        "-o",
        str(tmp_path / "x.png"),
    ]
    rc, _, err = _run(capsys, *argv)
    assert rc == 2 and "--view draws volumes; breastmnist is a 2D dataset" in err


def test_montage_help_says_how_volumes_are_drawn(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["datasets", "montage", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "middle slice" in text and "maximum-intensity projection" in text and "D | H | W" in text


# --- downloads from a 127.0.0.1 server ------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def mirror_3d(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serves a folder over HTTP on 127.0.0.1; yields (base URL, folder)."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_download_of_a_3d_file_checks_its_md5(mirror_3d: tuple[str, Path], tmp_path: Path) -> None:
    url, folder = mirror_3d
    info = get_dataset("nodulemnist3d")
    write_npz(folder / info.filename(64), "nodulemnist3d", 64, counts=(2, 1, 1))  # not the official bytes
    with pytest.raises(MedMNISTLabError, match="MD5 mismatch") as exc:
        download(info, 64, tmp_path / "root", url, timeout=10, progress=False)
    assert info.md5s[64] in str(exc.value)
    assert not (tmp_path / "root" / info.filename(64)).exists()


def test_download_of_the_real_3d_files_from_a_mirror(
    mirror_3d: tuple[str, Path], real_3d_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, folder = mirror_3d
    for name in REAL_3D:
        shutil.copyfile(real_3d_root / name, folder / name)
    root = tmp_path / "root"
    # `--size all` means the dataset's own sizes: 28 and 64 for a 3D dataset, not 128/224
    rc, out, _ = _run(
        capsys, "datasets", "download", "adrenalmnist3d", "--size", "all", "--mirror", url, "--root", str(root)
    )
    assert rc == 0 and "adrenalmnist3d 64px" in out
    info = get_dataset("adrenalmnist3d")
    assert sorted(p.name for p in root.iterdir()) == sorted(REAL_3D)
    assert [md5sum(root / info.filename(s)) for s in (28, 64)] == [info.md5s[28], info.md5s[64]]
    rc, out, _ = _run(capsys, "datasets", "verify", "adrenalmnist3d", "--root", str(root))
    assert rc == 0 and "2 valid, 0 bad" in out
