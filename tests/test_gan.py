"""GAN training, checkpoints, resume, sampling with exact counts, the synthetic npz, quality metrics."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medmnist_lab.cli.main import main
from medmnist_lab.data.arrays import META_KEY, load_split
from medmnist_lab.errors import CheckpointError, MedMNISTLabError
from medmnist_lab.gan.checkpoint import load_checkpoint
from medmnist_lab.gan.modes import LOSSES
from medmnist_lab.gan.quality import (
    diversity,
    fid,
    frechet_distance,
    memorization,
    precision_recall,
)
from medmnist_lab.gan.sampling import load_gan, proportional_counts, resolve_counts, sample, sample_to_npz
from medmnist_lab.gan.train import GANConfig, train_gan
from synthetic import make_arrays

TINY = dict(width=4, nz=8, batch_size=16, progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")


def _write_unbalanced(path: Path, flag: str, train_counts: list[int], size: int = 28) -> Path:
    """A medmnist-lab file whose train split has the given class counts."""
    images, _ = make_arrays(flag, size, sum(train_counts), seed=1)
    labels = np.repeat(np.arange(len(train_counts)), train_counts).astype(np.uint8)[:, None]
    arrays = {"train_images": images, "train_labels": labels}
    for split, n in (("val", 8), ("test", 8)):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = make_arrays(flag, size, n, seed=2)
    arrays[META_KEY] = np.array(json.dumps({"origin": "test-fixture"}))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def unbalanced_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unbalanced")
    _write_unbalanced(root / "breastmnist.npz", "breastmnist", [30, 10])
    return root


@pytest.fixture(scope="module")
def breast_run(unbalanced_root: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("runs") / "breast-pc"
    cfg = GANConfig(
        "breastmnist", mode="per-class", epochs=2, sample_every=1, out=str(out), root=str(unbalanced_root), **TINY
    )
    return train_gan(cfg)


@pytest.fixture(scope="module")
def derma_run(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("runs") / "derma-cond"
    cfg = GANConfig("dermamnist", mode="conditional", epochs=1, out=str(out), root=str(synthetic_root), **TINY)
    return train_gan(cfg)


# --- training -------------------------------------------------------------------------------


def test_training_gives_finite_losses_grids_and_a_safe_checkpoint(breast_run) -> None:
    assert [h["epoch"] for h in breast_run.history] == [1, 2]
    for h in breast_run.history:
        assert all(math.isfinite(h[k]) for k in ("loss_d", "loss_g", "d_real", "d_fake", "seconds"))
        assert 0 < h["d_real"] < 1 and 0 < h["d_fake"] < 1
    assert [p.name for p in breast_run.grids] == ["epoch_0001.png", "epoch_0002.png"]
    with Image.open(breast_run.grids[-1]) as im:
        assert im.height == 2 * 56 + 3 * 2  # one row per class (2), 56 px cells, 2 px padding
    lines = (breast_run.run_dir / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    ckpt = torch.load(breast_run.checkpoint, weights_only=True)  # the restricted unpickler reads it
    assert ckpt["epoch"] == 2 and ckpt["class_counts"] == [30, 10]
    assert ckpt["spec"]["mode"] == "per-class"
    noise = ckpt["fixed_noise"]  # (2 classes x 8 columns, nz), the same 8 vectors in each row
    assert noise.shape == (16, 8) and torch.equal(noise[:8], noise[8:]) and not torch.equal(noise[0], noise[1])


def test_conditional_rgb_training(derma_run) -> None:
    h = derma_run.history[0]
    assert math.isfinite(h["loss_d"]) and math.isfinite(h["loss_g"])
    gan = load_gan(derma_run.checkpoint)
    assert gan.spec.channels == 3 and gan.spec.n_classes == 7


@pytest.mark.parametrize("mode", ["per-class", "conditional"])
def test_resume_continues_exactly(mode: str, unbalanced_root: Path, tmp_path: Path) -> None:
    base = dict(mode=mode, root=str(unbalanced_root), checkpoint_every=1, sample_every=5, **TINY)
    full = train_gan(GANConfig("breastmnist", epochs=3, out=str(tmp_path / "full"), **base))
    train_gan(GANConfig("breastmnist", epochs=1, out=str(tmp_path / "part"), **base))
    resumed = train_gan(GANConfig("breastmnist", epochs=3, out=str(tmp_path / "part"), resume=True, **base))
    a, b = load_checkpoint(full.checkpoint), load_checkpoint(resumed.checkpoint)
    assert b["epoch"] == 3 and [h["epoch"] for h in b["history"]] == [1, 2, 3]
    for key in ("generator", "discriminator"):
        for name, t in a[key].items():
            assert torch.equal(t, b[key][name]), f"{key}.{name} differs after resume"
    assert [h["loss_d"] for h in a["history"]] == [h["loss_d"] for h in b["history"]]


def test_resume_guards(unbalanced_root: Path, tmp_path: Path) -> None:
    base = dict(root=str(unbalanced_root), out=str(tmp_path / "run"), **TINY)
    with pytest.raises(MedMNISTLabError, match="nothing to resume"):
        train_gan(GANConfig("breastmnist", epochs=1, resume=True, **base))
    train_gan(GANConfig("breastmnist", epochs=1, **base))
    with pytest.raises(MedMNISTLabError, match="exists; pass --resume"):
        train_gan(GANConfig("breastmnist", epochs=2, **base))
    with pytest.raises(CheckpointError, match=r"lr=0\.0002 in the checkpoint vs 0\.001"):
        train_gan(GANConfig("breastmnist", epochs=2, resume=True, lr=1e-3, **base))
    with pytest.raises(MedMNISTLabError, match="already has 1 epochs"):
        train_gan(GANConfig("breastmnist", epochs=1, resume=True, **base))


def test_bad_config_is_a_user_error(unbalanced_root: Path, tmp_path: Path) -> None:
    with pytest.raises(MedMNISTLabError, match="unknown GAN loss 'wgan'"):
        train_gan(GANConfig("breastmnist", loss="wgan", root=str(unbalanced_root), out=str(tmp_path), **TINY))
    with pytest.raises(MedMNISTLabError, match="beta1 must be in"):
        train_gan(GANConfig("breastmnist", beta1=1.5, root=str(unbalanced_root), out=str(tmp_path), **TINY))
    with pytest.raises(MedMNISTLabError, match="multi-label"):
        train_gan(GANConfig("chestmnist", out=str(tmp_path), **TINY))


def test_losses() -> None:
    zero, big = torch.zeros(4), torch.full((4,), 10.0)
    bce, hinge = LOSSES.get("bce"), LOSSES.get("hinge")
    assert bce.d(zero, zero).item() == pytest.approx(2 * math.log(2))  # D undecided on both
    assert bce.d(big, -big).item() == pytest.approx(0, abs=1e-4)  # D right on both
    assert bce.g(big).item() == pytest.approx(0, abs=1e-4) and bce.g(-big).item() == pytest.approx(10, abs=1e-3)
    assert hinge.d(zero, zero).item() == 2 and hinge.d(big, -big).item() == 0
    assert hinge.g(big).item() == -10


def test_64px_training(tmp_path: Path) -> None:
    _write_unbalanced(tmp_path / "data" / "breastmnist_64.npz", "breastmnist", [6, 6], size=64)
    run = train_gan(
        GANConfig("breastmnist", size=64, epochs=1, root=str(tmp_path / "data"), out=str(tmp_path / "r"), **TINY)
    )
    images, _ = sample(run.checkpoint, per_class=2, device="cpu")
    assert images.shape == (4, 1, 64, 64)


# --- checkpoints are data, not code ----------------------------------------------------------


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # would create a file if it were unpickled


def test_malicious_checkpoint_is_refused(tmp_path: Path) -> None:
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"format": "medmnist-lab-gan", "payload": _Evil(marker)}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)
    assert not marker.exists(), "loading must not run code from the file"


def test_foreign_and_missing_checkpoints(tmp_path: Path) -> None:
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a medmnist-lab GAN checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "trunc.pt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "trunc.pt")


# --- sampling --------------------------------------------------------------------------------


def test_resolve_counts() -> None:
    assert resolve_counts([30, 10], per_class=4) == [4, 4]
    assert resolve_counts([30, 10], balance=True) == [0, 20]
    assert resolve_counts([30, 10], ratio=0.5) == [15, 5]
    assert resolve_counts([30, 10, 7], ratio=2) == [60, 20, 14]
    with pytest.raises(MedMNISTLabError, match="exactly one"):
        resolve_counts([30, 10], per_class=2, balance=True)
    with pytest.raises(MedMNISTLabError, match="already balanced"):
        resolve_counts([5, 5], balance=True)
    with pytest.raises(MedMNISTLabError, match="positive"):
        resolve_counts([5, 5], ratio=-1.0)
    assert proportional_counts([30, 10], 7) == [5, 2]
    assert sum(proportional_counts([3, 3, 1], 10)) == 10


@pytest.mark.parametrize(
    ("request_", "expected"),
    [({"per_class": 3}, [3, 3]), ({"balance": True}, [0, 20]), ({"ratio": 0.5}, [15, 5]), ({"ratio": 1.5}, [45, 15])],
)
def test_sample_counts_are_exact(breast_run, request_: dict, expected: list[int]) -> None:
    images, labels = sample(breast_run.checkpoint, device="cpu", **request_)
    assert images.dtype == torch.uint8 and images.shape == (sum(expected), 1, 28, 28)
    assert labels.shape == (sum(expected), 1)
    assert torch.bincount(labels[:, 0], minlength=2).tolist() == expected


def test_sampling_is_seeded(breast_run) -> None:
    a, _ = sample(breast_run.checkpoint, per_class=2, seed=1, device="cpu")
    b, _ = sample(breast_run.checkpoint, per_class=2, seed=1, device="cpu")
    c, _ = sample(breast_run.checkpoint, per_class=2, seed=2, device="cpu")
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_synthetic_npz_loads_through_the_data_layer(breast_run, derma_run, tmp_path: Path) -> None:
    path, counts = sample_to_npz(breast_run.checkpoint, tmp_path / "syn.npz", balance=True, device="cpu")
    assert counts == [0, 20]
    with np.load(path) as npz:
        assert set(npz.files) == {"train_images", "train_labels", META_KEY}
        assert npz["train_images"].shape == (20, 28, 28) and npz["train_images"].dtype == np.uint8
        assert npz["train_labels"].shape == (20, 1) and npz["train_labels"].dtype == np.uint8
    data = load_split("breastmnist", "train", 28, path=path)
    assert data.images.shape == (20, 1, 28, 28)
    assert data.labels[:, 0].tolist() == [1] * 20
    meta = data.meta
    assert meta["origin"] == "synthetic" and meta["mode"] == "per-class" and meta["counts"] == [0, 20]
    assert meta["request"] == {"balance": True} and meta["checkpoint"].endswith("last.pt")

    path, counts = sample_to_npz(derma_run.checkpoint, tmp_path / "rgb.npz", per_class=2, device="cpu")
    with np.load(path) as npz:
        assert npz["train_images"].shape == (14, 28, 28, 3)  # official (N, H, W, C) layout
    data = load_split("dermamnist", "train", 28, path=path)
    assert torch.bincount(data.labels[:, 0]).tolist() == [2] * 7


def test_engine_trains_with_the_synthetic_npz(breast_run, unbalanced_root: Path, tmp_path: Path) -> None:
    """The contract with the training engine: the npz is added to the training split only, and the
    run's summary records where it came from."""
    from medmnist_lab.engine import fit, resolve_config

    npz, _ = sample_to_npz(breast_run.checkpoint, tmp_path / "syn.npz", ratio=0.5, device="cpu")
    cfg = resolve_config(
        "breastmnist",
        "fast",
        root=str(unbalanced_root),
        synthetic=str(npz),
        epochs=1,
        width=2,
        device="cpu",
        out_dir=str(tmp_path / "runs"),
        name="with-syn",
    )
    summary = fit(cfg, progress=False).summary
    data = summary["data"]
    assert data["n_real"] == 40 and data["n_synthetic"] == 20
    assert data["synthetic_meta"]["origin"] == "synthetic" and data["synthetic_meta"]["counts"] == [15, 5]
    assert data["synthetic_meta"]["mode"] == "per-class"


