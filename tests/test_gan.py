"""GAN training, checkpoints, resume, sampling with exact counts, the synthetic npz, quality metrics."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from medmnist_lab.cli.main import main
from medmnist_lab.data.arrays import META_KEY, load_split
from medmnist_lab.engine.summary import SplitMetrics, SummaryError
from medmnist_lab.errors import CheckpointError, MedMNISTLabError
from medmnist_lab.gan.checkpoint import load_checkpoint
from medmnist_lab.gan.config import GANConfig
from medmnist_lab.gan.modes import LOSSES
from medmnist_lab.gan.quality import (
    diversity,
    fid,
    frechet_distance,
    memorization,
    precision_recall,
)
from medmnist_lab.gan.sampling import load_gan, proportional_counts, resolve_counts, sample, sample_to_npz
from medmnist_lab.gan.summaries import (
    CASResult,
    DiversityReport,
    FeatureExtractorInfo,
    FIDReport,
    GANEpochStats,
    GANQuality,
    GANRunSummary,
    MemorizationReport,
    PrecisionRecall,
)
from medmnist_lab.gan.train import train_gan
from synthetic import make_arrays

TINY = dict(width=4, nz=8, batch_size=16)


def _train(cfg: GANConfig, **kw):
    return train_gan(cfg, progress=False, **kw)


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
    return _train(cfg)


@pytest.fixture(scope="module")
def derma_run(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("runs") / "derma-cond"
    cfg = GANConfig("dermamnist", mode="conditional", epochs=1, out=str(out), root=str(synthetic_root), **TINY)
    return _train(cfg)


# --- training -------------------------------------------------------------------------------


def test_training_gives_finite_losses_grids_and_a_safe_checkpoint(breast_run) -> None:
    assert [h.epoch for h in breast_run.history] == [0, 1]  # 0-based, as the classifier engine's
    for h in breast_run.history:
        assert all(math.isfinite(v) for v in (h.loss_d, h.loss_g, h.d_real, h.d_fake, h.seconds))
        assert 0 < h.d_real < 1 and 0 < h.d_fake < 1
    assert [p.name for p in breast_run.grids] == ["epoch_0000.png", "epoch_0001.png"]
    with Image.open(breast_run.grids[-1]) as im:
        assert im.height == 2 * 56 + 3 * 2  # one row per class (2), 56 px cells, 2 px padding
    lines = (breast_run.run_dir / "history.jsonl").read_text().splitlines()
    assert [GANEpochStats.from_dict(json.loads(line)) for line in lines] == breast_run.history
    ckpt = torch.load(breast_run.checkpoint, weights_only=True)  # the restricted unpickler reads it
    assert ckpt["version"] == 2 and ckpt["epoch"] == 1 and ckpt["class_counts"] == [30, 10]
    assert ckpt["precision"] == "fp32" and "resume" not in ckpt["config"] and "progress" not in ckpt["config"]
    assert ckpt["spec"]["mode"] == "per-class"
    noise = ckpt["fixed_noise"]  # (2 classes x 8 columns, nz), the same 8 vectors in each row
    assert noise.shape == (16, 8) and torch.equal(noise[:8], noise[8:]) and not torch.equal(noise[0], noise[1])


def test_conditional_rgb_training(derma_run) -> None:
    h = derma_run.history[0]
    assert math.isfinite(h.loss_d) and math.isfinite(h.loss_g)
    gan = load_gan(derma_run.checkpoint)
    assert gan.spec.channels == 3 and gan.spec.n_classes == 7


@pytest.mark.parametrize("mode", ["per-class", "conditional"])
def test_resume_continues_exactly(mode: str, unbalanced_root: Path, tmp_path: Path) -> None:
    base = dict(mode=mode, root=str(unbalanced_root), checkpoint_every=1, sample_every=5, **TINY)
    full = _train(GANConfig("breastmnist", epochs=3, out=str(tmp_path / "full"), **base))
    _train(GANConfig("breastmnist", epochs=1, out=str(tmp_path / "part"), **base))
    resumed = _train(GANConfig("breastmnist", epochs=3, out=str(tmp_path / "part"), **base), resume=True)
    assert yaml.safe_load((resumed.run_dir / "config.yaml").read_text())["epochs"] == 3  # not the 1 it began with
    a, b = load_checkpoint(full.checkpoint), load_checkpoint(resumed.checkpoint)
    assert b["epoch"] == 2 and [h["epoch"] for h in b["history"]] == [0, 1, 2]
    assert resumed.summary.resumed_from_epoch == 1 and full.summary.resumed_from_epoch is None
    for key in ("generator", "discriminator"):
        for name, t in a[key].items():
            assert torch.equal(t, b[key][name]), f"{key}.{name} differs after resume"
    assert [h["loss_d"] for h in a["history"]] == [h["loss_d"] for h in b["history"]]


def test_run_folder_is_the_engines_layout(breast_run) -> None:
    """config.yaml, history.jsonl, last.pt, samples/ and, at the end, a typed summary.json."""
    run_dir = breast_run.run_dir
    names = {p.name for p in run_dir.iterdir()}
    assert names == {".lock", "config.yaml", "history.jsonl", "last.pt", "samples", "summary.json"}
    cfg = GANConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    assert cfg.mode == "per-class" and cfg.epochs == 2 and cfg.out == str(run_dir)
    summary = GANRunSummary.read(run_dir)
    assert summary == breast_run.summary
    assert summary.config == cfg.to_dict() and summary.spec == load_checkpoint(breast_run.checkpoint)["spec"]
    assert (summary.dataset, summary.size, summary.mode, summary.epochs) == ("breastmnist", 28, "per-class", 2)
    assert summary.final == breast_run.history[-1] and summary.final.epoch == 1
    assert (summary.device, summary.precision, summary.class_counts) == ("cpu", "fp32", [30, 10])
    assert summary.wall_seconds > 0 and summary.resumed_from_epoch is None
    assert {"medmnist_lab", "torch", "numpy", "python"} <= set(summary.versions)


class _Stop(Exception):
    pass


def test_interrupted_run_resumes_to_the_uninterrupted_result(unbalanced_root: Path, tmp_path: Path) -> None:
    """Killed after epoch 2 with a checkpoint every 2 epochs: history.jsonl holds only the
    checkpointed epochs, no summary; resumed from the folder, the run ends as if never stopped."""
    base = dict(mode="conditional", root=str(unbalanced_root), epochs=4, checkpoint_every=2, sample_every=9, **TINY)
    full = _train(GANConfig("breastmnist", out=str(tmp_path / "full"), **base))

    def stop_after_epoch_2(epoch: int, stats: GANEpochStats) -> None:
        if epoch == 2:
            raise _Stop

    part = tmp_path / "part"
    with pytest.raises(_Stop):
        _train(GANConfig("breastmnist", out=str(part), **base), on_epoch_end=stop_after_epoch_2)
    lines = [json.loads(line) for line in (part / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1] and load_checkpoint(part / "last.pt")["epoch"] == 1
    assert not (part / "summary.json").exists()

    # resume as a path; cfg.out is not used then
    resumed = _train(GANConfig("breastmnist", out=str(tmp_path / "elsewhere"), **base), resume=part)
    assert resumed.run_dir == part and not (tmp_path / "elsewhere").exists()
    strip = [dataclasses.replace(h, seconds=0.0) for h in full.history]
    assert [dataclasses.replace(h, seconds=0.0) for h in resumed.history] == strip
    lines = [GANEpochStats.from_dict(json.loads(line)) for line in (part / "history.jsonl").read_text().splitlines()]
    assert [dataclasses.replace(h, seconds=0.0) for h in lines] == strip
    a, b = load_checkpoint(full.checkpoint), load_checkpoint(resumed.checkpoint)
    for key in ("generator", "discriminator"):
        for name, t in a[key].items():
            assert torch.equal(t, b[key][name]), f"{key}.{name} differs after resume"
    summary = GANRunSummary.read(part)
    assert summary.resumed_from_epoch == 2 and summary.final.loss_d == full.summary.final.loss_d
    assert summary.config["out"] == str(part) == yaml.safe_load((part / "config.yaml").read_text())["out"]


def test_mixed_precision_comes_from_the_engine_and_is_recorded(unbalanced_root: Path, tmp_path: Path) -> None:
    from medmnist_lab.engine.device import resolve_precision

    cfg = GANConfig(
        "breastmnist", epochs=1, precision="bf16", root=str(unbalanced_root), out=str(tmp_path / "r"), **TINY
    )
    expected = resolve_precision(torch.device("cpu"), None, "bf16").name
    run = _train(cfg)
    assert expected == "bfloat16" and run.summary.precision == expected
    assert load_checkpoint(run.checkpoint)["precision"] == expected
    assert math.isfinite(run.summary.final.loss_d) and math.isfinite(run.summary.final.loss_g)
    assert load_gan(run.checkpoint).generator.state_dict()["net.0.weight"].dtype == torch.float32


def test_resume_guards(unbalanced_root: Path, tmp_path: Path) -> None:
    base = dict(root=str(unbalanced_root), out=str(tmp_path / "run"), **TINY)
    with pytest.raises(MedMNISTLabError, match="nothing to resume"):
        _train(GANConfig("breastmnist", epochs=1, **base), resume=True)
    _train(GANConfig("breastmnist", epochs=1, **base))
    with pytest.raises(MedMNISTLabError, match="exists; pass --resume"):
        _train(GANConfig("breastmnist", epochs=2, **base))
    with pytest.raises(CheckpointError, match=r"lr=0\.0002 in the checkpoint vs 0\.001"):
        _train(GANConfig("breastmnist", epochs=2, lr=1e-3, **base), resume=True)
    with pytest.raises(MedMNISTLabError, match="already has 1 epochs"):
        _train(GANConfig("breastmnist", epochs=1, **base), resume=True)
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / "notes.txt").write_text("not a run")
    with pytest.raises(MedMNISTLabError, match=r"holds files that are not a run's \(notes\.txt\)"):
        _train(GANConfig("breastmnist", epochs=1, **{**base, "out": str(tmp_path / "stale")}))
    # A run that died before its first checkpoint is started again in place, under its name.
    died = tmp_path / "died"
    (died / "samples").mkdir(parents=True)
    (died / "samples" / "epoch_0000.png").write_bytes(b"old")
    (died / "config.yaml").write_text("dataset: breastmnist\n")
    (died / "history.jsonl").write_text('{"epoch": 0}\n')
    result = _train(GANConfig("breastmnist", epochs=1, **{**base, "out": str(died)}))
    assert [h.epoch for h in result.history] == [0] and (died / "last.pt").is_file()
    assert (died / "samples" / "epoch_0000.png").read_bytes() != b"old"


def test_bad_config_is_refused_when_built() -> None:
    with pytest.raises(MedMNISTLabError, match="unknown GAN loss 'wgan'"):
        GANConfig("breastmnist", loss="wgan", **TINY)
    with pytest.raises(MedMNISTLabError, match="beta1 must be in"):
        GANConfig("breastmnist", beta1=1.5, **TINY)
    with pytest.raises(MedMNISTLabError, match="multi-label"):
        GANConfig("chestmnist", **TINY)
    with pytest.raises(MedMNISTLabError, match="checkpoint_every must be a positive"):
        GANConfig("breastmnist", checkpoint_every=0)
    with pytest.raises(MedMNISTLabError, match="28, 64"):
        GANConfig("breastmnist", size=128)


def test_gan_config_is_frozen_and_canonical() -> None:
    cfg = GANConfig("BreastMNIST", mode="per_class", loss="BCE", out=Path("runs/x"), **TINY)
    assert (cfg.dataset, cfg.mode, cfg.loss, cfg.out) == ("breastmnist", "per-class", "bce", "runs/x")
    assert cfg == GANConfig("breastmnist", mode="per-class", out="runs/x", **TINY)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3  # type: ignore[misc]
    assert GANConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.spec().mode == "per-class" and cfg.spec().n_classes == 2
    with pytest.raises(MedMNISTLabError, match=r"unknown GAN config fields \['resume'\]"):
        GANConfig.from_dict({**cfg.to_dict(), "resume": True})  # a run flag, not a setting


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
    run = _train(
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


def _as_version_1(path: Path, out: Path) -> Path:
    """Rewrite a checkpoint in the first version's layout: epochs from 1, run flags in the config."""
    ckpt = torch.load(path, weights_only=True)
    for key in ("precision", "elapsed_seconds", "scaler"):
        del ckpt[key]
    ckpt["version"] = 1
    ckpt["config"] = {**{k: v for k, v in ckpt["config"].items() if k != "amp"}, "resume": False, "progress": False}
    ckpt["epoch"] += 1
    ckpt["history"] = [{**h, "epoch": h["epoch"] + 1} for h in ckpt["history"]]
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    return out


