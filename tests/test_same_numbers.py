"""Same numbers on every machine, and commands that answer at once: scoring precision, start-up
imports, a relative data root, short schedules and the dry run's speed cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from medmnist_lab.cli.main import absolute_roots, build_parser, main
from medmnist_lab.engine import device as device_mod
from medmnist_lab.engine import evaluate, fit, resolve_config
from medmnist_lab.engine.schedule import milestone_epochs, short_run_note

TINY = {"epochs": 2, "width": 4, "amp": None}


@pytest.fixture(scope="module")
def tiny_run(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    config = resolve_config("breastmnist", root=str(synthetic_root), out_dir=str(out), name="r", **TINY)
    return fit(config, progress=False).run_dir  # auto: fp32 on this CPU (bf16 is mocked only below)


def test_fp32_scoring_ignores_the_cpus_bf16_support(tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One checkpoint, scored as on a CPU without and with avx512_bf16: the same probabilities in fp32;
    and the bf16 path really differs (so the switch was exercised, not ignored)."""
    ckpt = tiny_run / "best.pt"
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: False)
    plain = evaluate(ckpt, "test").result.scores
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: True)
    assert device_mod.resolve_precision(torch.device("cpu")).name == "bfloat16"  # auto would take bf16 here
    as_bf16_cpu = evaluate(ckpt, "test").result.scores
    np.testing.assert_array_equal(plain, as_bf16_cpu)
    auto = evaluate(ckpt, "test", precision="auto").result.scores
    assert np.abs(auto - plain).max() > 0  # bf16 autocast changes the probabilities
    assert np.abs(auto - plain).max() < 0.05


def test_precision_names_and_errors() -> None:
    cpu = torch.device("cpu")
    assert device_mod.resolve_precision(cpu, None, "fp32").name == "fp32"
    assert device_mod.resolve_precision(cpu, None, "bf16").name == "bfloat16"
    assert device_mod.resolve_precision(cpu, False).name == "fp32"  # the old --amp off
    with pytest.raises(Exception, match="unknown precision 'fp8'"):
        device_mod.resolve_precision(cpu, None, "fp8")
    with pytest.raises(Exception, match="invalid precision 'fp8'"):
        resolve_config("breastmnist", precision="fp8")
    with pytest.raises(Exception, match="give precision only"):
        resolve_config("breastmnist", precision="bf16", amp=True)


def test_training_precision_and_fp32_scores_are_recorded(synthetic_root: Path, tmp_path: Path) -> None:
    config = resolve_config(
        "breastmnist", root=str(synthetic_root), out_dir=str(tmp_path), name="b", precision="bf16", **TINY
    )
    summary = json.loads((fit(config, progress=False).run_dir / "summary.json").read_text())
    assert summary["precision"] == "bfloat16" and summary["score_precision"] == "fp32"
    assert summary["config"]["precision"] == "bf16"