# --- CLI -------------------------------------------------------------------------------------


def test_cli_train_and_sample(unbalanced_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    rc = main(
        [
            "gan",
            "train",
            "breastmnist",
            "--mode",
            "per-class",
            "--epochs",
            "1",
            "--width",
            "4",
            "--nz",
            "8",
            "--out",
            str(out),
            "--root",
            str(unbalanced_root),
            "--no-progress",
        ]
    )
    assert rc == 0 and (out / "last.pt").is_file() and (out / "samples" / "epoch_0001.png").is_file()
    rc = main(["gan", "sample", str(out / "last.pt"), "--ratio", "0.2", "-o", str(tmp_path / "s.npz")])
    assert rc == 0
    assert "8 images, per class [6, 2]" in capsys.readouterr().out
    assert main(["gan", "sample", str(out), "--per-class", "1", "-o", str(tmp_path / "t.npz")]) == 2
    assert "a GAN run folder holds last.pt" in capsys.readouterr().err
    assert main(["gan", "train", "chestmnist", "--out", str(tmp_path / "c")]) == 2
    assert "multi-label" in capsys.readouterr().err
    assert main(["gan", "train", "breastmnist", "--mode", "bogus", "--out", str(tmp_path / "b")]) == 2
    assert "unknown GAN mode 'bogus'; choose one of: conditional, per-class" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # one of --per-class/--balance/--ratio is required
        main(["gan", "sample", str(out / "last.pt"), "-o", str(tmp_path / "x.npz")])
    assert exc.value.code == 2


# --- quality ---------------------------------------------------------------------------------


def test_fid_self_is_zero_and_grows_with_shift() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16))
    assert fid(a, a) == pytest.approx(0, abs=1e-8)
    shifts = [fid(a, a + s) for s in (0.5, 1.0, 2.0)]
    assert shifts == pytest.approx([16 * 0.25, 16 * 1.0, 16 * 4.0], rel=1e-6)  # ||shift||^2, same cov
    b = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16))
    assert fid(a, b) > fid(a, a + 0.1)


