"""Calibration and conformal coverage of trained runs on the real files, for BENCHMARKS.md.

For every `best.pt` under the given folders (e.g. a study's runs), with the logits `evaluate` scores:
1. temperature scaling fitted on val (`metrics.reliability.fit_scaling`, what `medmnist-lab
   calibrate` does), test ECE (equal-width and equal-mass), NLL and Brier before and after;
2. split-conformal sets (`metrics.conformal.conformal_sets`) at each ALPHA and score:
   - on the real protocol (calibrated on val, measured on test: the number `calibrate` reports);
   - over R random re-splits of the pooled val + test predictions into a calibration part of val's
     size and the rest, the check of the coverage guarantee when the two parts are exchangeable
     by construction. The re-splits use the unscaled probabilities (a temperature fitted on val
     would have seen part of each evaluation part);
   - Mondrian (per-class) LAC: the worst class's coverage on test, and over the re-splits.
Runs are grouped by dataset and model; each number is a mean ± std over the runs (seeds).

    python benchmarks/calibration.py STUDY_DIR/runs --resplits 200 --out calib.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from medmnist_lab.engine.scoring import split_logits
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.metrics.conformal import conformal_sets
from medmnist_lab.metrics.official import scores_from_logits
from medmnist_lab.metrics.reliability import calibration_scores, fit_scaling

ALPHAS = (0.05, 0.1, 0.2)
SCORES = ("lac", "aps", "raps")


def coverage(sets: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(coverage, mean set size)."""
    return float(sets[np.arange(y.size), y].mean()), float(sets.sum(1).mean())


def worst_class(sets: np.ndarray, y: np.ndarray) -> float:
    covered = sets[np.arange(y.size), y]
    return min(float(covered[y == c].mean()) for c in np.unique(y))


def one_run(ckpt: Path, root: str | None, resplits: int) -> dict[str, Any]:
    got = split_logits(ckpt, ("val", "test"), root=root)
    task = got.task
    yv, yt = got.labels["val"].reshape(-1), got.labels["test"].reshape(-1)
    scaling = fit_scaling(got.logits["val"], got.labels["val"], task, "temperature")
    before = calibration_scores(scores_from_logits(got.logits["test"], task), got.labels["test"], task)
    after = calibration_scores(scaling.probabilities(got.logits["test"], task), got.labels["test"], task)
    out: dict[str, Any] = {"dataset": got.config.dataset, "model": got.config.model, "seed": got.config.seed,
                           "temperature": scaling.to_dict(), "test_before": before, "test_after": after}  # fmt: skip
    pv, pt = scaling.probabilities(got.logits["val"], task), scaling.probabilities(got.logits["test"], task)
    raw = np.concatenate([scores_from_logits(got.logits["val"], task), scores_from_logits(got.logits["test"], task)])
    pooled_y = np.concatenate([yv, yt])
    rng = np.random.default_rng(0)
    splits = [rng.permutation(pooled_y.size) for _ in range(resplits)]
    for alpha in ALPHAS:
        for score in SCORES:
            sets = conformal_sets(pv, yv, pt, alpha, score).sets
            cov, size = coverage(sets, yt)
            covs, sizes = [], []
            for i, perm in enumerate(splits):
                cal, ev = perm[: yv.size], perm[yv.size :]
                s = conformal_sets(raw[cal], pooled_y[cal], raw[ev], alpha, score, seed=i).sets
                c, z = coverage(s, pooled_y[ev])
                covs.append(c)
                sizes.append(z)
            out[f"{score}@{alpha}"] = {
                "test_coverage": cov,
                "test_size": size,
                "resplit_coverage": float(np.mean(covs)),
                "resplit_size": float(np.mean(sizes)),
            }
        # Mondrian needs 1/ALPHA calibration images of every class: not always there (BreastMNIST's
        # val has 21 malignant images), then n/a, and re-splits without enough are left out.
        try:
            m = conformal_sets(pv, yv, pt, alpha, "lac", mondrian=True).sets
        except MedMNISTLabError:
            out[f"mondrian@{alpha}"] = None
            continue
        worst_resplit = []
        for i, perm in enumerate(splits):
            cal, ev = perm[: yv.size], perm[yv.size :]
            with contextlib.suppress(MedMNISTLabError):
                s = conformal_sets(raw[cal], pooled_y[cal], raw[ev], alpha, "lac", mondrian=True, seed=i).sets
                worst_resplit.append(worst_class(s, pooled_y[ev]))
        plain = conformal_sets(pv, yv, pt, alpha, "lac").sets
        out[f"mondrian@{alpha}"] = {
            "test_worst_class": worst_class(m, yt),
            "plain_test_worst_class": worst_class(plain, yt),
            "resplit_worst_class": float(np.mean(worst_resplit)) if worst_resplit else float("nan"),
            "resplits_used": len(worst_resplit),
        }
    return out


