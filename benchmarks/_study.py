"""What the study-based benchmark scripts (ablation.py, ensembles.py) share: running a spec as a
resumable study, and the mean ± std they report."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml


def write_spec(path: Path, name: str, description: str, recipe: str, cells: list[dict[str, Any]]) -> None:
    """A study of explicit cells over `recipe`. The base is itself a cell, so it is the first cell."""
    base = {"recipe": recipe, **{k: cells[0][k] for k in ("dataset", "seed")}}
    spec = {"name": name, "description": description, "base": base, "include": cells}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def run_study(spec: Path, out: Path, workers: int, threads: int | None, sets: list[str]) -> None:
    """`medmnist-lab study run` in a child process; a killed run resumes with the same command."""
    cmd = [sys.executable, "-m", "medmnist_lab.cli.main", "study", "run", str(spec), "--out-dir", str(out)]
    cmd += ["--workers", str(workers), "--no-progress"]
    cmd += ["--threads", str(threads)] if threads else []
    for item in sets:
        cmd += ["--set", item]
    if subprocess.run(cmd).returncode != 0:
        raise SystemExit(f"the study stopped; rerun the same command to resume it ({out})")


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def pm(v: tuple[float, float] | None, sign: bool = False) -> str:
    return "" if v is None else (f"{v[0]:+.3f} ± {v[1]:.3f}" if sign else f"{v[0]:.3f} ± {v[1]:.3f}")


def study_parser(doc: str, seeds: list[int]) -> argparse.ArgumentParser:
    """The options every study-based script takes (its own are added by the caller)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--recipe", default="fast")
    ap.add_argument("--datasets", nargs="+", default=["breastmnist", "retinamnist"])
    ap.add_argument("--seeds", type=int, nargs="+", default=seeds)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="passed to study run")
    ap.add_argument("-o", "--out", type=Path, required=True, help="study folder (resumed if it exists)")
    ap.add_argument("--summary-only", action="store_true", help="tabulate the finished runs; train nothing")
    return ap
