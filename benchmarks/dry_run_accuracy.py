"""How close `study run --dry-run`'s estimates come to the measured wall time of the cells.

Each case: a fresh speed cache (so the estimate is measured here, as on a new machine), the
dry run's estimate per cell (`experiments.estimate.estimate`, as the CLI calls it), then the
study run for real with the same workers and threads, and each cell's measured seconds from the
results store (the worker's wall time of the cell: data, model, training, final scoring).
Cases: two built-in studies at tiny settings and one real cell (`fast`, BreastMNIST, full size).

    MEDMNIST_ROOT=../shared/data/medmnist OMP_NUM_THREADS=1 \
        python benchmarks/dry_run_accuracy.py --out bench_out/dry_run
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import statistics
from pathlib import Path

import torch

from medmnist_lab.engine.device import cpu_has_bf16, cpu_name
from medmnist_lab.studies.backends import BackendOptions
from medmnist_lab.studies.estimate import CACHE_ENV, estimate
from medmnist_lab.studies.runner import plan, run_study
from medmnist_lab.studies.spec import apply_overrides, load_spec, parse_set
from medmnist_lab.studies.store import ResultStore

TINY = ["width=8", "epochs=3"]
# (label, built-in study, datasets, sets, axes restricted to these values)
CASES = (
    ("resnet18-vs-50, tiny", "resnet18-vs-50", ["breastmnist"], TINY, {}),
    (
        "augment, tiny",
        "augment",
        ["breastmnist"],
        TINY,
        {"augment": ["none", "trivialaugment", "autoaugment-imagenet"]},
    ),
    ("real cell: fast", "resnet18-vs-50", ["breastmnist"], ["recipe=fast"], {"model": ["resnet18"]}),
)


def case_spec(study: str, datasets: list[str], sets: list[str], axes: dict[str, list]):
    spec = apply_overrides(load_spec(study), parse_set(sets), datasets, [0], None)
    return dataclasses.replace(spec, axes={**spec.axes, **axes})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    print(
        f"# {cpu_name()} (bf16: {cpu_has_bf16()}), {args.threads} thread(s), 1 worker, torch {torch.__version__}, "
        f"python {platform.python_version()}"
    )
    print("| case | cell | estimate s | measured s | estimate / measured |")
    print("|---|---|---|---|---|")
    ratios = []
    for label, study, datasets, sets, axes in CASES:
        out = args.out / label.split(",")[0].replace(" ", "-").replace(":", "")
        shutil.rmtree(out, ignore_errors=True)
        os.environ[CACHE_ENV] = str(out / "cache")  # new machine: measured now
        spec = case_spec(study, datasets, sets, axes)
        cells, _ = plan(spec, out / "study")
        estimates = estimate(cells, threads=args.threads)
        run_study(spec, out / "study", options=BackendOptions(workers=1, threads=args.threads), progress=False)
        with ResultStore(out / "study", create=False) as store:
            measured = {row.hash: row.seconds for row in store.rows(statuses=["done"])}
        for cell in cells:
            est, got = estimates[cell.hash][0], measured[cell.hash]
            ratios.append(est / got)
            print(f"| {label} | {cell.label} | {est:.1f} | {got:.1f} | {est / got:.2f} |", flush=True)
        est, got = sum(estimates[c.hash][0] for c in cells), sum(measured[c.hash] for c in cells)
        print(f"| {label} | **the study** ({len(cells)} cells) | {est:.1f} | {got:.1f} | {est / got:.2f} |", flush=True)
    print(
        f"\nestimate / measured over {len(ratios)} cells: median {statistics.median(ratios):.2f}, "
        f"range {min(ratios):.2f}-{max(ratios):.2f}; within +-30%: {sum(0.7 <= r <= 1.3 for r in ratios)}"
    )


if __name__ == "__main__":
    main()
