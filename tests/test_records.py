"""Typed run records: frozen configs validated once, summaries that round-trip, retention."""

from __future__ import annotations

import dataclasses
import json

import pytest

from medmnist_lab.data.registry import get_dataset
from medmnist_lab.engine import RunConfig, fit, resolve_config
from medmnist_lab.engine.checkpoint import load_checkpoint
from medmnist_lab.engine.config import RECIPES, Recipe
from medmnist_lab.engine.runfolder import RunFolder
from medmnist_lab.engine.summary import RunSummary, SplitMetrics, SummaryError
from medmnist_lab.errors import MedMNISTLabError


def test_official_recipe_is_the_dataclass_defaults():
    assert RECIPES.get("medmnist-v2").overrides == {}
    assert resolve_config("breastmnist") == RunConfig("breastmnist")
    short = resolve_config("breastmnist", "short")  # the `fast` recipe before issue 11, kept for the GAN
    assert short.recipe == "short" and short.epochs == 30 and short.optimizer == "adamw" and not short.tta


@pytest.mark.parametrize("recipe", ["fast", "best"])
def test_each_technique_of_a_recipe_can_be_removed_alone(recipe):
    """benchmarks/ablation.py removes one technique at a time: each removal must resolve to a valid
    config that differs from the full recipe in exactly the fields the removal names."""
    full = resolve_config("breastmnist", recipe).to_dict()
    techniques = RECIPES.get(recipe).techniques
    assert len(techniques) >= 3
    for name, removal in techniques.items():
        ablated = resolve_config("breastmnist", recipe, **removal).to_dict()
        changed = {k for k in full if full[k] != ablated[k]}
        assert changed == set(removal), name
    with pytest.raises(MedMNISTLabError, match="unknown recipe technique 'x' fields"):
        Recipe("d", {}, {"x": {"no_such_field": 1}})


@pytest.mark.parametrize("recipe", ["fast", "best"])
def test_batch_follows_the_training_split_size_unless_given(recipe, tmp_path):
    """fast and best choose the batch from the registry's training-split size (64 under 1,000
    images, 128 from there); an explicit batch wins, and the saved config carries the chosen one."""
    assert resolve_config("breastmnist", recipe).batch_size == 64  # 546 training images
    assert resolve_config("breastmnist", recipe, size=64).batch_size == 64
    assert resolve_config("retinamnist", recipe).batch_size == 128  # 1,080
    assert resolve_config("tissuemnist", recipe).batch_size == 128  # 165,466
    assert resolve_config("breastmnist", recipe, batch_size=32).batch_size == 32
    resolve_config("breastmnist", recipe).to_yaml(tmp_path / "c.yaml")
    assert RunConfig.from_yaml(tmp_path / "c.yaml").batch_size == 64
    with pytest.raises(MedMNISTLabError, match="recipe dataset rule"):
        Recipe("d", {}, by_dataset=lambda info: {"batch": 1}).for_dataset(get_dataset("breastmnist"))


def test_config_is_frozen_canonical_and_validated_at_construction():
    a = RunConfig("BreastMNIST", model="ResNet18", optimizer="ADAM", milestones=[0.5, 0.75])
    b = RunConfig("breastmnist")
    assert a == b and a.dataset == "breastmnist" and a.model == "resnet18"
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.epochs = 3  # type: ignore[misc]
    for bad, match in (
        ({"epochs": 0}, "epochs"),
        ({"model": "resnet19"}, "resnet18"),
        ({"augment": "simpel"}, "simple"),
        ({"size": 100}, "size 100"),
        ({"subset": -1}, "subset"),
    ):
        with pytest.raises(MedMNISTLabError, match=match):
            RunConfig("breastmnist", **bad)
    with pytest.raises(MedMNISTLabError, match="dataset"):
        RunConfig("nomnist")
    # from_dict of its own to_dict: equal, so a resumed run's config check compares like with like
    assert RunConfig.from_dict(json.loads(json.dumps(a.to_dict()))) == a


