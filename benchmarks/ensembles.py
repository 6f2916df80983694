"""Ensembles of a recipe's runs: disjoint k-run ensembles over seeds, each scored like one model.

For each dataset, the recipe is run on N seeds as one resumable study; the seeds, in the order
given, are cut into disjoint groups of k (0-2, 3-5, 6-8 for k=3), and each group's best.pt files
are scored together with `evaluate_ensemble` (the members' probabilities averaged, each with its
own test-time flips; official metrics), like `medmnist-lab evaluate A/best.pt B/best.pt C/best.pt`.
The table gives the single runs and the ensembles as mean ± std (the ensembles' ± is over the
groups, as a k-seed mean's is over seeds), and all N runs in one ensemble.

    MEDMNIST_ROOT=../shared/data/medmnist python benchmarks/ensembles.py --recipe fast \
        --datasets breastmnist retinamnist --seeds 0 1 2 3 4 5 6 7 8 -k 3 --workers 2 --threads 1 \
        -o bench_out/ensembles_fast

Nothing is selected: every run's checkpoint is chosen on validation AUC, the groups are fixed by
seed order, and the test split is only scored.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or imported by the tests
import _study
from _study import mean_std, pm, run_study, study_parser


def groups(seeds: list[int], k: int) -> list[list[int]]:
    """Disjoint groups of k seeds in the order given; a remainder smaller than k is no group."""
    if k < 2:
        raise SystemExit(f"-k {k}: an ensemble needs at least 2 members")
    if len(seeds) < k:
        raise SystemExit(f"{len(seeds)} seeds make no group of {k}; give at least {k} seeds")
    return [seeds[i : i + k] for i in range(0, len(seeds) - k + 1, k)]


def checkpoints(out: Path, recipe: str, dataset: str) -> dict[int, Path]:
    """seed -> best.pt of the finished runs of `recipe` on `dataset` in the study at `out`."""
    from medmnist_lab.studies.store import ResultStore

    with ResultStore(out, create=False) as store:
        rows = store.rows(["done"])
    found = {}
    for row in rows:
        if row.config.get("recipe") == recipe and row.config.get("dataset") == dataset and row.run_dir:
            path = Path(row.run_dir) / "best.pt"
            if path.is_file():
                found[int(row.config["seed"])] = path
    return found


def summarize(out: Path, recipe: str, datasets: list[str], seeds: list[int], k: int, split: str) -> list[dict]:
    from medmnist_lab.engine import evaluate, evaluate_ensemble

    table = []
    for dataset in datasets:
        found = checkpoints(out, recipe, dataset)
        missing = [s for s in seeds if s not in found]
        if missing:
            raise SystemExit(f"{dataset}: no finished run with best.pt for seeds {missing} in {out}")
        singles = [evaluate(found[s], split).result.metrics for s in seeds]
        entry: dict[str, Any] = {"dataset": dataset, "recipe": recipe, "split": split, "seeds": seeds, "k": k}
        entry["single"] = {m: mean_std([getattr(x, m) for x in singles]) for m in ("auc", "acc")}
        entry["ensembles"] = []
        for group in groups(seeds, k):
            metrics = evaluate_ensemble([found[s] for s in group], split).result.metrics
            entry["ensembles"].append({"seeds": group, "auc": metrics.auc, "acc": metrics.acc})
        entry["ensemble"] = {m: mean_std([e[m] for e in entry["ensembles"]]) for m in ("auc", "acc")}
        whole = evaluate_ensemble([found[s] for s in seeds], split).result.metrics
        entry["all"] = {"auc": whole.auc, "acc": whole.acc}
        table.append(entry)
    return table


def markdown(table: list[dict]) -> str:
    lines = [
        "| dataset | single runs (n) AUC | ACC | ensembles of k (groups) AUC | ACC | per group AUC / ACC | all |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for e in table:
        groups_text = "; ".join(f"{g['auc']:.3f} / {g['acc']:.3f}" for g in e["ensembles"])
        lines.append(
            f"| {e['dataset']} | {pm(e['single']['auc'])} ({len(e['seeds'])}) | {pm(e['single']['acc'])} | "
            f"{pm(e['ensemble']['auc'])} (k={e['k']}, {len(e['ensembles'])}) | {pm(e['ensemble']['acc'])} | "
            f"{groups_text} | {e['all']['auc']:.3f} / {e['all']['acc']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = study_parser(__doc__, list(range(9)))
    ap.add_argument("-k", type=int, default=3, help="members per ensemble (default 3)")
    ap.add_argument("--split", choices=["val", "test"], default="test")
    args = ap.parse_args()

    groups(args.seeds, args.k)  # a bad -k or too few seeds fail before any training
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        spec = args.out / "ensembles.yaml"
        cells = [{"dataset": d, "seed": s} for d in args.datasets for s in args.seeds]
        description = f"recipe {args.recipe} on seeds {args.seeds}, members of {args.k}-run ensembles"
        _study.write_spec(spec, f"ensembles-{args.recipe}", description, args.recipe, cells)
        run_study(spec, args.out, args.workers, args.threads, args.set)
    table = summarize(args.out, args.recipe, args.datasets, args.seeds, args.k, args.split)
    (args.out / "ensembles.json").write_text(json.dumps(table, indent=2))
    print(markdown(table))


if __name__ == "__main__":
    main()
