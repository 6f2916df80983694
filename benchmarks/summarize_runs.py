"""Table of test AUC/ACC (mean ± std over seeds) from the summary.json files under a folder.

Groups runs by dataset, size, model, recipe, augmentation and synthetic data; reads only the
run folders (no training code), as a report would. With `--baseline none` each group also gets
the paired difference to the `none` group of the same setting: per seed (same seed in both),
then mean ± std over the shared seeds, which cancels part of the seed-to-seed spread.

    python benchmarks/summarize_runs.py bench_out/official
    python benchmarks/summarize_runs.py bench_out/official bench_out/augment --baseline none
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


def paired_delta(runs: list[dict], base: list[dict], metric: str) -> str:
    """Mean ± std of (run - baseline) test `metric` over the seeds both groups have."""
    base_by_seed = {r["seed"]: r["metrics"]["test"][metric] for r in base}
    deltas = [r["metrics"]["test"][metric] - base_by_seed[r["seed"]] for r in runs if r["seed"] in base_by_seed]
    if not deltas:
        return "-"
    sign = "+" if statistics.mean(deltas) >= 0 else ""
    return sign + fmt(deltas)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", type=Path, nargs="+", help="folders searched for run summary.json files")
    p.add_argument("--baseline", default=None, metavar="AUGMENT", help="add paired differences to this policy")
    args = p.parse_args()
    for folder in args.folders:
        if not folder.is_dir():
            p.error(f"{folder} is not a folder")
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for path in sorted(f for folder in args.folders for f in folder.rglob("summary.json")):
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
    delta_head = f" Δ AUC vs {args.baseline} | Δ ACC vs {args.baseline} |" if args.baseline else ""
    print(
        "| dataset | size | model | recipe | augment | synthetic | epochs | seeds "
        f"| test AUC | test ACC |{delta_head} best epochs | wall s/run |"
    )
    print("|---" * (12 + 2 * bool(args.baseline)) + "|")
    for key, runs in sorted(groups.items()):
        runs.sort(key=lambda r: r["seed"])
        aucs = [r["metrics"]["test"]["auc"] for r in runs]
        accs = [r["metrics"]["test"]["acc"] for r in runs]
        best = ",".join(str(r["best_epoch"]) for r in runs)
        wall = statistics.mean(r["wall_seconds"] for r in runs)
        seeds = ",".join(str(r["seed"]) for r in runs)
        delta = ""
        if args.baseline:
            base = groups.get((*key[:4], args.baseline, *key[5:]), [])
            delta = f" {paired_delta(runs, base, 'auc')} | {paired_delta(runs, base, 'acc')} |"
        print(f"| {' | '.join(map(str, key))} | {seeds} | {fmt(aucs)} | {fmt(accs)} |{delta} {best} | {wall:.0f} |")


if __name__ == "__main__":
    main()
