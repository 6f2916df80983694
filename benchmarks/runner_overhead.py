"""Study runner overhead per cell: the same tiny cells run by `fit()` in this process and by
`run_study` (a fresh worker process per cell, the store, logs), side by side, interleaved.

Extra time = study wall time - direct wall time, for a small and a large number of cells; its
slope is the marginal overhead per cell, its intercept the one-off cost of a study run (starting
the forkserver, which imports torch once). Medians over repetitions. The cells are tiny on purpose
(width 4, 1 epoch, 64 training images): what is left is the runner's own cost (a process per
cell forked from the forkserver, store writes, log files, first-use costs of a fresh process),
which a real cell pays once whatever its length.

    MEDMNIST_ROOT=../shared/data/medmnist OMP_NUM_THREADS=1 \
        python benchmarks/runner_overhead.py --cells 2 8 --reps 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from medmnist_lab.engine import fit
from medmnist_lab.studies.backends import BackendOptions
from medmnist_lab.studies.runner import run_study
from medmnist_lab.studies.spec import expand, parse_spec


def spec(cells: int, backend: str):
    return parse_spec(
        {
            "name": f"overhead-{backend}",
            "base": {"dataset": "breastmnist", "epochs": 1, "width": 4, "subset": 64, "amp": False},
            "axes": {"seed": list(range(cells))},
        }
    )


def direct(cells: int, out: Path) -> float:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    for cell in expand(spec(cells, "direct"), out):
        fit(cell.config, progress=False, keep="best")
    return time.perf_counter() - t0


def study(cells: int, out: Path, backend: str) -> float:
    t0 = time.perf_counter()
    report = run_study(
        spec(cells, backend), out, backend=backend, options=BackendOptions(workers=1, threads=1), progress=False
    )
    assert report.done == cells, report
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, nargs=2, default=[2, 8], metavar=("FEW", "MANY"))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--backends", nargs="+", default=["local"], choices=["local", "ray"])
    args = p.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}")
    extra: dict[tuple[str, int], list[float]] = {}
    for rep in range(args.reps):
        for n in args.cells:
            with tempfile.TemporaryDirectory() as tmp:
                base = direct(n, Path(tmp) / "direct")
                for backend in args.backends:
                    wall = study(n, Path(tmp) / backend, backend)
                    extra.setdefault((backend, n), []).append(wall - base)
                    print(f"rep {rep}, {n} cells: direct {base:.1f}s, {backend} {wall:.1f}s, extra {wall - base:+.1f}s")
    few, many = args.cells
    for backend in args.backends:
        a, b = statistics.median(extra[backend, few]), statistics.median(extra[backend, many])
        per_cell = (b - a) / (many - few)
        print(
            f"{backend}: marginal overhead {per_cell:+.2f}s per cell, one-off {a - few * per_cell:+.1f}s per study run "
            f"(medians of {args.reps}: extra {a:+.1f}s for {few} cells, {b:+.1f}s for {many})"
        )


if __name__ == "__main__":
    main()
