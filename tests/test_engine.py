"""Training engine: outputs, determinism, resume, checkpoints, bad input, official re-scoring."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from medmnist_lab.cli.main import main
from medmnist_lab.engine import RunConfig, evaluate, evaluate_ensemble, fit, resolve_config
from medmnist_lab.engine.batcher import DeviceBatcher
from medmnist_lab.engine.checkpoint import load_checkpoint
from medmnist_lab.engine.schedule import build_optimizer, build_scheduler
from medmnist_lab.engine.summary import RunSummary
from medmnist_lab.engine.train import TrainingError
from medmnist_lab.errors import CheckpointError, MedMNISTLabError
from synthetic import TASK_EXAMPLES, write_npz

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(width=4, epochs=2, batch_size=16, amp=False)


def tiny_config(flag: str, root: Path, out: Path, **kw):
    return resolve_config(flag, root=str(root), out_dir=str(out), **{**TINY, **kw})


def metrics_of(summary: RunSummary) -> dict:
    return {s: (summary.metrics[s].auc, summary.metrics[s].acc) for s in ("train", "val", "test")}


@pytest.mark.parametrize("task", sorted(TASK_EXAMPLES))
def test_fit_writes_every_output(task, synthetic_root, tmp_path):
    flag = TASK_EXAMPLES[task]
    result = fit(tiny_config(flag, synthetic_root, tmp_path, name="run"), progress=False)
    run = result.run_dir
    assert run == tmp_path / f"{flag}_28" / "resnet18" / "run"
    for name in ("config.yaml", "history.jsonl", "best.pt", "last.pt", "summary.json"):
        assert (run / name).is_file(), name
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1]
    assert {"train_loss", "val_auc", "val_acc", "lr", "seconds", "images_per_s"} <= set(history[0])
    csvs = sorted(p.name for p in run.glob("*.csv"))
    assert len(csvs) == 2 and csvs[0].startswith(f"{flag}_test_[AUC]") and csvs[1].startswith(f"{flag}_val_[AUC]")
    raw = json.loads((run / "summary.json").read_text())
    assert (raw["format"], raw["version"]) == ("medmnist-lab/run-summary", 1)
    summary = RunSummary.read(run)
    assert summary == result.summary
    assert summary.best_epoch in (0, 1)
    for split in ("train", "val", "test"):
        assert 0 <= summary.metrics[split].acc <= 1
    assert summary.versions["torch"] == torch.__version__
    assert summary.config == result.summary.config == tiny_config(flag, synthetic_root, tmp_path, name="run").to_dict()
    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt["dataset"]["label_names"] == list(result.summary.metrics["val"].extras["labels"])


def test_same_seed_same_metrics_and_other_seed_differs(synthetic_root, tmp_path):
    a = fit(tiny_config("breastmnist", synthetic_root, tmp_path, name="a", seed=3), progress=False)
    b = fit(tiny_config("breastmnist", synthetic_root, tmp_path, name="b", seed=3), progress=False)
    c = fit(tiny_config("breastmnist", synthetic_root, tmp_path, name="c", seed=4), progress=False)
    assert metrics_of(a.summary) == metrics_of(b.summary)
    assert np.array_equal(a.test.scores, b.test.scores)
    assert not np.array_equal(a.test.scores, c.test.scores)


def history_of(run: Path) -> list[tuple[float, float]]:
    lines = (run / "history.jsonl").read_text().splitlines()
    return [(h["train_loss"], h["val_auc"]) for h in map(json.loads, lines)]


class Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted_run(synthetic_root, tmp_path):
    cfg = dict(epochs=4, seed=1, augment="none")
    full = fit(tiny_config("dermamnist", synthetic_root, tmp_path, name="full", **cfg), progress=False)

    def stop_after_1(epoch, record):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(
            tiny_config("dermamnist", synthetic_root, tmp_path, name="cut", **cfg),
            progress=False,
            on_epoch_end=stop_after_1,
        )
    cut_dir = tmp_path / "dermamnist_28" / "resnet18" / "cut"
    assert not (cut_dir / "summary.json").exists()
    resumed = fit(
        tiny_config("dermamnist", synthetic_root, tmp_path, name="cut", **cfg), resume=cut_dir, progress=False
    )
    assert metrics_of(resumed.summary) == metrics_of(full.summary)
    assert resumed.summary.resumed_from_epoch == 2
    assert history_of(cut_dir) == history_of(full.run_dir)


def test_resume_via_cli_and_config_mismatch(synthetic_root, tmp_path):
    def stop(epoch, record):
        raise Interrupt

    with pytest.raises(Interrupt):
        fit(tiny_config("breastmnist", synthetic_root, tmp_path, name="r"), progress=False, on_epoch_end=stop)
    run = tmp_path / "breastmnist_28" / "resnet18" / "r"
    assert main(["train", "retinamnist", "--resume", str(run), "--no-progress"]) == 2
    with pytest.raises(MedMNISTLabError, match="settings differ"):
        fit(tiny_config("breastmnist", synthetic_root, tmp_path, name="r", lr=0.5), resume=run, progress=False)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert (run / "summary.json").is_file()


def test_evaluate_reproduces_summary_and_official_rescoring(synthetic_root, tmp_path, monkeypatch):
    from medmnist.evaluator import Evaluator

    result = fit(tiny_config("retinamnist", synthetic_root, tmp_path, name="ev"), progress=False)
    ev = evaluate(result.run_dir / "best.pt", "test")
    assert (ev.result.metrics.auc, ev.result.metrics.acc) == (result.test.metrics.auc, result.test.metrics.acc)
    # The official package re-scores our test CSV to the same numbers (it reads labels from its root).
    defaults = list(Evaluator.__init__.__defaults__)
    defaults[-1] = str(synthetic_root)
    monkeypatch.setattr(Evaluator.__init__, "__defaults__", tuple(defaults))
    csv = next(result.run_dir.glob("retinamnist_test_*.csv"))
    official = Evaluator.parse_and_evaluate(str(csv))
    ours = (result.test.metrics.auc, result.test.metrics.acc)
    assert ours == (official.AUC, official.ACC)


def test_ensemble_averages_the_members_probabilities_and_scores_them_officially(synthetic_root, tmp_path, capsys):
    from medmnist.evaluator import getACC, getAUC

    configs = [tiny_config("breastmnist", synthetic_root, tmp_path, name=f"s{s}", seed=s) for s in (0, 1)]
    runs = [fit(c, progress=False) for c in configs]
    checkpoints = [r.run_dir / "best.pt" for r in runs]
    ens = evaluate_ensemble(checkpoints, "test")
    members = [evaluate(c, "test").result.scores for c in checkpoints]
    assert np.array_equal(ens.result.scores, (members[0] + members[1]) / 2)
    labels = np.load(synthetic_root / "breastmnist.npz")["test_labels"]
    assert ens.result.metrics.auc == getAUC(labels, ens.result.scores, "binary-class")
    assert ens.result.metrics.acc == getACC(labels, ens.result.scores, "binary-class")
    assert [m.checkpoint for m in ens.members] == checkpoints
    out = tmp_path / "ens.json"
    assert main(["evaluate", *map(str, checkpoints), "-o", str(out), "--predictions"]) == 0
    record = json.loads(out.read_text())
    assert record["auc"] == ens.result.metrics.auc and len(record["members"]) == 2
    assert "ensemble of 2" in capsys.readouterr().out
    assert len(list(tmp_path.glob("breastmnist_test_*@ens.csv"))) == 1
    other = fit(tiny_config("retinamnist", synthetic_root, tmp_path, name="o", epochs=1), progress=False)
    with pytest.raises(MedMNISTLabError, match="must share dataset and size"):
        evaluate_ensemble([checkpoints[0], other.run_dir / "best.pt"])
    with pytest.raises(MedMNISTLabError, match="at least two"):
        evaluate_ensemble(checkpoints[:1])


def test_checkpoint_for_another_dataset_is_refused(synthetic_root, tmp_path):
    result = fit(tiny_config("breastmnist", synthetic_root, tmp_path, name="x", epochs=1), progress=False)
    with pytest.raises(CheckpointError, match="breastmnist"):
        evaluate(result.run_dir / "best.pt", "test", dataset="dermamnist")
    with pytest.raises(CheckpointError, match="size 28"):
        evaluate(result.run_dir / "best.pt", "test", size=64)
    assert main(["evaluate", str(result.run_dir / "best.pt"), "--dataset", "chestmnist"]) == 2


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_checkpoint",))


def test_crafted_pickle_checkpoint_cannot_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.pt"
    torch.save({"format": "medmnist-lab/1", "model": Evil()}, bad, pickle_protocol=2)
    with pytest.raises(CheckpointError, match="refusing"):
        load_checkpoint(bad)
    assert not (tmp_path / "pwned_by_checkpoint").exists()
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(Evil()))
    assert main(["evaluate", str(raw)]) == 2
    assert not (tmp_path / "pwned_by_checkpoint").exists()


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(synthetic_root, tmp_path, monkeypatch):
    import medmnist_lab.engine.train as train_mod

    real_loss = train_mod.task_loss
    calls = {"n": 0}
    steps_per_epoch = math.ceil(40 / 16)

    def poisoned(*a, **kw):
        calls["n"] += 1
        loss = real_loss(*a, **kw)
        return loss * float("nan") if calls["n"] > steps_per_epoch else loss

    monkeypatch.setattr(train_mod, "task_loss", poisoned)
    with pytest.raises(TrainingError, match=r"became nan in epoch 1; .* kept at .*last\.pt \(epoch 0"):
        fit(tiny_config("breastmnist", synthetic_root, tmp_path, name="nan", epochs=3), progress=False)
    last = load_checkpoint(tmp_path / "breastmnist_28" / "resnet18" / "nan" / "last.pt")
    assert last["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    # In the first epoch there is no checkpoint to promise; the folder can be started again in place.
    calls["n"] = 10**6
    with pytest.raises(TrainingError, match="no checkpoint was written"):
        fit(tiny_config("breastmnist", synthetic_root, tmp_path, name="nan0", epochs=3), progress=False)
    assert not (tmp_path / "breastmnist_28" / "resnet18" / "nan0" / "last.pt").exists()
    monkeypatch.setattr(train_mod, "task_loss", real_loss)
    again = fit(tiny_config("breastmnist", synthetic_root, tmp_path, name="nan0", epochs=1), progress=False)
    assert again.best_epoch == 0


def test_bad_names_list_valid_choices(synthetic_root, tmp_path):
    with pytest.raises(MedMNISTLabError, match="choose one of: resnet18, resnet50"):
        fit(tiny_config("breastmnist", synthetic_root, tmp_path, model="resnet19"), progress=False)
    with pytest.raises(MedMNISTLabError, match="medmnist-v2"):
        resolve_config("breastmnist", "officiall")
    with pytest.raises(MedMNISTLabError, match="adamw"):
        resolve_config("breastmnist", optimizer="rmsprop")
    with pytest.raises(MedMNISTLabError, match="cosine"):
        resolve_config("breastmnist", schedule="linear")


def test_cli_errors_exit_2_without_traceback(synthetic_root, tmp_path, capsys):
    root = ["--root", str(synthetic_root), "--out-dir", str(tmp_path), "--no-progress"]
    if not torch.cuda.is_available():
        assert main(["train", "breastmnist", "--device", "cuda", *root]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    assert main(["train", "breastmnist", "--model", "ResNet19", *root]) == 2
    err = capsys.readouterr().err
    assert "unknown model" in err and "Traceback" not in err
    assert main(["train", "breastmnist", "--name", "v1.2", *root]) == 2
    assert "letters, digits" in capsys.readouterr().err


def test_seed_spelling_and_existing_run_folder_is_not_overwritten(synthetic_root, tmp_path, capsys):
    args = [
        "train",
        "breastmnist",
        "--model",
        "ResNet18",
        "--width",
        "4",
        "--epochs",
        "1",
        "--precision",
        "fp32",
        "--root",
        str(synthetic_root),
        "--out-dir",
        str(tmp_path),
        "--name",
        "keep",
        "--no-progress",
    ]
    assert main(args) == 0
    best = tmp_path / "breastmnist_28" / "resnet18" / "keep" / "best.pt"
    before = best.read_bytes()
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert best.read_bytes() == before


@pytest.mark.parametrize("recipe", ["fast", "best"])
def test_named_recipes_train_end_to_end(recipe, synthetic_root, tmp_path):
    """Every technique of the issue-11 presets (TrivialAugment, mixup, EMA, flips, batch 64, one-cycle)
    together, on tiny settings: the run finishes and records the recipe it used."""
    cfg = resolve_config(
        "breastmnist", recipe, root=str(synthetic_root), out_dir=str(tmp_path), epochs=2, width=4, device="cpu"
    )
    assert cfg.tta and cfg.ema > 0 and cfg.augment.startswith("trivialaugment") and cfg.batch_size == 64
    result = fit(cfg, progress=False)
    saved = RunConfig.from_yaml(result.run_dir / "config.yaml")
    assert saved == cfg and result.summary.metrics["test"].auc is not None


def test_nesterov_is_sgd_with_nesterov_momentum_and_takes_momentum():
    cfg = resolve_config("breastmnist", optimizer="nesterov", lr=0.05, momentum=0.8)
    opt = build_optimizer(torch.nn.Linear(2, 2), cfg)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["nesterov"] is True and opt.defaults["momentum"] == 0.8
    with pytest.raises(MedMNISTLabError, match=r"momentum=0\.8 applies to optimizer sgd or nesterov only"):
        resolve_config("breastmnist", optimizer="adamw", momentum=0.8)


def test_multistep_matches_torch_multisteplr():
    cfg = resolve_config("breastmnist")  # official: 100 epochs, x0.1 at 50 and 75
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=3)
    ref_opt = torch.optim.Adam(torch.nn.Linear(2, 2).parameters(), lr=1e-3)
    ref = torch.optim.lr_scheduler.MultiStepLR(ref_opt, milestones=[50, 75], gamma=0.1)
    for _epoch in range(100):
        for _ in range(3):
            assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-12)
            sched.step()
        ref.step()


def test_batcher_normalises_like_the_official_transform_and_covers_every_sample():
    from torchvision.transforms import v2

    images = torch.randint(0, 256, (37, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(37)[:, None]
    batches = DeviceBatcher(
        images, labels, 10, torch.device("cpu"), shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    seen = torch.cat([y[:, 0] for _, y in batches])
    assert sorted(seen.tolist()) == list(range(37))
    official = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=[0.5] * 3, std=[0.5] * 3)])
    for x, y in DeviceBatcher(images, labels, 10, torch.device("cpu")):
        assert torch.allclose(x, official(images[y[:, 0]]), atol=1e-6)
    # The streaming path (memory-mapped splits) yields the same batches as the resident one.
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    a = list(DeviceBatcher(images, labels, 10, torch.device("cpu"), shuffle=True, generator=g()))
    b = list(DeviceBatcher(images, labels, 10, torch.device("cpu"), shuffle=True, generator=g(), memory_mapped=True))
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert sorted(ya[:, 0].tolist()) == sorted(yb[:, 0].tolist())
        order = ya[:, 0].argsort(), yb[:, 0].argsort()
        assert torch.equal(xa[order[0]], xb[order[1]])


def test_train_on_real_breastmnist_and_evaluate_cli(real_root, tmp_path, capsys):
    args = [
        "train",
        "breastmnist",
        "--width",
        "8",
        "--epochs",
        "2",
        "--root",
        str(real_root),
        "--out-dir",
        str(tmp_path),
        "--name",
        "real",
        "--no-progress",
    ]
    assert main(args) == 0
    run = tmp_path / "breastmnist_28" / "resnet18" / "real"
    summary = RunSummary.read(run)
    capsys.readouterr()
    assert main(["evaluate", str(run / "best.pt"), "--split", "test", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.split("\nsaved:")[0])
    assert (out["auc"], out["acc"]) == (summary.metrics["test"].auc, summary.metrics["test"].acc)


def test_extra_training_data_hooks(synthetic_root, tmp_path):
    syn = write_npz(tmp_path / "syn.npz", "breastmnist", counts=(30, 1, 1), seed=9)
    result = fit(
        tiny_config(
            "breastmnist", synthetic_root, tmp_path, name="syn", epochs=1, synthetic=str(syn), synthetic_ratio=0.5
        ),
        progress=False,
    )
    data = result.summary.data
    assert data["n_real"] == 40 and data["n_synthetic"] == 20
    with pytest.raises(MedMNISTLabError, match="holds 30"):
        fit(
            tiny_config("breastmnist", synthetic_root, tmp_path, name="syn2", synthetic=str(syn), synthetic_ratio=2.0),
            progress=False,
        )
    # Validation and test still come from the real file.
    val_n = result.summary.metrics["val"].extras["n_samples"]
    assert val_n == 16


@pytest.mark.slow
def test_augmented_training_is_reproducible_and_resumable(synthetic_root, tmp_path):
    cfg = dict(epochs=3, seed=2, augment="simple+cutmix", augment_params={"rotate": 20})
    a = fit(tiny_config("breastmnist", synthetic_root, tmp_path, name="a", **cfg), progress=False)
    b = fit(tiny_config("breastmnist", synthetic_root, tmp_path, name="b", **cfg), progress=False)
    assert metrics_of(a.summary) == metrics_of(b.summary)
    assert a.summary.augment["magnitudes"]["rotate"] == 20

    def stop(epoch, record):
        raise Interrupt

    with pytest.raises(Interrupt):
        fit(tiny_config("breastmnist", synthetic_root, tmp_path, name="c", **cfg), progress=False, on_epoch_end=stop)
    run = tmp_path / "breastmnist_28" / "resnet18" / "c"
    c = fit(tiny_config("breastmnist", synthetic_root, tmp_path, name="c", **cfg), resume=run, progress=False)
    assert metrics_of(c.summary) == metrics_of(a.summary)
    assert history_of(run) == history_of(a.run_dir)


def test_bad_augmentation_magnitude_is_a_clear_cli_error(synthetic_root, tmp_path, capsys):
    args = ["train", "breastmnist", "--root", str(synthetic_root), "--out-dir", str(tmp_path), "--no-progress"]
    assert main([*args, "--augment", "autoaugment-imgnet"]) == 2
    assert "autoaugment-imagenet" in capsys.readouterr().err
    assert main([*args, "--augment", "simple", "--augment-set", "rotate=1000"]) == 2
    err = capsys.readouterr().err
    assert "rotate" in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["breastmnist", "retinamnist"])
def test_every_augmentation_policy_trains_on_real_data(flag, real_root, tmp_path):
    from medmnist_lab.augment import POLICIES

    for policy in (n for n in POLICIES.names() if 2 in POLICIES.get(n).dims):  # volumes: test_engine3d
        cfg = tiny_config(flag, real_root, tmp_path, name=policy, epochs=1, subset=64, batch_size=32, augment=policy)
        result = fit(cfg, progress=False)
        assert result.summary.metrics["test"].extras["n_samples"] == get_n(flag, "test")
        assert math.isfinite(result.summary.metrics["train"].acc)


def get_n(flag: str, split: str) -> int:
    from medmnist_lab.data import get_dataset

    return get_dataset(flag).n_samples[split]


@pytest.mark.slow
def test_offline_expansion_end_to_end_on_real_data(real_root, tmp_path):
    out = tmp_path / "expanded.npz"
    assert (
        main(
            [
                "augment",
                "expand",
                "breastmnist",
                "--policy",
                "simple",
                "--factor",
                "2",
                "-o",
                str(out),
                "--root",
                str(real_root),
            ]
        )
        == 0
    )
    cfg = tiny_config("breastmnist", real_root, tmp_path, name="exp", epochs=1, train_npz=str(out))
    result = fit(cfg, progress=False)
    assert result.summary.data["n_real"] == 3 * 546
    assert result.summary.data["train_meta"]["factor"] == 2
    assert result.summary.metrics["val"].extras["n_samples"] == 78
    assert result.summary.metrics["test"].extras["n_samples"] == 156


@pytest.mark.slow
def test_ema_and_tta_runs_are_scored_as_evaluate_scores_them_and_resume_exactly(synthetic_root, tmp_path):
    """EMA: validation selects on the averaged weights, which are what best.pt's "model" holds (so
    evaluate/predict/export use them); the trained weights ride along for resuming. TTA: val and
    test are scored on each image and its mirror, in fit and in evaluate alike."""
    from medmnist_lab.engine.device import Precision
    from medmnist_lab.engine.inference import predict

    cfg = tiny_config("breastmnist", synthetic_root, tmp_path, name="full", epochs=3, ema=0.9, tta=True)
    full = fit(cfg, progress=False)
    best = load_checkpoint(full.run_dir / "best.pt")
    assert "train_model" in best and best["ema_updates"] > 0
    assert any(not torch.equal(best["model"][k], best["train_model"][k]) for k in best["model"])
    again = evaluate(full.run_dir / "best.pt", "test", root=str(synthetic_root))
    assert (again.result.metrics.auc, again.result.metrics.acc) == (full.test.metrics.auc, full.test.metrics.acc)

    def stop(epoch, record):
        if epoch == 0:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(dataclasses.replace(cfg, name="part"), progress=False, on_epoch_end=stop)
    part = tmp_path / "breastmnist_28" / "resnet18" / "part"
    resumed = fit(dataclasses.replace(cfg, name="part"), resume=part, progress=False)
    assert metrics_of(resumed.summary) == metrics_of(full.summary)
    # TTA is the average of the two views' logits
    from medmnist_lab.data import load_split
    from medmnist_lab.engine.scoring import load_model

    model, _ = load_model(full.run_dir / "best.pt")
    data = load_split("breastmnist", "test", 28, synthetic_root)
    got = predict(model, data, cfg, torch.device("cpu"), Precision(None, False), False)
    x = (data.images.float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        want = (model(x) + model(x.flip(-1))) / 2
    assert torch.allclose(got, want, atol=1e-5)


def test_fields_added_later_keep_the_hashes_of_existing_study_cells():
    from medmnist_lab.studies.spec import cell_hash

    config = tiny_config("breastmnist", Path("/data"), Path("/out")).to_dict()
    before = {k: v for k, v in config.items() if k not in ("ema", "tta")}  # a config of the first engine
    assert cell_hash(config) == cell_hash(before)
    assert cell_hash({**config, "ema": 0.99}) != cell_hash(config)