def _summary(**kw) -> RunSummary:
    base = dict(
        run="r",
        dataset="breastmnist",
        size=28,
        model="resnet18",
        recipe="medmnist-v2",
        seed=1,
        best_epoch=3,
        epochs=10,
        metrics={"test": SplitMetrics(0.9, 0.8, {"n_samples": 156})},
        wall_seconds=12.5,
    )
    return RunSummary(**{**base, **kw})


def test_summary_round_trips_and_reads_version_0(tmp_path):
    s = _summary(config={"dataset": "breastmnist"})
    path = s.write(tmp_path / "summary.json")
    assert RunSummary.read(tmp_path) == s
    # a first-version file: no format/version/config keys
    legacy = {k: v for k, v in s.to_dict().items() if k not in ("format", "version", "config")}
    (tmp_path / "old.json").write_text(json.dumps(legacy))
    old = RunSummary.read(tmp_path / "old.json")
    assert old.config is None and old.split("test").auc == 0.9 and old.split("test").extras == {"n_samples": 156}
    # damaged, foreign, too new, missing
    path.write_text(path.read_text()[:40])
    with pytest.raises(SummaryError, match="damaged or truncated"):
        RunSummary.read(path)
    (tmp_path / "gan.json").write_text(json.dumps({"format": "medmnist-lab-gan"}))
    with pytest.raises(SummaryError, match="not a run summary"):
        RunSummary.read(tmp_path / "gan.json")
    (tmp_path / "new.json").write_text(json.dumps({**s.to_dict(), "version": 99}))
    with pytest.raises(SummaryError, match="newer"):
        RunSummary.read(tmp_path / "new.json")
    with pytest.raises(SummaryError, match="has not finished"):
        RunSummary.read(tmp_path / "nothing")
    with pytest.raises(SummaryError, match="lacks"):
        RunSummary.from_dict({"run": "x"})


def test_history_truncation_and_temp_cleanup(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.claim()
    assert folder.start_fresh({"a": 1}, "hint") is False
    for e in range(4):
        folder.append_history({"epoch": e})
    dead_pid = 2**22 + 1  # above the default pid_max: no such process
    (folder.path / f".last.pt.{dead_pid}.tmp").write_bytes(b"x")
    folder.truncate_history(1)
    folder.remove_temp_files()
    assert [r["epoch"] for r in folder.read_history()] == [0, 1]
    assert not list(folder.path.glob(".*.tmp"))
    # no checkpoint yet: a run that died here is started again in place, its history emptied
    assert folder.start_fresh({"a": 2}, "hint") is True
    assert folder.read_history() == []
    (folder.path / "last.pt").write_bytes(b"x")
    with pytest.raises(MedMNISTLabError, match="already exists; hint"):
        folder.start_fresh({"a": 1}, "hint")
    folder.release()


@pytest.mark.parametrize("keep", ["best", "last", "both"])
def test_checkpoint_retention(keep, synthetic_root, tmp_path, one_thread):
    cfg = resolve_config(
        "breastmnist", root=str(synthetic_root), out_dir=str(tmp_path), name="k", epochs=1, width=4, amp=False
    )
    result = fit(cfg, progress=False, keep=keep)
    best, last = result.run_dir / "best.pt", result.run_dir / "last.pt"
    assert best.exists() == (keep != "last") and last.exists() == (keep != "best")
    if keep == "best":
        state = load_checkpoint(best)
        assert "optimizer" not in state and "rng" not in state
        model_bytes = sum(v.numel() * v.element_size() for v in state["model"].values())
        assert best.stat().st_size < 1.3 * model_bytes  # weights only, no Adam moments
        from medmnist_lab.engine import evaluate

        assert evaluate(best, "test").result.metrics.auc == result.test.metrics.auc
    with pytest.raises(MedMNISTLabError, match="choose one of: best, last, both"):
        RunFolder(result.run_dir).apply_retention("none")


def test_resume_cuts_history_lines_past_the_checkpoint(synthetic_root, tmp_path, one_thread):
    """A kill after an epoch's history line but before its checkpoint: the resumed run's history
    equals an uninterrupted one's (the extra line is dropped, then written again for real)."""
    kw = dict(root=str(synthetic_root), name="h", epochs=3, width=4, amp=False)
    full = fit(resolve_config("breastmnist", out_dir=str(tmp_path / "full"), **kw), progress=False)
    cfg = resolve_config("breastmnist", out_dir=str(tmp_path / "cut"), **kw)

    def stop(epoch, record):
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(cfg, progress=False, on_epoch_end=stop)
    run = tmp_path / "cut" / "breastmnist_28" / "resnet18" / "h"
    folder = RunFolder(run)
    folder.append_history({"epoch": 1, "train_loss": 123.0})  # written, then killed before last.pt
    (run / ".last.pt.999.tmp").write_bytes(b"half a checkpoint")
    resumed = fit(cfg, resume=run, progress=False)
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in folder.read_history()]
    ref = [
        {k: v for k, v in r.items() if k not in ("seconds", "images_per_s")}
        for r in RunFolder(full.run_dir).read_history()
    ]
    assert strip == ref and [r["epoch"] for r in strip] == [0, 1, 2]
    assert not list(run.glob(".*.tmp"))
    assert resumed.summary.metrics["test"] == full.summary.metrics["test"]


