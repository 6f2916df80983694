"""The benchmark scripts that build on studies (benchmarks/ensembles.py), run for real on tiny
settings: their numbers must be what the library computes for the same runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from medmnist_lab.engine import evaluate_ensemble

BENCH = Path(__file__).parents[1] / "benchmarks"


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