def test_version_1_checkpoint_still_samples(breast_run, unbalanced_root: Path, tmp_path: Path) -> None:
    old = _as_version_1(breast_run.checkpoint, tmp_path / "old" / "last.pt")
    ckpt = load_checkpoint(old)  # upgraded in memory to the current layout
    assert ckpt["upgraded_from"] == 1 and ckpt["epoch"] == 1 and [h["epoch"] for h in ckpt["history"]] == [0, 1]
    gan = load_gan(old)
    assert gan.epoch == 1 and gan.config == GANConfig.from_dict(breast_run.summary.config)
    a, _ = sample(old, per_class=2, seed=3, device="cpu")
    b, _ = sample(breast_run.checkpoint, per_class=2, seed=3, device="cpu")
    assert torch.equal(a, b)
    _, counts = sample_to_npz(old, tmp_path / "old.npz", balance=True, device="cpu")
    assert counts == [0, 20]
    cfg = GANConfig("breastmnist", mode="per-class", epochs=3, root=str(unbalanced_root), **TINY)
    with pytest.raises(CheckpointError, match="not resumed"):
        _train(cfg, resume=old.parent)
    torch.save({**torch.load(old, weights_only=True), "version": 3}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="version 3"):
        load_checkpoint(tmp_path / "new.pt")


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
        "short",
        root=str(unbalanced_root),
        synthetic=str(npz),
        epochs=1,
        width=2,
        device="cpu",
        out_dir=str(tmp_path / "runs"),
        name="with-syn",
    )
    summary = fit(cfg, progress=False).summary
    data = summary.data
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
            "--out-dir",
            str(tmp_path),
            "--name",
            "run",
            "--root",
            str(unbalanced_root),
            "--no-progress",
        ]
    )
    assert rc == 0 and (out / "last.pt").is_file() and (out / "samples" / "epoch_0000.png").is_file()
    assert GANRunSummary.read(out).epochs == 1 and "last epoch: loss_d" in capsys.readouterr().out
    rc = main(["gan", "sample", str(out / "last.pt"), "--ratio", "0.2", "-o", str(tmp_path / "s.npz")])
    assert rc == 0
    assert "8 images, per class [6, 2]" in capsys.readouterr().out
    assert main(["gan", "sample", str(out), "--per-class", "1", "-o", str(tmp_path / "t.npz")]) == 2
    assert "a GAN run folder holds last.pt" in capsys.readouterr().err
    assert main(["gan", "train", "chestmnist", "--out-dir", str(tmp_path)]) == 2
    assert "multi-label" in capsys.readouterr().err
    assert main(["gan", "train", "breastmnist", "--mode", "bogus", "--out-dir", str(tmp_path)]) == 2
    assert "unknown GAN mode 'bogus'; choose one of: conditional, per-class" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # one of --per-class/--balance/--ratio is required
        main(["gan", "sample", str(out / "last.pt"), "-o", str(tmp_path / "x.npz")])
    assert exc.value.code == 2


