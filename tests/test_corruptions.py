"""MedMNIST-C corruptions (augment.corruptions), the medmnist-c training policy and
`evaluate --corruptions` (engine.robustness) on tiny runs of synthetic files."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from cli_run import run_cli
from medmnist_lab.augment import POLICIES, build_augment, parse_spec
from medmnist_lab.augment.corruptions import (
    DATASETS,
    KINDS,
    SEVERITIES,
    augment_batch,
    corrupt,
    corruptions_for,
    parse_corruptions,
    parse_severities,
    seed_for,
)
from medmnist_lab.data import load_split
from medmnist_lab.data.registry import list_datasets
from medmnist_lab.deploy.calibrate import calibrate
from medmnist_lab.engine import RunConfig, evaluate, fit, resolve_config
from medmnist_lab.engine.calibration import find_calibration
from medmnist_lab.engine.robustness import evaluate_corruptions
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.metrics.official import scores_from_logits
from synthetic import write_npz

RGB = {"pathmnist", "bloodmnist", "dermamnist", "retinamnist"}
# The paper's own parameters are not monotone here: black_corner's circle grows back at severity 5
# (radius factors 1.10, 1.05, 1.00, 0.90, 0.95).
NOT_MONOTONE = {"black_corner"}
# A random number of marks (of random sizes) per image: monotone on average, not image by image.
RANDOM_COUNT = {"bubble", "stain_deposit", "characters"}
# At 28 px these corruptions' pixel lengths (scaled by 28/224) are under one pixel: no change.
SUB_PIXEL_AT_28 = {
    ("pathmnist", "defocus_blur"),
    ("bloodmnist", "defocus_blur"),
    ("octmnist", "defocus_blur"),
    ("chestmnist", "gaussian_blur"),
    ("pneumoniamnist", "gaussian_blur"),
}


def smooth_images(n: int, channels: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random images in 40..210 (uint8 (N, C, H, W)): blur and pixelation change them."""
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.random((n, channels, size, size)), (0, 0, size / 10, size / 10))
    x = (x - x.min()) / (x.max() - x.min())
    return (40 + 170 * x).astype(np.uint8)


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


def test_every_2d_dataset_has_the_papers_list() -> None:
    flags_2d = {d.flag for d in list_datasets() if not d.is_3d}
    assert set(DATASETS) == flags_2d
    assert corruptions_for("breastmnist") == [
        "pixelate",
        "jpeg_compression",
        "speckle_noise",
        "motion_blur",
        "brightness_up",
        "brightness_down",
        "contrast_down",
    ]
    assert len(corruptions_for("retinamnist")) == 8 and len(corruptions_for("dermamnist")) == 15
    for flag, table in DATASETS.items():
        for c in table:
            assert c.kind in KINDS and len(c.params) == 5
            assert all(len(p) == len(KINDS.get(c.kind).fields) for p in c.params), (flag, c.name)


@pytest.mark.parametrize("flag", sorted(DATASETS))
def test_severity_makes_images_differ_more_at_224(flag: str) -> None:
    """Mean absolute difference from the clean image, non-decreasing over severities 1..5."""
    x = smooth_images(2, 3 if flag in RGB else 1, 224)
    for name in corruptions_for(flag):
        kind = next(c.kind for c in DATASETS[flag] if c.name == name)
        d = [mad(corrupt(x, flag, name, s, seed=1), x) for s in SEVERITIES]
        assert d[-1] > 0, (name, d)
        if kind in NOT_MONOTONE:
            assert d[3] > d[4] > d[0], (name, d)  # as the paper's parameters say
            continue
        slack = 0.05 * max(d) if kind in RANDOM_COUNT else 1e-9
        assert all(b >= a - slack for a, b in itertools.pairwise(d)), (name, d)


def test_at_28_px_only_sub_pixel_blurs_do_nothing() -> None:
    for flag in DATASETS:
        x = smooth_images(4, 3 if flag in RGB else 1, 28)
        for name in corruptions_for(flag):
            changed = mad(corrupt(x, flag, name, 5, seed=1), x) > 0
            assert changed != ((flag, name) in SUB_PIXEL_AT_28), (flag, name)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [28, 64])