def pm(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="folders searched for best.pt")
    ap.add_argument("--resplits", type=int, default=200)
    ap.add_argument("--root", default=None, help="data folder (default: $MEDMNIST_ROOT)")
    ap.add_argument("--models", nargs="+", default=None, help="only these models")
    ap.add_argument("--out", type=Path, default=None, help="write every run's numbers as JSON")
    args = ap.parse_args()
    ckpts = sorted(p for f in args.folders for p in f.rglob("best.pt"))
    runs = []
    for ckpt in ckpts:
        r = one_run(ckpt, args.root, args.resplits)
        if args.models and r["model"] not in args.models:
            continue
        runs.append(r)
        print(f"{ckpt}: T={r['temperature']} ECE {r['test_before']['ece']:.3f} -> {r['test_after']['ece']:.3f}",
              flush=True)  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(runs, indent=1))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(r["dataset"], r["model"])].append(r)
    print("\n| dataset | model | runs | test ECE before → after | ECE (equal mass) before → after | "
          "NLL before → after | Brier before → after |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for (ds, model), rs in sorted(groups.items()):
        cells = [f"{pm([r['test_before'][k] for r in rs])} → {pm([r['test_after'][k] for r in rs])}"
                 for k in ("ece", "ece_mass", "nll", "brier")]  # fmt: skip
        print(f"| {ds} | {model} | {len(rs)} | " + " | ".join(cells) + " |")
    print(
        "\n| dataset | model | ALPHA | score | test coverage (val-calibrated) | test set size | "
        f"coverage, {args.resplits} re-splits | set size, re-splits |\n|---|---|---|---|---|---|---|---|"
    )
    for (ds, model), rs in sorted(groups.items()):
        for alpha in ALPHAS:
            for score in SCORES:
                k = f"{score}@{alpha}"
                vals = [
                    [r[k][f] for r in rs] for f in ("test_coverage", "test_size", "resplit_coverage", "resplit_size")
                ]
                print(f"| {ds} | {model} | {alpha} | {score} | " + " | ".join(pm(v) for v in vals) + " |")
    print("\n| dataset | model | ALPHA | worst class coverage, LAC | worst class, Mondrian LAC | "
          "worst class, Mondrian, re-splits |\n|---|---|---|---|---|---|")  # fmt: skip
    for (ds, model), rs in sorted(groups.items()):
        for alpha in ALPHAS:
            k = f"mondrian@{alpha}"
            if any(r[k] is None for r in rs):
                print(f"| {ds} | {model} | {alpha} | n/a: too few val images of a class for 1/ALPHA | | |")
                continue
            vals = [
                [r[k][f] for r in rs] for f in ("plain_test_worst_class", "test_worst_class", "resplit_worst_class")
            ]
            print(f"| {ds} | {model} | {alpha} | " + " | ".join(pm(v) for v in vals) + " |")


if __name__ == "__main__":
    main()