@pytest.mark.slow
def test_cli_resume_applies_options_given_with_their_default_value(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """--resume RUN_DIR takes the run's config and applies every option given, also one whose value
    is the parser's default (100 epochs, a grid every 10): given, not different from a default."""
    tiny = ["--width", "4", "--nz", "8", "--batch-size", "16", "--no-progress"]
    first = ["--epochs", "1", "--lr", "0.001", "--sample-every", "100", "--checkpoint-every", "100"]
    argv = ["gan", "train", "breastmnist", *first, "--out-dir", str(tmp_path), "--name", "r"]
    assert main([*argv, "--root", str(synthetic_root), *tiny]) == 0
    run_dir = tmp_path / "r"
    capsys.readouterr()
    # a setting that may not change on resume is refused by name, also when given with its default value
    assert main(["gan", "train", "--resume", str(run_dir), "--lr", "0.0002", "--epochs", "2"]) == 2
    assert "lr=0.001 in the checkpoint vs 0.0002 now" in capsys.readouterr().err
    # --epochs 100 and --sample-every 10 are the defaults, and the run's 1 and 100 change to them
    argv = ["gan", "train", "--resume", str(run_dir), "--epochs", "100", "--sample-every", "10", "--no-progress"]
    assert main(argv) == 0
    assert "epochs: 100" in capsys.readouterr().out
    assert GANRunSummary.read(run_dir).epochs == 100
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (config["epochs"], config["sample_every"], config["lr"], config["width"]) == (100, 10, 0.001, 4)
    assert (run_dir / "samples" / "epoch_0009.png").is_file()


def test_cli_defaults_are_gan_config_defaults() -> None:
    from medmnist_lab.cli.gan import CONFIG_DEFAULTS

    defaults = {f.name: f.default for f in dataclasses.fields(GANConfig)}
    assert {k: defaults[k] for k in CONFIG_DEFAULTS} == CONFIG_DEFAULTS
    assert defaults["precision"] == "fp32" and defaults["amp"] is None


@pytest.mark.parametrize(
    ("old_amp", "precision", "amp", "resolved_on_a_cpu_without_bf16"),
    [(False, "fp32", None, "fp32"), (None, "auto", None, None), (True, "auto", True, "bfloat16")],
)
def test_configs_written_with_amp_read_back_as_the_same_precision(
    old_amp, precision: str, amp, resolved_on_a_cpu_without_bf16
) -> None:
    from medmnist_lab.engine.device import resolve_precision

    old = {k: v for k, v in GANConfig("breastmnist").to_dict().items() if k not in ("precision", "amp")}
    cfg = GANConfig.from_dict({**old, "amp": old_amp})
    assert (cfg.precision, cfg.amp) == (precision, amp)
    assert GANConfig.from_dict(cfg.to_dict()) == cfg  # the new layout round-trips unchanged
    if resolved_on_a_cpu_without_bf16 is not None:  # auto depends on the CPU; the others do not
        assert resolve_precision(torch.device("cpu"), cfg.amp, cfg.precision).name == resolved_on_a_cpu_without_bf16


def test_precision_is_one_of_the_engine_precisions() -> None:
    with pytest.raises(MedMNISTLabError, match=r"precision must be one of auto, fp32, bf16, fp16, got 'fp8'"):
        GANConfig("breastmnist", precision="fp8")
    with pytest.raises(MedMNISTLabError, match="give precision only"):
        GANConfig("breastmnist", precision="bf16", amp=True)


@pytest.mark.parametrize(
    ("flags", "precision", "amp", "note"),
    [([], "fp32", None, False), (["--precision", "bf16"], "bf16", None, False), (["--amp", "on"], "auto", True, True)],
)
def test_cli_precision_and_the_old_amp(
    flags: list[str], precision: str, amp, note: bool, unbalanced_root: Path, tmp_path: Path, capsys
) -> None:
    args = ["gan", "train", "breastmnist", "--epochs", "1", "--width", "4", "--nz", "8", "--root", str(unbalanced_root)]
    rc = main([*args, "--out-dir", str(tmp_path), "--name", "r", "--no-progress", *flags])
    assert rc == 0
    config = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert (config["precision"], config["amp"]) == (precision, amp)
    assert ("--amp is deprecated" in capsys.readouterr().err) is note


def test_cli_amp_and_precision_together_are_refused(unbalanced_root: Path, tmp_path: Path, capsys) -> None:
    rc = main(["gan", "train", "breastmnist", "--amp", "on", "--precision", "fp32", "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "give --precision alone" in err[0]
    assert not (tmp_path / "breastmnist-28px-conditional-seed0").exists()


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
    assert copies.ratio < 0.01 and "memorization" in copies.warnings[0]
    fresh = memorization(train, rng.normal(size=(100, 8)), test)
    assert fresh.ratio == pytest.approx(1.0, abs=0.2) and fresh.warnings == []


def _quality() -> GANQuality:
    fid_all = FIDReport(1.5, 24, 8, 2.5, 1.25)
    div = DiversityReport(0.9, 0.0, 0.01, 0.2, [])
    return GANQuality(
        checkpoint="/runs/gan/x/last.pt",
        dataset="breastmnist",
        size=28,
        mode="per-class",
        epoch=9,
        seed=0,
        n_generated=24,
        counts=[18, 6],
        feature_extractor=FeatureExtractorInfo(
            "default", "resnet18", 16, "/c/best.pt", 3, test=SplitMetrics(0.8, 0.7, {"n_samples": 8}), val=None
        ),
        fid=fid_all,
        fid_per_class={"malignant": FIDReport(12.0, 6, 2, None, None)},
        precision_recall=PrecisionRecall(3, 0.6, 0.5, 0.7, 0.65),
        diversity=div,
        diversity_per_class={"malignant": DiversityReport(0.3, 0.2, 0.0, 0.2, ["possible mode collapse: ..."])},
        memorization=MemorizationReport(1.0, 1.1, 0.91, []),
        warnings=["possible mode collapse: ..."],
        cas=CASResult(SplitMetrics(0.7, 0.6), SplitMetrics(0.8, 0.75), 40, "short", "resnet18 width 16, 10 epochs"),
    )


def test_gan_quality_round_trips_through_json(tmp_path: Path) -> None:
    q = _quality()
    data = json.loads(json.dumps(q.to_dict()))
    assert (data["format"], data["version"]) == ("medmnist-lab/gan-quality", 1)
    assert set(data["fid"]["per_class"]) == {"malignant"} and set(data["diversity"]) == {"all", "per_class"}
    assert GANQuality.from_dict(data) == q
    assert GANQuality.read(q.write(tmp_path / "run" / "quality.json")) == q
    assert GANQuality.read(tmp_path / "run") == q  # a run folder: its quality.json
    assert GANQuality.from_dict({k: v for k, v in data.items() if k != "cas"}).cas is None
    # The first version's file: no format key, epochs counted from 1, no memorization warnings.
    v0 = {k: v for k, v in data.items() if k not in ("format", "version", "seed")}
    v0 = {**v0, "epoch": 10, "memorization": {k: v for k, v in data["memorization"].items() if k != "warnings"}}
    assert GANQuality.from_dict(v0) == q
    with pytest.raises(SummaryError, match="newer"):
        GANQuality.from_dict({**data, "version": 2})
    with pytest.raises(SummaryError, match="not a GAN quality record"):
        GANQuality.from_dict({**data, "format": "medmnist-lab/run-summary"})
    with pytest.raises(SummaryError, match="not been evaluated"):
        GANQuality.read(tmp_path / "nothing")


def test_gan_run_summary_round_trips_through_json(breast_run, tmp_path: Path) -> None:
    s = breast_run.summary
    data = json.loads(json.dumps(s.to_dict()))
    assert (data["format"], data["version"]) == ("medmnist-lab/gan-run-summary", 1)
    assert GANRunSummary.from_dict(data) == s
    assert GANRunSummary.read(s.write(tmp_path / "summary.json")) == s
    with pytest.raises(SummaryError, match="not a GAN run summary"):
        GANRunSummary.from_dict({**data, "format": "medmnist-lab/gan-quality"})
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "summary.json").write_text(json.dumps(data)[:50])
    with pytest.raises(SummaryError, match="damaged or truncated"):
        GANRunSummary.read(tmp_path / "cut")
    with pytest.raises(SummaryError, match="has not finished"):
        GANRunSummary.read(tmp_path / "none")


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
    assert (r["format"], r["version"]) == ("medmnist-lab/gan-quality", 1)
    q = GANQuality.read(tmp_path / "q.json")
    assert q.to_dict() == r and q.epoch == 1 and set(q.fid_per_class) == {"malignant", "normal, benign"}
    assert q.cas is not None and 0 <= q.cas.synthetic_trained.acc <= 1 and q.feature_extractor.test is not None
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
    run = _train(GANConfig("breastmnist", mode="conditional", epochs=1, root=str(real_root), out=str(tmp_path), **TINY))
    assert math.isfinite(run.history[0].loss_d)
    assert load_checkpoint(run.checkpoint)["class_counts"] == [147, 399]  # malignant, benign