def test_frechet_distance_matches_closed_forms() -> None:
    # Diagonal covariances commute: FID = ||mu1 - mu2||^2 + sum (sqrt(s1) - sqrt(s2))^2.
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 0.0, 2.0])
    want = 5 + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(want)
    # General PSD matrices: against scipy's matrix square root.
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    c1, c2 = a @ a.T, b @ b.T
    ref = np.trace(c1) + np.trace(c2) - 2 * np.trace(sqrtm(c1 @ c2)).real
    assert frechet_distance(np.zeros(6), c1, np.zeros(6), c2) == pytest.approx(ref, rel=1e-6)


def test_precision_recall() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 8))
    assert precision_recall(real, real) == (1.0, 1.0)
    far = real + 100
    assert precision_recall(real, far) == (0.0, 0.0)
    half = np.concatenate([real[:100], far[:100]])
    p, _ = precision_recall(real, half)
    assert p == 0.5  # the far half lies outside the real manifold
    # Two real modes, the generator covers one: full precision, half the recall (mode dropping).
    two_modes = np.concatenate([real[:100], far[100:]])
    assert precision_recall(two_modes, real[:100]) == (1.0, 0.5)


def test_mode_collapse_warning() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 8))
    collapsed = np.repeat(real[:1], 200, axis=0)
    report = diversity(real, collapsed)
    assert report.spread_ratio == pytest.approx(0.0) and report.dup_share_fake == 1.0
    assert len(report.warnings) == 2 and all("mode collapse" in w for w in report.warnings)
    healthy = diversity(real, rng.normal(size=(200, 8)))
    assert healthy.warnings == [] and healthy.spread_ratio == pytest.approx(1.0, abs=0.1)


