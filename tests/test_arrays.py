"""Loading npz files into tensors, the memory-mapped cache, and every validation error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from medmnist_lab.data.arrays import META_KEY, CorruptFileError, load_all, load_split
from medmnist_lab.data.registry import get_dataset
from medmnist_lab.errors import DataFileError
from synthetic import TASK_EXAMPLES, make_arrays, write_npz

FLAGS = sorted(TASK_EXAMPLES.values())


def _arrays(flag: str, size: int = 28, counts: tuple[int, int, int] = (40, 16, 16)) -> dict:
    out: dict[str, np.ndarray] = {}
    for i, split in enumerate(("train", "val", "test")):
        out[f"{split}_images"], out[f"{split}_labels"] = make_arrays(flag, size, counts[i], i)
    return out


def _save(path: Path, arrays: dict, ours: bool = True) -> Path:
    """`ours` adds the medmnist-lab marker, so official sample counts are not enforced."""
    if ours:
        arrays = {**arrays, META_KEY: np.array(json.dumps({"origin": "test"}))}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def _raw(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


# --- loading ------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", FLAGS)
def test_every_task_type_loads_to_nchw_uint8_and_int64_labels(flag: str, synthetic_root: Path) -> None:
    info = get_dataset(flag)
    raw = _raw(synthetic_root / f"{flag}.npz")
    splits = load_all(flag, 28, synthetic_root)
    for split, n in zip(("train", "val", "test"), (40, 16, 16), strict=True):
        data = splits[split]
        assert data.images.shape == (n, info.n_channels, 28, 28)
        assert data.images.dtype == torch.uint8 and data.images.is_contiguous()
        assert data.labels.shape == (n, info.label_width) and data.labels.dtype == torch.int64
        assert len(data) == n and not data.memory_mapped
        want = raw[f"{split}_images"]
        want = want[:, None] if want.ndim == 3 else want.transpose(0, 3, 1, 2)
        assert np.array_equal(data.images.numpy(), want)
        assert np.array_equal(data.labels.numpy(), raw[f"{split}_labels"])
        assert data.meta["origin"] == "test-fixture"


@pytest.mark.parametrize("flag", FLAGS)
def test_as_rgb_gives_three_channels(flag: str, synthetic_root: Path) -> None:
    plain = load_split(flag, "val", 28, synthetic_root)
    rgb = load_split(flag, "val", 28, synthetic_root, as_rgb=True)
    assert rgb.images.shape == (16, 3, 28, 28)
    if plain.images.shape[1] == 1:
        assert all(torch.equal(rgb.images[:, c], plain.images[:, 0]) for c in range(3))
    else:
        assert torch.equal(rgb.images, plain.images)


def test_subset_is_the_first_n(synthetic_root: Path) -> None:
    full = load_split("dermamnist", "train", 28, synthetic_root)
    sub = load_split("dermamnist", "train", 28, synthetic_root, subset=7)
    assert torch.equal(sub.images, full.images[:7]) and torch.equal(sub.labels, full.labels[:7])
    with pytest.raises(DataFileError, match="more than the 40 samples"):
        load_split("dermamnist", "train", 28, synthetic_root, subset=1000)


def test_per_class_subset_has_exact_counts(synthetic_root: Path) -> None:
    full = load_split("dermamnist", "train", 28, synthetic_root)
    assert full.labels[:, 0].bincount().tolist() == [6, 6, 6, 6, 6, 5, 5]
    sub = load_split("dermamnist", "train", 28, synthetic_root, per_class=3, seed=1)
    assert sub.labels[:, 0].bincount(minlength=7).tolist() == [3] * 7
    # the picked samples really are rows of the split, with their own labels
    for img, lab in zip(sub.images, sub.labels, strict=True):
        hits = (full.images == img).flatten(1).all(1).nonzero().flatten()
        assert len(hits) >= 1 and torch.equal(full.labels[hits[0]], lab)
    again = load_split("dermamnist", "train", 28, synthetic_root, per_class=3, seed=1)
    other = load_split("dermamnist", "train", 28, synthetic_root, per_class=3, seed=2)
    assert torch.equal(again.images, sub.images)
    assert not torch.equal(other.images, sub.images)
    capped = load_split("dermamnist", "train", 28, synthetic_root, per_class=6)
    assert capped.labels[:, 0].bincount().tolist() == [6, 6, 6, 6, 6, 5, 5]


@pytest.mark.parametrize(
    ("kw", "text"),
    [
        ({"per_class": 2, "subset": 2}, "not both"),
        ({"subset": 0}, "must be positive"),
        ({"per_class": -1}, "must be positive"),
    ],
)
def test_bad_subset_arguments(kw: dict, text: str, synthetic_root: Path) -> None:
    with pytest.raises(DataFileError, match=text):
        load_split("breastmnist", "train", 28, synthetic_root, **kw)


def test_per_class_on_multilabel_is_refused(synthetic_root: Path) -> None:
    with pytest.raises(DataFileError, match="multi-label"):
        load_split("chestmnist", "train", 28, synthetic_root, per_class=2)


def test_unknown_split_and_size(synthetic_root: Path) -> None:
    with pytest.raises(DataFileError, match=r"unknown split 'valid'.*train, val, test"):
        load_split("breastmnist", "valid", 28, synthetic_root)
    with pytest.raises(DataFileError, match="size 100 is not available"):
        load_split("breastmnist", "train", 100, synthetic_root)


def test_root_from_environment(synthetic_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDMNIST_ROOT", str(synthetic_root))
    assert load_split("breastmnist", "val").source == synthetic_root / "breastmnist.npz"


# --- memory-mapped cache -------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["breastmnist", "dermamnist"])
def test_large_sizes_are_memory_mapped_and_equal_to_in_ram(flag: str, tmp_path: Path) -> None:
    write_npz(tmp_path / f"{flag}_128.npz", flag, 128, counts=(6, 3, 3))
    mapped = load_split(flag, "train", 128, tmp_path)
    in_ram = load_split(flag, "train", 128, tmp_path, mmap=False)
    assert mapped.memory_mapped and not in_ram.memory_mapped
    assert torch.equal(mapped.images, in_ram.images) and torch.equal(mapped.labels, in_ram.labels)
    cache = tmp_path / ".npy_cache" / f"{flag}_128" / "train_images.npy"
    assert cache.is_file()
    rgb_sub = load_split(flag, "train", 128, tmp_path, as_rgb=True, subset=2)
    assert rgb_sub.images.shape == (2, 3, 128, 128) and not rgb_sub.memory_mapped


def test_cache_is_reused_and_refreshed_when_the_source_changes(tmp_path: Path) -> None:
    src = write_npz(tmp_path / "breastmnist_224.npz", "breastmnist", 224, counts=(4, 2, 2))
    first = load_split("breastmnist", "val", 224, tmp_path)
    cache = tmp_path / ".npy_cache" / "breastmnist_224" / "val_images.npy"
    stamp = cache.stat().st_mtime_ns
    load_split("breastmnist", "val", 224, tmp_path)
    assert cache.stat().st_mtime_ns == stamp, "an up-to-date cache is not rewritten"
    write_npz(src, "breastmnist", 224, counts=(4, 3, 2), seed=5)
    second = load_split("breastmnist", "val", 224, tmp_path)
    assert len(first) == 2 and len(second) == 3
    assert list(cache.parent.glob(".*.tmp")) == []


def test_explicit_path_gets_its_own_cache(tmp_path: Path) -> None:
    a = write_npz(tmp_path / "a.npz", "breastmnist", 128, counts=(3, 2, 2), seed=1)
    b = write_npz(tmp_path / "b.npz", "breastmnist", 128, counts=(5, 2, 2), seed=2)
    assert len(load_split("breastmnist", "train", 128, path=a)) == 3
    assert len(load_split("breastmnist", "train", 128, path=b)) == 5


def test_unwritable_cache_is_a_clear_error(tmp_path: Path) -> None:
    write_npz(tmp_path / "breastmnist_128.npz", "breastmnist", 128, counts=(3, 2, 2))
    (tmp_path / ".npy_cache").write_text("a file where the cache folder should be")
    with pytest.raises(DataFileError, match=r"cannot write the memory-map cache .*mmap=False"):
        load_split("breastmnist", "train", 128, tmp_path)
    assert len(load_split("breastmnist", "train", 128, tmp_path, mmap=False)) == 3


def _write_big_npz(path: Path, n_train: int, size: int = 224) -> int:
    """A breastmnist-layout file written in constant memory (stored, not compressed)."""
    image = size * size
    pattern = (np.arange(16 << 20, dtype=np.uint32) % 251).astype(np.uint8).tobytes()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for split, n in (("train", n_train), ("val", 2), ("test", 2)):
            with zf.open(f"{split}_images.npy", "w", force_zip64=True) as f:
                header = {"descr": "|u1", "fortran_order": False, "shape": (n, size, size)}
                np.lib.format.write_array_header_1_0(f, header)
                left = n * image
                while left:
                    f.write(pattern[: min(left, len(pattern))])
                    left -= min(left, len(pattern))
            with zf.open(f"{split}_labels.npy", "w") as f:
                np.lib.format.write_array(f, (np.arange(n) % 2).astype(np.uint8)[:, None])
        with zf.open(f"{META_KEY}.npy", "w") as f:
            np.lib.format.write_array(f, np.array(json.dumps({"origin": "memory-test"})))
    return n_train * image


_RSS_PROBE = textwrap.dedent(
    """
    import json, resource, sys
    import psutil, torch
    from medmnist_lab.data.arrays import load_split

    root = sys.argv[1]
    proc = psutil.Process()
    load_split("breastmnist", "val", 224, root)  # warm up imports and code paths
    rss0 = proc.memory_info().rss
    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    mapped = load_split("breastmnist", "train", 224, root)
    rss1 = proc.memory_info().rss
    peak1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    last = mapped.images[-1].clone()  # touches one image only
    in_ram = load_split("breastmnist", "train", 224, root, mmap=False)
    rss2 = proc.memory_info().rss
    print(json.dumps({
        "mapped": mapped.memory_mapped, "shape": list(mapped.images.shape),
        "same": bool(torch.equal(last, in_ram.images[-1])),
        "mmap_growth": rss1 - rss0, "mmap_peak_growth": peak1 - peak0,
        "ram_growth": rss2 - rss1,
    }))
    """
)


@pytest.mark.slow
def test_memory_mapped_cache_keeps_rss_far_below_the_array_size(tmp_path: Path) -> None:
    # A fresh process, so the RSS numbers are not muddied by whatever this one holds.
    nbytes = _write_big_npz(tmp_path / "breastmnist_224.npz", n_train=6000)  # ~301 MB
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=True,
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["mapped"] and r["shape"] == [6000, 1, 224, 224] and r["same"]
    assert r["mmap_growth"] < 0.1 * nbytes, r
    assert r["mmap_peak_growth"] < 0.1 * nbytes, r
    # The measure can see an array of this size: reading it into RAM does grow RSS.
    assert r["ram_growth"] > 0.8 * nbytes, r


# --- validation errors ---------------------------------------------------------------------


def test_missing_file_says_where_it_looked_and_how_to_get_it(tmp_path: Path) -> None:
    info = get_dataset("breastmnist")
    with pytest.raises(DataFileError) as exc:
        load_split("breastmnist", "train", 64, tmp_path)
    msg = str(exc.value)
    assert str(tmp_path / "breastmnist_64.npz") in msg
    assert "MEDMNIST_ROOT" in msg
    assert f"medmnist-lab datasets download breastmnist --size 64 --root {tmp_path}" in msg
    assert info.urls[64] in msg and info.md5s[64] in msg


def test_missing_key(tmp_path: Path) -> None:
    arrays = _arrays("breastmnist")
    del arrays["val_labels"]
    path = _save(tmp_path / "breastmnist.npz", arrays)
    with pytest.raises(DataFileError, match=r"no array 'val_labels'; found .*train_images"):
        load_split("breastmnist", "val", 28, tmp_path)
    assert len(load_split("breastmnist", "train", 28, path=path)) == 40


def test_missing_images_key_in_memory_mapped_path(tmp_path: Path) -> None:
    arrays = _arrays("breastmnist", 128, (3, 2, 2))
    del arrays["test_images"]
    _save(tmp_path / "breastmnist_128.npz", arrays)
    with pytest.raises(DataFileError, match="no array 'test_images'"):
        load_split("breastmnist", "test", 128, tmp_path)


@pytest.mark.parametrize(
    ("flag", "key", "bad", "text"),
    [
        (
            "breastmnist",
            "train_images",
            np.zeros((40, 28, 28, 3), np.uint8),
            r"shape \(40, 28, 28, 3\), expected \(N, 28, 28\)",
        ),
        (
            "dermamnist",
            "train_images",
            np.zeros((40, 3, 28, 28), np.uint8),
            r"expected \(N, 28, 28, 3\)",
        ),
        (
            "breastmnist",
            "train_images",
            np.zeros((40, 32, 32), np.uint8),
            r"expected \(N, 28, 28\) for breastmnist at 28 px",
        ),
        (
            "breastmnist",
            "train_images",
            np.zeros((40, 28, 28), np.float32),
            "dtype float32, expected uint8",
        ),
        (
            "breastmnist",
            "train_labels",
            np.zeros((40,), np.uint8),
            r"train_labels has shape \(40,\), expected \(40, 1\)",
        ),
        ("chestmnist", "train_labels", np.zeros((40, 1), np.uint8), r"expected \(40, 14\)"),
        ("breastmnist", "train_labels", np.zeros((39, 1), np.uint8), r"expected \(40, 1\)"),
        (
            "breastmnist",
            "train_labels",
            np.zeros((40, 1), np.float32),
            "dtype float32, expected an integer",
        ),
        (
            "breastmnist",
            "train_labels",
            np.full((40, 1), 2, np.uint8),
            r"range over \[2, 2\], valid values are 0..1",
        ),
        ("retinamnist", "train_labels", np.full((40, 1), 5, np.int64), r"valid values are 0..4"),
        ("chestmnist", "train_labels", np.full((40, 14), 2, np.uint8), r"valid values are 0..1"),
        ("dermamnist", "train_labels", np.full((40, 1), -1, np.int64), r"range over \[-1, -1\]"),
    ],
)
def test_contents_that_disagree_with_the_registry(
    flag: str, key: str, bad: np.ndarray, text: str, tmp_path: Path
) -> None:
    arrays = _arrays(flag)
    arrays[key] = bad
    path = _save(tmp_path / f"{flag}.npz", arrays)
    with pytest.raises(DataFileError, match=text) as exc:
        load_split(flag, "train", 28, tmp_path)
    assert str(path) in str(exc.value)
    assert len(load_split(flag, "val", 28, tmp_path)) == 16, "other splits still load"


def test_wrong_sample_count_of_an_official_looking_file(tmp_path: Path) -> None:
    _save(tmp_path / "breastmnist.npz", _arrays("breastmnist"), ours=False)
    with pytest.raises(DataFileError, match="train has 40 samples, the official breastmnist has 546"):
        load_split("breastmnist", "train", 28, tmp_path)


def test_official_counts_pass_without_the_marker(tmp_path: Path) -> None:
    write_npz(tmp_path / "breastmnist.npz", "breastmnist", 28, official_counts=True)
    data = load_split("breastmnist", "test", 28, tmp_path)
    assert len(data) == 156 and data.meta == {"memory_mapped": False}


def test_an_empty_marker_still_marks_our_own_file(tmp_path: Path) -> None:
    arrays = {**_arrays("breastmnist"), META_KEY: np.array("{}")}
    np.savez(tmp_path / "breastmnist.npz", **arrays)
    assert len(load_split("breastmnist", "train", 28, tmp_path)) == 40


@pytest.mark.parametrize(("meta", "text"), [("{oops", "not valid JSON"), ("[1]", "JSON object")])
def test_bad_marker(meta: str, text: str, tmp_path: Path) -> None:
    np.savez(tmp_path / "breastmnist.npz", **_arrays("breastmnist"), **{META_KEY: np.array(meta)})
    with pytest.raises(DataFileError, match=text):
        load_split("breastmnist", "train", 28, tmp_path)


def test_truncated_archive(tmp_path: Path, synthetic_root: Path) -> None:
    data = (synthetic_root / "breastmnist.npz").read_bytes()
    (tmp_path / "breastmnist.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError) as exc:
        load_split("breastmnist", "train", 28, tmp_path)
    msg = str(exc.value)
    assert "truncated or corrupt" in msg and "datasets download breastmnist" in msg


@pytest.mark.parametrize("size", [28, 128])  # in-RAM read and memory-map conversion
def test_corrupt_member_fails_its_crc(size: int, tmp_path: Path) -> None:
    path = write_npz(tmp_path / "src.npz", "breastmnist", size, counts=(8, 2, 2), compressed=False)
    target = tmp_path / get_dataset("breastmnist").filename(size)
    blob = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        member = zf.getinfo("train_images.npy")
    blob[member.header_offset + 200 + member.file_size // 2] ^= 0xFF  # inside the pixel data
    target.write_bytes(bytes(blob))
    with pytest.raises(CorruptFileError, match=r"'train_images' is truncated or corrupt.*CRC"):
        load_split("breastmnist", "train", size, tmp_path)
    assert list(tmp_path.rglob(".*.tmp")) == [], "no half-written cache is left"


@pytest.mark.parametrize("content", [b"<html>404 Not Found</html>", b""])
def test_not_an_archive(content: bytes, tmp_path: Path) -> None:
    (tmp_path / "breastmnist.npz").write_bytes(content)
    with pytest.raises(CorruptFileError, match="not a readable npz archive"):
        load_split("breastmnist", "train", 28, tmp_path)


def test_a_bare_npy_is_not_an_archive(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros(3))
    shutil.move(tmp_path / "x.npy", tmp_path / "breastmnist.npz")
    with pytest.raises(CorruptFileError, match="single array, not an npz archive"):
        load_split("breastmnist", "train", 28, tmp_path)


# --- the real files -------------------------------------------------------------------------


def test_real_breastmnist_64(real_root: Path) -> None:
    train = load_split("breastmnist", "train", 64, real_root)
    assert train.images.shape == (546, 1, 64, 64) and train.images.dtype == torch.uint8
    assert train.labels.shape == (546, 1) and train.labels.dtype == torch.int64
    assert set(train.labels.flatten().tolist()) == {0, 1}
    assert not train.memory_mapped
    assert [len(load_split("breastmnist", s, 64, real_root)) for s in ("val", "test")] == [78, 156]


def test_real_breastmnist_28_matches_the_raw_npz(real_root: Path) -> None:
    data = load_split("breastmnist", "test", 28, real_root)
    raw = _raw(real_root / "breastmnist.npz")
    assert np.array_equal(data.images[:, 0].numpy(), raw["test_images"])
    assert np.array_equal(data.labels.numpy(), raw["test_labels"])


def test_real_retinamnist(real_root: Path) -> None:
    train = load_split("retinamnist", "train", 28, real_root)
    assert train.images.shape == (1080, 3, 28, 28) and train.images.dtype == torch.uint8
    assert train.labels.shape == (1080, 1)
    assert set(train.labels.flatten().tolist()) == set(range(5))
    raw = _raw(real_root / "retinamnist.npz")["train_images"]  # HWC on disk
    assert np.array_equal(train.images[5].numpy(), raw[5].transpose(2, 0, 1))
    per = load_split("retinamnist", "train", 28, real_root, per_class=10)
    assert per.labels[:, 0].bincount().tolist() == [10] * 5
