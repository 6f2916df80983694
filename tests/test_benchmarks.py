"""The benchmark scripts that build on studies (benchmarks/ensembles.py), run for real on tiny
settings: their numbers must be what the library computes for the same runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medmnist_lab.engine import evaluate_ensemble

BENCH = Path(__file__).parents[1] / "benchmarks"


@pytest.mark.slow
def test_ensembles_script_scores_disjoint_groups_like_evaluate(synthetic_root, tmp_path):
    out = tmp_path / "ens"
    env = {**os.environ, "MEDMNIST_ROOT": str(synthetic_root), "OMP_NUM_THREADS": "1"}
    tiny = ["--set", "width=4", "--set", "epochs=1", "--set", "amp=false"]
    cmd = [sys.executable, str(BENCH / "ensembles.py"), "--datasets", "breastmnist", "--seeds", "0", "1", "2", "3"]
    done = subprocess.run([*cmd, "-k", "2", *tiny, "-o", str(out)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    (entry,) = json.loads((out / "ensembles.json").read_text())
    assert [g["seeds"] for g in entry["ensembles"]] == [[0, 1], [2, 3]]
    runs = {}
    for config in out.glob("runs/breastmnist_28/*/*/config.yaml"):
        seed = int(next(line for line in config.read_text().splitlines() if line.startswith("seed:")).split()[1])
        runs[seed] = config.parent / "best.pt"
    expected = evaluate_ensemble([runs[2], runs[3]], "test", root=str(synthetic_root)).result.metrics
    assert (entry["ensembles"][1]["auc"], entry["ensembles"][1]["acc"]) == (expected.auc, expected.acc)
    assert "| breastmnist |" in done.stdout
    # a group size that makes no ensemble fails before any training
    bad = subprocess.run([*cmd, "-k", "1", "-o", str(tmp_path / "bad")], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "-k 1" in bad.stderr and not (tmp_path / "bad").exists()


def test_ensembles_script_refuses_too_few_seeds(tmp_path):
    cmd = [sys.executable, str(BENCH / "ensembles.py"), "--seeds", "0", "1", "-k", "5", "-o", str(tmp_path / "x")]
    bad = subprocess.run(cmd, capture_output=True, text=True)
    assert bad.returncode != 0 and "2 seeds make no group of 5" in bad.stderr


def test_no_benchmark_script_has_its_own_training_step():
    # Every script that times training runs `engine.train_step` (benchmarks/_session.py builds the
    # Session as `fit` does). memory.py's first part is a bare backward on purpose: the model's own
    # memory before any data is loaded, the baseline of its measurement.
    own_steps = sorted(p.name for p in BENCH.glob("*.py") if ".backward(" in p.read_text())
    assert own_steps == ["memory.py"]
    pattern = re.compile(r"\btrain_(step|one_epoch)\(")
    users = sorted(p.name for p in BENCH.glob("*.py") if pattern.search(p.read_text()))
    assert users == [
        "augment_cost.py",
        "epoch_projection.py",
        "memory.py",
        "official3d_speed.py",
        "precision.py",
        "throughput.py",
    ]


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(BENCH / script), *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _table(text: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows[1:]}


@pytest.mark.slow
def test_step_benchmarks_run_the_engine_step_on_tiny_settings():
    table = _table(_run("throughput.py", "--models", "resnet18", "--sizes", "28", "--batch-size", "8",
                        "--steps", "1", "--warmup", "1", "--reps", "1", "--precision", "fp32"))  # fmt: skip
    (row,) = table.values()
    assert row[:2] == ["28", "off"] and float(row[2]) > 0 and float(row[3]) > 0
    table = _table(_run("precision.py", "--size", "28", "--batch-size", "8", "--reps", "1", "--width", "8"))
    assert list(table) == ["fp32", "fp32+channels_last", "bf16", "bf16+channels_last"]
    assert table["fp32"][2] == "1.00x"
    table = _table(_run("augment_cost.py", "--steps", "1", "--warmup", "0", "--batch-size", "8",
                        "--policies", "none", "mixup", "trivialaugment", "--precision", "fp32"))  # fmt: skip
    assert list(table) == ["none", "mixup", "trivialaugment"] and table["none"][1] == "1.000"
    out = _run("epoch_projection.py", "--device", "cpu", "--fraction", "0.02", "--datasets", "breastmnist")
    assert "breastmnist     n=     10" in out and "all 1 datasets" in out


def _robustness_run(folder: Path, augment: str, seed: int, be: dict[int, float]) -> None:
    """A run folder with a config.yaml and a robustness record: two corruptions, BE `be[s]` +/- 0.01."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"dataset: breastmnist\naugment: {augment}\nseed: {seed}\n")
    cells = [
        {"corruption": c, "severity": s, "balanced_error": be[s] + d, "ece": 0.1 * s, "coverage": 0.9 - 0.02 * s + d,
         "set_size": 1.1}
        for s in be for c, d in (("blur", -0.01), ("noise", 0.01))
    ]  # fmt: skip
    record = {"clean": {"balanced_error": be[1] / 2, "ece": 0.05, "coverage": 0.9, "set_size": 1.1}, "cells": cells}
    (folder / "robustness_best_test.json").write_text(json.dumps(record))


def test_robustness_shift_script_pairs_seeds_and_averages_corruptions(tmp_path):
    for seed, shift in ((0, 0.0), (1, 0.02)):
        _robustness_run(tmp_path / f"none-{seed}", "none", seed, {1: 0.30 + shift, 5: 0.40 + shift})
        _robustness_run(tmp_path / f"mc-{seed}", "medmnist-c", seed, {1: 0.20 + shift, 5: 0.30 + shift})
    out = _run("robustness_shift.py", str(tmp_path), "--severities", "1", "5")
    be, shift = out.split("under shift")
    rows = _table(be)
    assert rows["none"] == ["0.155 ± 0.007", "0.310 ± 0.014", "0.410 ± 0.014"]
    # the same offset per seed in both groups: the paired difference is exact, its interval has no width
    assert rows["medmnist-c"][1] == "0.210 ± 0.014 (Δ -0.100 [-0.100, -0.100])"
    cov = next(line for line in shift.splitlines() if "coverage / worst" in line)
    # coverage 0.88 at severity 1 (0.87 and 0.89 for the two corruptions: the worst is 0.87), 0.80 at 5
    assert "0.880 ± 0.000 / 0.870" in cov and "0.800 ± 0.000 / 0.790" in cov