def test_config_values_get_their_field_type_at_construction():
    c = RunConfig("breastmnist", lr="1e-3", epochs=10.0)  # YAML 1.1 reads 1e-3 as text
    assert (c.lr, c.epochs) == (0.001, 10) and isinstance(c.epochs, int)
    for bad, match in (({"epochs": "ten"}, "epochs='ten' is not an integer"), ({"amp": "yes"}, "true/false")):
        with pytest.raises(MedMNISTLabError, match=match):
            RunConfig("breastmnist", **bad)


def test_ablation_skips_a_removal_that_the_dataset_rule_makes_a_no_op(tmp_path):
    """benchmarks/ablation.py: on RetinaMNIST the batch rule already gives 128, so 'without batch 64'
    would be the full recipe again: it is no cell there, and is one on BreastMNIST."""
    import importlib.util
    from pathlib import Path

    import yaml

    path = Path(__file__).parents[1] / "benchmarks" / "ablation.py"
    spec = importlib.util.spec_from_file_location("ablation", path)
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)
    batch = next(name for name in ablation.variants("fast") if "batch" in name)
    assert batch in ablation.effective("breastmnist", "fast")
    assert batch not in ablation.effective("retinamnist", "fast")
    ablation.write_spec("fast", ["breastmnist", "retinamnist"], [0], tmp_path / "s.yaml")
    cells = yaml.safe_load((tmp_path / "s.yaml").read_text())["include"]
    per = {d: sum(c["dataset"] == d for c in cells) for d in ("breastmnist", "retinamnist")}
    assert per == {"breastmnist": len(ablation.variants("fast")), "retinamnist": len(ablation.variants("fast")) - 1}


def test_a_summary_names_the_commit_whose_code_was_loaded(monkeypatch):
    # A run (or a study worker) outlives commits made in the checkout meanwhile: the commit is read
    # when the engine is imported, and summaries written later do not ask git again.
    import subprocess
    from pathlib import Path

    from medmnist_lab.engine import runinfo

    where = Path(runinfo.__file__).parent
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True).returncode != 0:
        pytest.skip("the package is not in a git checkout")
    # a commit of this repository (not compared with HEAD now: a commit made while the tests run moves it)
    assert runinfo.LOADED_COMMIT is not None and len(runinfo.LOADED_COMMIT) == 40
    known = subprocess.run(["git", "cat-file", "-e", f"{runinfo.LOADED_COMMIT}^{{commit}}"], cwd=where)
    assert known.returncode == 0

    def no_git(*args, **kwargs):
        raise AssertionError("git asked again when a summary is written")

    monkeypatch.setattr(runinfo, "git_commit", no_git)
    assert runinfo.environment_info()["git_commit"] == runinfo.LOADED_COMMIT
