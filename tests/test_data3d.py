"""The data layer of the six 3D MedMNIST datasets: registry, loading, checks, verify."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from medmnist.info import INFO

from medmnist_lab.data.arrays import load_split
from medmnist_lab.data.registry import FLAGS_2D, FLAGS_3D, get_dataset
from medmnist_lab.data.verify import verify_file
from medmnist_lab.errors import DataFileError
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
