"""Report build time for a 50-run study (issue 10; target: under 30 s on CPU).

Runs (once; reused if its store exists) a 50-cell study of tiny real BreastMNIST runs — ResNet-18
and ResNet-50 x 5 augmentations x 5 seeds, width 4, 1 epoch on 128 images: the report's cost
does not depend on how long the runs trained — then builds `report` of it into fresh folders,
with 1 worker process and with one per core, and prints the wall times (median of --reps).
Every build draws 50 run pages (7 figures each, PNG + SVG), the study page and the index.

    MEDMNIST_ROOT=../shared/data/medmnist python benchmarks/report_speed.py --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = {
    "name": "report-speed",
    "base": {"dataset": "breastmnist", "epochs": 1, "width": 4, "subset": 128, "amp": False, "batch_size": 64},
    "axes": {
        "model": ["resnet18", "resnet50"],
        "augment": ["none", "simple", "trivialaugment", "randaugment", "autoaugment-imagenet"],
        "seed": [0, 1, 2, 3, 4],
    },
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", type=Path, default=Path("bench_out/studies/report-speed"))
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    if not (args.study / "results.db").is_file() or "done" not in _counts(args.study):
        spec = Path(tempfile.mkdtemp()) / "spec.yaml"
        spec.write_text(json.dumps(SPEC))  # JSON is YAML
        cmd = [sys.executable, "-m", "medmnist_lab.cli.main", "study", "run", str(spec), "--out-dir", str(args.study),
               "--workers", "2", "--threads", "1", "--no-progress"]  # fmt: skip
        subprocess.run(cmd, check=True)
    from medmnist_lab.report.site import build_report

    results = {}
    for workers in (1, os.cpu_count() or 1):
        times = []
        for _ in range(args.reps):
            out = Path(tempfile.mkdtemp(prefix="report-speed-"))
            t0 = time.perf_counter()
            built = build_report([args.study], out, progress=False, workers=workers)
            times.append(time.perf_counter() - t0)
            assert len(built.runs) == 50, len(built.runs)
            shutil.rmtree(out)
        results[f"workers={workers}"] = {"median_s": statistics.median(times), "all_s": times}
        print(workers, results[f"workers={workers}"], flush=True)
    print(json.dumps({"cpu_count": os.cpu_count(), "runs": 50, **results}, indent=2))


def _counts(study: Path) -> dict[str, int]:
    from medmnist_lab.studies.store import ResultStore

    with ResultStore(study, create=False) as store:
        return store.counts()


if __name__ == "__main__":
    main()
