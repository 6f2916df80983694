"""Robustness records of trained runs, summarised per augmentation, for BENCHMARKS.md.

Reads every `robustness_best_test.json` (written by `medmnist-lab evaluate CKPT --corruptions`, or by
a study's trust steps) under the given folders, with the run's config.yaml beside it, and prints two
Markdown tables per dataset, runs grouped by `augment` and paired by seed:
1. balanced error (BE) per severity, the mean over the dataset's corruptions, mean ± std over seeds,
   with the paired difference from `--baseline` (t-interval, 95%);
2. under shift, when the runs were calibrated (temperature + conformal sets fitted on clean val):
   ECE and conformal coverage per severity, means over the corruptions, mean ± std over seeds; "worst"
   is the lowest seed-mean coverage of any single corruption; and the mean set size.

    python benchmarks/robustness_shift.py studies/robustness/runs [MORE_RUN_FOLDERS] --severities 1 3 5
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import stats

RECORD = "robustness_best_test.json"


def load(folders: list[Path]) -> list[dict[str, Any]]:
    """One entry per run: dataset, augment, seed and the record (a run found twice counts once)."""
    runs: dict[Path, dict[str, Any]] = {}
    for folder in folders:
        for path in sorted(folder.rglob(RECORD)):
            config = yaml.safe_load((path.parent / "config.yaml").read_text())
            runs[path.resolve()] = {
                "dataset": config["dataset"],
                "augment": config.get("augment") or "none",
                "seed": int(config["seed"]),
                "record": json.loads(path.read_text()),
            }
    return list(runs.values())


def per_severity(record: dict[str, Any], metric: str) -> dict[int, float]:
    """metric at each severity, the mean over the corruptions."""
    by: dict[int, list[float]] = defaultdict(list)
    for cell in record["cells"]:
        if cell.get(metric) is not None:
            by[int(cell["severity"])].append(float(cell[metric]))
    return {s: statistics.fmean(v) for s, v in by.items()}


def mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def paired(a: dict[int, float], b: dict[int, float]) -> str:
    """Mean of a - b over the seeds both have, with its 95% t-interval."""
    seeds = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in seeds])
    if d.size < 2:
        return f"Δ {d.mean():+.3f} (1 pair)" if d.size else "no pair"
    half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    return f"Δ {d.mean():+.3f} [{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]"


def tables(runs: list[dict[str, Any]], severities: list[int], baseline: str) -> str:
    out: list[str] = []
    for dataset in sorted({r["dataset"] for r in runs}):
        groups: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
        for r in runs:
            if r["dataset"] == dataset:
                groups[r["augment"]][r["seed"]] = r["record"]
        n = {a: len(g) for a, g in groups.items()}
        out.append(f"### {dataset}: balanced error per severity (mean over corruptions; runs per augment: {n})\n")
        out.append("| augment | clean | " + " | ".join(f"severity {s}" for s in severities) + " |")
        out.append("|---|---|" + "---|" * len(severities))
        base = {s: {seed: per_severity(rec, "balanced_error")[s] for seed, rec in groups.get(baseline, {}).items()}
                for s in severities}  # fmt: skip
        for augment, by_seed in sorted(groups.items()):
            clean = [float(rec["clean"]["balanced_error"]) for rec in by_seed.values()]
            cells = []
            for s in severities:
                mine = {seed: per_severity(rec, "balanced_error")[s] for seed, rec in by_seed.items()}
                text = mean_std(list(mine.values()))
                if augment != baseline and base[s]:
                    text += f" ({paired(mine, base[s])})"
                cells.append(text)
            out.append(f"| {augment} | {mean_std(clean)} | " + " | ".join(cells) + " |")
        calibrated = [g for g in groups.values() if any("coverage" in rec["clean"] for rec in g.values())]
        if not calibrated:
            out.append("\n(no conformal calibration in these records: no under-shift table)\n")
            continue
        out.append(f"\n### {dataset}: under shift, calibrated on clean val (means over corruptions)\n")
        out.append("| augment | | clean | " + " | ".join(f"severity {s}" for s in severities) + " |")
        out.append("|---|---|---|" + "---|" * len(severities))
        for augment, by_seed in sorted(groups.items()):
            recs = list(by_seed.values())
            ece = [mean_std([float(r["clean"]["ece"]) for r in recs])]
            cov = [mean_std([float(r["clean"]["coverage"]) for r in recs])]
            sizes = [statistics.fmean(float(r["clean"]["set_size"]) for r in recs)]
            for s in severities:
                ece.append(mean_std([per_severity(r, "ece")[s] for r in recs]))
                per_corruption: dict[str, list[float]] = defaultdict(list)
                for r in recs:
                    for c in r["cells"]:
                        if int(c["severity"]) == s:
                            per_corruption[c["corruption"]].append(float(c["coverage"]))
                sizes.append(statistics.fmean(per_severity(r, "set_size")[s] for r in recs))
                worst = min(statistics.fmean(v) for v in per_corruption.values())
                cov.append(f"{mean_std([per_severity(r, 'coverage')[s] for r in recs])} / {worst:.3f}")
            out.append(f"| {augment} | ECE | " + " | ".join(ece) + " |")
            out.append("| | coverage / worst | " + " | ".join(cov) + " |")
            out.append("| | mean set size | " + " | ".join(f"{x:.2f}" for x in sizes) + " |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path, help="folders holding run folders with robustness records")
    p.add_argument("--severities", nargs="+", type=int, default=[1, 3, 5], help="severities to show")
    p.add_argument("--baseline", default="none", help="the augment the others are paired against")
    args = p.parse_args()
    runs = load(args.folders)
    if not runs:
        raise SystemExit(f"no {RECORD} under {', '.join(map(str, args.folders))}")
    print(tables(runs, args.severities, args.baseline))


if __name__ == "__main__":
    main()