def test_shape_dtype_and_determinism(channels: int, size: int) -> None:
    x = np.random.default_rng(0).integers(0, 256, (3, channels, size, size), dtype=np.uint8)
    for flag in ("dermamnist", "pathmnist", "chestmnist"):  # every kind of corruption among them
        for name in corruptions_for(flag):
            a = corrupt(x, flag, name, 3, seed=5)
            assert a.shape == x.shape and a.dtype == np.uint8, name
            assert np.array_equal(a, corrupt(x, flag, name, 3, seed=5)), name
    noisy = [corrupt(x, "chestmnist", "gaussian_noise", 3, seed=s) for s in (5, 6)]
    assert not np.array_equal(*noisy)
    assert np.array_equal(corrupt(x[:0], "chestmnist", "pixelate", 1), x[:0])


def test_corruptions_on_the_real_files(real_root: Path) -> None:
    """The two real datasets' lists on their test images: each changes them at severity 5, more than at 1
    (RetinaMNIST's defocus blur at severity 1 is a 0.5 px disk at 28 px: no change)."""
    for flag in ("breastmnist", "retinamnist"):
        x = load_split(flag, "test", 28, real_root).images[:32].numpy()
        for name in corruptions_for(flag):
            d1, d5 = (mad(corrupt(x, flag, name, s, seed=0), x) for s in (1, 5))
            assert 0 <= d1 < d5, (flag, name, d1, d5)


def test_names_severities_and_seeds() -> None:
    assert parse_corruptions("breastmnist", "all") == corruptions_for("breastmnist")
    assert parse_corruptions("breastmnist", "Pixelate, motion_blur") == ["pixelate", "motion_blur"]
    with pytest.raises(MedMNISTLabError, match=r"unknown corruption for breastmnist 'saturate'.*speckle_noise"):
        parse_corruptions("breastmnist", "saturate")
    with pytest.raises(MedMNISTLabError, match="twice"):
        parse_corruptions("breastmnist", "pixelate,pixelate")
    with pytest.raises(MedMNISTLabError, match="2D datasets only"):
        corruptions_for("organmnist3d")
    assert parse_severities("1-5") == [1, 2, 3, 4, 5] and parse_severities("5,1,3") == [1, 3, 5]
    for bad in ("0-5", "1-6", "3-1", "1,,2", "a", "", "2,2", "1.5"):
        with pytest.raises(MedMNISTLabError, match="severities"):
            parse_severities(bad)
    seeds = {seed_for(n, s, 0) for n in ("pixelate", "bubble") for s in SEVERITIES}
    assert len(seeds) == 10 and seed_for("bubble", 3, 0) == seed_for("bubble", 3, 0) != seed_for("bubble", 3, 1)


def test_augment_batch_draws_corruptions_and_identity() -> None:
    x = smooth_images(64, 1, 28)
    a = augment_batch(x, "breastmnist", np.random.default_rng(0))
    assert a.shape == x.shape and a.dtype == np.uint8
    assert np.array_equal(a, augment_batch(x, "breastmnist", np.random.default_rng(0)))
    same = [np.array_equal(a[i], x[i]) for i in range(len(x))]
    assert 2 <= sum(same) <= 24  # identity is one of 8 choices (a few corruptions may leave an image as is)


def test_medmnist_c_policy() -> None:
    assert POLICIES.get("medmnist-c").kind == "corruption"
    assert parse_spec("medmnist-c+trivialaugment+mixup") == ["trivialaugment", "medmnist-c", "mixup"]
    aug = build_augment("trivialaugment+medmnist-c", 28, 3, dataset="retinamnist")
    assert aug.describe()["magnitudes"]["corruptions"] == "retinamnist"
    x = torch.from_numpy(smooth_images(16, 3, 28))
    y = aug.images(x, torch.Generator().manual_seed(0))
    assert y.dtype == torch.uint8 and y.shape == x.shape and not torch.equal(x, y)
    assert torch.equal(y, aug.images(x, torch.Generator().manual_seed(0)))
    other = build_augment("medmnist-c", 28, 1, corruptions="chestmnist")  # another dataset's list, by name
    assert other.magnitudes["corruptions"] == "chestmnist"
    with pytest.raises(MedMNISTLabError, match="set corruptions=FLAG"):
        build_augment("medmnist-c", 28, 1)
    with pytest.raises(MedMNISTLabError, match="2D datasets only"):
        build_augment("medmnist-c", 28, 1, dataset="organmnist3d")
    with pytest.raises(MedMNISTLabError, match="combines image policies"):
        parse_spec("simple+trivialaugment+medmnist-c")


