"""Table of test AUC/ACC (mean ± std over seeds) from the summary.json files under a folder.

Groups runs by dataset, size, model, recipe, augmentation and synthetic data; reads only the
run folders (no training code), as a report would.

    python benchmarks/summarize_runs.py bench_out/official
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def augment_name(value: str | dict) -> str:
    """summary.json holds the spec string, or the policy's describe() dict with its spec."""
    return value if isinstance(value, str) else str(value.get("spec", value))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    args = p.parse_args()
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for path in sorted(args.folder.rglob("summary.json")):
        s = json.loads(path.read_text())
        synthetic = s.get("data", {}).get("n_synthetic", 0)
        key = (
            s["dataset"],
            s["size"],
            s["model"],
            s["recipe"],
            augment_name(s.get("augment", "none")),
            synthetic,
            s["epochs"],
        )
        groups[key].append(s)
    print(
        "| dataset | size | model | recipe | augment | synthetic | epochs | seeds "
        "| test AUC | test ACC | best epochs | wall s/run |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key, runs in sorted(groups.items()):
        aucs = [r["metrics"]["test"]["auc"] for r in runs]
        accs = [r["metrics"]["test"]["acc"] for r in runs]
        best = ",".join(str(r["best_epoch"]) for r in runs)
        wall = statistics.mean(r["wall_seconds"] for r in runs)
        seeds = ",".join(str(r["seed"]) for r in runs)
        print(f"| {' | '.join(map(str, key))} | {seeds} | {fmt(aucs)} | {fmt(accs)} | {best} | {wall:.0f} |")


if __name__ == "__main__":
    main()