def test_memorization_check() -> None:
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(200, 8)), rng.normal(size=(100, 8))
    copies = memorization(train, train[:100] + 1e-3, test)
    assert copies["ratio"] < 0.01 and "memorization" in copies["warnings"][0]
    fresh = memorization(train, rng.normal(size=(100, 8)), test)
    assert fresh["ratio"] == pytest.approx(1.0, abs=0.2) and fresh["warnings"] == []


def test_evaluate_end_to_end(breast_run, derma_run, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Default feature classifier and CAS through the engine (tiny ResNet, 1 epoch), JSON saved,
    classifier cached; a classifier of another dataset is refused."""
    args = [
        "gan",
        "evaluate",
        str(breast_run.checkpoint),
        "--classifier-epochs",
        "1",
        "--classifier-width",
        "2",
        "--n",
        "24",
        "-o",
        str(tmp_path / "q.json"),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "FID vs real train" in printed and "class malignant" in printed and "CAS (test on real)" in printed
    r = json.loads((tmp_path / "q.json").read_text())
    assert r["n_generated"] == 24 and r["counts"] == [18, 6]
    assert r["fid"]["generated_vs_train"] >= 0 and r["fid"]["test_vs_train"] >= 0
    assert r["fid"]["test_n"] == 8 and r["fid"]["generated_vs_train_at_test_n"] >= 0
    assert set(r["fid"]["per_class"]) == {"malignant", "normal, benign"}
    assert r["fid"]["per_class"]["malignant"]["n_generated"] == 18
    assert 0 <= r["precision_recall"]["precision"] <= 1 and 0 <= r["precision_recall"]["recall"] <= 1
    assert r["feature_extractor"]["source"] == "default" and r["feature_extractor"]["model"] == "resnet18"
    for side in ("synthetic_trained", "real_trained"):
        assert 0 <= r["cas"][side]["acc"] <= 1
    cache = breast_run.run_dir / "quality" / "breastmnist_28" / "resnet18"
    best = cache / "features-resnet18-w2-e1-s0" / "best.pt"
    stamp = best.stat().st_mtime_ns
    assert main([*args[:-2], "--no-cas", "-o", str(tmp_path / "q2.json")]) == 0
    assert best.stat().st_mtime_ns == stamp, "the cached feature classifier must be reused"
    assert json.loads((tmp_path / "q2.json").read_text())["fid"] == r["fid"]  # same features, same seed
    capsys.readouterr()
    assert main(["gan", "evaluate", str(derma_run.checkpoint), "--classifier", str(best), "--no-cas"]) == 2
    assert "trained on breastmnist" in capsys.readouterr().err


def test_real_breastmnist_one_epoch(real_root: Path, tmp_path: Path) -> None:
    run = train_gan(
        GANConfig("breastmnist", mode="conditional", epochs=1, root=str(real_root), out=str(tmp_path), **TINY)
    )
    assert math.isfinite(run.history[0]["loss_d"])
    assert load_checkpoint(run.checkpoint)["class_counts"] == [147, 399]  # malignant, benign