# -- evaluate --corruptions on tiny runs -------------------------------------------------------------
TINY = dict(width=4, batch_size=16, amp=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny BreastMNIST runs (the second trained with medmnist-c) and a DermaMNIST one, on synthetic files."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("robust_data")
    write_npz(root / "breastmnist.npz", "breastmnist", 28, counts=(64, 24, 24))
    write_npz(root / "dermamnist.npz", "dermamnist", 28)
    out = tmp_path_factory.mktemp("robust_runs")
    paths = {"root": root}
    for name, flag, kw in (
        ("a", "breastmnist", dict(epochs=4)),
        ("b", "breastmnist", dict(epochs=4, seed=1, lr=0.01, augment="medmnist-c")),
        ("d", "dermamnist", dict(epochs=1)),
    ):
        cfg = resolve_config(flag, root=str(root), out_dir=str(out), name=name, **TINY, **kw)
        paths[name] = fit(cfg, progress=False).run_dir / "best.pt"
    return paths


def test_training_with_medmnist_c_records_the_list(runs: dict[str, Path]) -> None:
    augment = json.loads((runs["b"].parent / "summary.json").read_text())["augment"]
    assert augment["policies"] == ["medmnist-c"] and augment["magnitudes"] == {"corruptions": "breastmnist"}


def test_evaluate_corruptions_table_and_record(runs: dict[str, Path], capsys) -> None:
    root, ckpt = runs["root"], runs["a"]
    rc, out, err = run_cli(
        capsys, "evaluate", ckpt, "--corruptions", "speckle_noise,brightness_up", "--severities", "1,5", "--root", root
    )
    assert rc == 0, err
    lines = out.splitlines()
    assert any(line.split()[:2] == ["clean", "-"] for line in lines)
    for name in ("speckle_noise", "brightness_up"):
        assert [line.split()[1] for line in lines if line.startswith(name + " ")] == ["1", "5", "mean"]
    assert "ECE" not in out  # no calibration.json beside it
    record = json.loads((ckpt.parent / "robustness_best_test.json").read_text())
    assert record["dataset"] == "breastmnist" and record["severities"] == [1, 5] and record["baseline"] is None
    assert [(c["corruption"], c["severity"]) for c in record["cells"]] == [
        ("speckle_noise", 1),
        ("speckle_noise", 5),
        ("brightness_up", 1),
        ("brightness_up", 5),
    ]
    plain = evaluate(ckpt, "test", root=str(root))  # the clean row is evaluate's own scores
    assert record["clean"]["auc"] == pytest.approx(plain.result.metrics.auc, abs=1e-12)
    assert record["clean"]["balanced_error"] == pytest.approx(1 - plain.result.extras["balanced_accuracy"])
    mean = record["mean_over_severities"]["speckle_noise"]
    cells = [c for c in record["cells"] if c["corruption"] == "speckle_noise"]
    assert mean["auc"] == pytest.approx(np.mean([c["auc"] for c in cells]))
    assert record["corruptions"]["speckle_noise"]["params"]["5"] == [0.30]
    # the same images again: the same numbers; and the record is not replaced without --overwrite
    rc, _, err = run_cli(capsys, "evaluate", ckpt, "--corruptions", "speckle_noise", "--root", root)
    assert rc == 2 and "already exists; pass --overwrite" in err and "Traceback" not in err
    again = evaluate_corruptions(ckpt, "speckle_noise,brightness_up", "1,5", root=str(root))
    assert again.model.cells == record["cells"]


def corrupted_split(root: Path, cell: dict):
    """The test split under the cell's corruption, rebuilt from the cell's record."""
    from dataclasses import replace

    data = load_split("breastmnist", "test", 28, root)
    images = corrupt(data.images.numpy(), "breastmnist", cell["corruption"], cell["severity"], cell["seed"])
    return replace(data, images=torch.from_numpy(images), meta={})


def evaluate_logits(ckpt: Path, data) -> torch.Tensor:
    """The checkpoint's logits on `data`, as evaluate runs the model (fp32, its flips)."""
    from medmnist_lab.engine.device import resolve_precision
    from medmnist_lab.engine.inference import predict
    from medmnist_lab.engine.scoring import load_model

    model, state = load_model(ckpt)
    config = RunConfig.from_dict(state["config"])
    return predict(
        model, data, config, torch.device("cpu"), resolve_precision(torch.device("cpu"), precision="fp32"), False
    )


def test_baseline_relative_error_and_calibration(runs: dict[str, Path], capsys, tmp_path: Path) -> None:
    root, ckpt, base = runs["root"], runs["a"], runs["b"]
    result = evaluate_corruptions(ckpt, "all", "2,4", baseline=base, root=str(root))
    mine, theirs = result.model.means(), result.baseline.means()
    clean, base_clean = result.model.clean["balanced_error"], result.baseline.clean["balanced_error"]
    defined = 0
    for name, rel in result.relative().items():
        den = theirs[name]["balanced_error"] - base_clean  # None where the baseline's error did not move
        want = None if den == 0 else (mine[name]["balanced_error"] - clean) / den
        assert rel["relative_balanced_error"] == (pytest.approx(want) if want is not None else None)
        ratio = (
            None
            if theirs[name]["balanced_error"] == 0
            else mine[name]["balanced_error"] / theirs[name]["balanced_error"]
        )
        assert rel["normalized_balanced_error"] == (pytest.approx(ratio) if ratio is not None else None)
        defined += want is not None
    assert defined >= 1  # the tiny runs give at least one corruption that moves the baseline's error
    rc, out, err = run_cli(
        capsys, "evaluate", ckpt, "--corruptions", "all", "--severities", "2", "--baseline", base, "--root", root,
        "--overwrite", "--json",
    )  # fmt: skip
    assert rc == 0, err
    record = json.loads(out)
    assert record["baseline"]["checkpoint"] == str(base) and set(record["relative"]) == set(
        corruptions_for("breastmnist")
    )
    assert "relative_balanced_error" in record["summary"]
    # with a calibration.json beside the checkpoint: calibrated scores, and ECE in the table
    calibrate(ckpt, "temperature", root=str(root), overwrite=True)
    rc, out, err = run_cli(capsys, "evaluate", ckpt, "--corruptions", "pixelate", "--root", root, "--overwrite")
    assert rc == 0, err
    assert "ECE" in out.splitlines()[2] and "temperature" in out
    record = json.loads((ckpt.parent / "robustness_best_test.json").read_text())
    assert record["calibration_applied"]["used"] is True and 0 <= record["cells"][0]["ece"] <= 1
    assert "coverage" not in record["cells"][0]  # no conformal part: no sets to cover with
    # a conformal calibration: the clean-val sets' coverage and size on each corrupted split
    calibrate(ckpt, "temperature", conformal=0.2, root=str(root), overwrite=True)
    result = evaluate_corruptions(ckpt, "pixelate", "1,5", root=str(root))
    cal = find_calibration(ckpt)
    for cell in result.model.cells:
        data = corrupted_split(root, cell)
        logits = cal.apply(evaluate_logits(ckpt, data))
        probs = scores_from_logits(logits, "binary-class")
        sets = cal.sets(probs, ["0", "1"])
        want = sets[np.arange(len(sets)), data.labels.numpy()[:, 0]].mean()
        assert cell["coverage"] == pytest.approx(want) and cell["set_size"] == pytest.approx(sets.sum(1).mean())
    rc, out, err = run_cli(capsys, "evaluate", ckpt, "--corruptions", "pixelate", "--root", root, "--overwrite")
    assert rc == 0 and "cover" in out.splitlines()[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--corruptions", "saturate"),
            "unknown corruption for breastmnist 'saturate'; choose one of: brightness_down",
        ),
        (("--corruptions", "all", "--severities", "0-5"), "severities '0-5' are not valid"),
        (("--corruptions", "all", "--severities", "1;3"), "severities '1;3' are not valid"),
        (("--severities", "1"), "--severities goes with --corruptions"),
        (("--corruptions", "all", "--baseline", "D"), "a baseline must be a checkpoint of the same dataset"),
        (("--corruptions", "all", "--predictions"), "--predictions is not used with --corruptions"),
        (("B", "--corruptions", "all"), "--corruptions scores one checkpoint; give a second one as --baseline"),
        (("--corruptions", "all", "--split", "val", "--seed", "-1", "--baseline", "nothing.pt"), "nothing.pt"),
    ],
)
def test_bad_inputs_are_one_line(runs: dict[str, Path], capsys, args: tuple[str, ...], message: str) -> None:
    args = tuple({"D": str(runs["d"]), "B": str(runs["b"])}.get(a, a) for a in args)
    rc, out, err = run_cli(capsys, "evaluate", runs["a"], *args, "--root", runs["root"], "--overwrite")
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("calibration:")]
    assert rc == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in out + err, err