def test_cli_precision_options(tiny_run: Path, synthetic_root: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = tiny_run / "best.pt"
    record = tiny_run / "eval_best_test.json"
    assert main(["evaluate", str(ckpt), "--root", str(synthetic_root)]) == 0
    fp32 = json.loads(record.read_text())
    assert main(["evaluate", str(ckpt), "--root", str(synthetic_root), "--precision", "bf16"]) == 0
    bf16 = json.loads(record.read_text())
    assert fp32["auc"] == pytest.approx(bf16["auc"], abs=0.05) and fp32 != bf16
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:  # argparse: one line naming the choices
        main(["evaluate", str(ckpt), "--precision", "fp8"])
    assert exited.value.code == 2
    assert "invalid choice: 'fp8'" in capsys.readouterr().err


def test_builtin_names_restated_for_the_parser_match_the_engine() -> None:
    from medmnist_lab.cli.common import MODEL_NAMES, PRECISION_CHOICES
    from medmnist_lab.cli.results import FORMATS
    from medmnist_lab.engine.config import PRECISIONS
    from medmnist_lab.models import MODELS
    from medmnist_lab.studies import table_format

    assert tuple(MODELS.names()) == MODEL_NAMES
    assert PRECISION_CHOICES == PRECISIONS
    assert FORMATS == table_format.FORMATS


def test_help_version_and_listings_import_no_torch(synthetic_root: Path) -> None:
    code = (
        "import sys\n"
        "from medmnist_lab.cli.main import build_parser, main\n"
        "build_parser()\n"
        "for argv in (['datasets', 'list'], ['datasets', 'info', 'breastmnist'], ['study', 'list']):\n"
        "    assert main(argv) == 0, argv\n"
        "heavy = sorted(m for m in ('torch', 'sklearn', 'scipy.stats', 'medmnist.dataset') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    env = {**os.environ, "MEDMNIST_ROOT": str(synthetic_root)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout[-500:]
    for argv in (["--version"], ["--help"], ["train", "--help"], ["results", "--help"]):
        code = "import sys\nfrom medmnist_lab.cli.main import main\n"
        code += f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\nprint('TORCH', 'torch' in sys.modules)\n"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "TORCH False" in proc.stdout, (argv, proc.stdout[-300:], proc.stderr[-300:])


def test_a_relative_root_is_made_absolute_at_start_up(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(synthetic_root.parent)
    monkeypatch.setenv("MEDMNIST_ROOT", synthetic_root.name)
    args = build_parser().parse_args(["datasets", "list", "--root", synthetic_root.name])
    absolute_roots(args)
    assert os.environ["MEDMNIST_ROOT"] == str(synthetic_root)
    assert args.root == str(synthetic_root)
    sets = build_parser().parse_args(["study", "run", "s.yaml", "--set", f"root={synthetic_root.name}"])
    absolute_roots(sets)
    assert sets.set == [f'root="{synthetic_root}"']  # --set root=DIR is the same setting
    monkeypatch.chdir(tmp_path)  # a later change of directory changes nothing
    from medmnist_lab.data.paths import resolve_root

    assert resolve_root() == synthetic_root


def test_short_runs_keep_the_first_epoch_at_the_base_rate() -> None:
    one = resolve_config("breastmnist", epochs=1)
    assert milestone_epochs(one) == [1, 1]
    note = short_run_note(one)
    assert note is not None and "0.5 of 1 -> epoch 1" in note and "whole run trains at the base rate 0.001" in note
    assert short_run_note(resolve_config("breastmnist")) is None  # 100 epochs: 50 and 75
    assert milestone_epochs(resolve_config("breastmnist")) == [50, 75]
    assert short_run_note(resolve_config("breastmnist", recipe="fast")) is None  # one-cycle: no milestones
    from medmnist_lab.engine.schedule import SCHEDULES

    lr = SCHEDULES.get("multistep")
    assert [lr(step, 1, one) for step in (0, 1)] == [1.0, pytest.approx(0.01)]


def test_dry_run_measures_once_then_answers_from_the_cache(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import yaml

    monkeypatch.setenv("MEDMNIST_LAB_CACHE", str(tmp_path / "cache"))
    spec = tmp_path / "s.yaml"
    base = {"root": str(synthetic_root), "epochs": 3, "width": 4, "amp": False, "batch_size": 16}
    spec.write_text(yaml.safe_dump({"name": "t", "base": base, "axes": {"dataset": ["breastmnist"], "seed": [0, 1]}}))
    argv = ["study", "run", str(spec), "--out-dir", str(tmp_path / "st"), "--dry-run", "--threads", "1"]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert first.err.count("measuring the training step") == 1  # two seeds, one speed
    assert first.out.count("  measured  ") == 2
    cache = json.loads((tmp_path / "cache" / "speeds.json").read_text())
    (entry,) = cache.values()
    assert entry["t_train"] > 0 and entry["t_eval"] > 0 and entry["setup"] >= 0
    assert main(argv) == 0
    second = capsys.readouterr()
    assert "measuring" not in second.err and second.out.count("  cache  ") == 2
    assert not (tmp_path / "st").exists()  # a dry run writes no study


@pytest.mark.slow
def test_predict_matches_the_onnx_export_on_a_bf16_cpu(
    tiny_run: Path, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run trained with precision auto, predicted on a CPU that would autocast to bf16: the default
    (fp32) probabilities equal its ONNX export's within 1e-4."""
    from medmnist_lab.data import load_split
    from medmnist_lab.deploy.export import export_model
    from medmnist_lab.deploy.predictor import Predictor

    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: True)
    images = load_split("breastmnist", "test", 28, synthetic_root).images.numpy()
    onnx_file, _ = export_model(tiny_run / "best.pt", "onnx", tmp_path / "m.onnx")
    onnx = Predictor.load(onnx_file).probabilities(images)
    assert np.abs(Predictor.load(tiny_run / "best.pt").probabilities(images) - onnx).max() <= 1e-4
    auto = Predictor.load(tiny_run / "best.pt", precision="auto").probabilities(images)
    assert np.abs(auto - onnx).max() > 1e-4  # what predict gave before on such a CPU


def test_amp_is_the_deprecated_spelling_of_precision(capsys: pytest.CaptureFixture) -> None:
    from medmnist_lab.cli.train import _deprecated_amp

    assert _deprecated_amp(None) is None and capsys.readouterr().err == ""
    assert _deprecated_amp(False) is False
    err = capsys.readouterr().err
    assert "--amp is deprecated" in err and "use --precision" in err


def test_a_config_saved_before_precision_existed_loads_and_resumes(tiny_run: Path) -> None:
    """config.yaml / checkpoints written before the precision field: no `precision` key, amp False."""
    from medmnist_lab.engine import RunConfig

    saved = json.loads((tiny_run / "summary.json").read_text())["config"]
    old = {k: v for k, v in saved.items() if k != "precision"} | {"amp": False}
    config = RunConfig.from_dict(old)
    assert config.precision == "auto" and config.amp is False
    assert device_mod.resolve_precision(torch.device("cpu"), config.amp, config.precision).name == "fp32"
    from medmnist_lab.studies.spec import cell_hash

    assert cell_hash(config.to_dict()) == cell_hash(old)  # the new field at its default leaves hashes alone


def test_study_precision_replaces_the_specs_amp(synthetic_root: Path, tmp_path: Path) -> None:
    import argparse

    import yaml

    from medmnist_lab.cli.study import _spec_from_args
    from medmnist_lab.studies.runner import plan

    spec = tmp_path / "s.yaml"
    base = {"root": str(synthetic_root), "epochs": 1, "width": 4, "amp": False}
    spec.write_text(yaml.safe_dump({"name": "t", "base": base, "axes": {"dataset": ["breastmnist"]}}))
    args = argparse.Namespace(
        spec=str(spec),
        set=None,
        root=None,
        precision="bf16",
        device=None,
        datasets=None,
        seeds=None,
        trials=None,
        sizes=None,
    )
    (cell,), _ = plan(_spec_from_args(args), tmp_path / "st")
    assert (cell.config.precision, cell.config.amp) == ("bf16", None)


def test_image_counts_follow_the_files_subsets_and_synthetic_samples(synthetic_root: Path, tmp_path: Path) -> None:
    from medmnist_lab.studies.estimate import image_counts

    with np.load(synthetic_root / "breastmnist.npz") as z:
        n = {s: len(z[f"{s}_labels"]) for s in ("train", "val", "test")}
        per_class = np.bincount(z["train_labels"][:, 0])
    base = resolve_config("breastmnist", root=str(synthetic_root))
    assert image_counts(base) == n  # the file's counts, not the registry's 546/78/156
    assert image_counts(replace(base, subset=10))["train"] == 10
    balanced = image_counts(replace(base, synthetic="gan-balanced"))["train"]
    assert balanced == per_class.max() * 2  # real images plus the samples that balance the classes
    np.savez(tmp_path / "syn.npz", train_images=np.zeros((7, 1, 28, 28), np.uint8), train_labels=np.zeros((7, 1)))
    assert image_counts(replace(base, synthetic=str(tmp_path / "syn.npz")))["train"] == n["train"] + 7
