"""Ablation of a named recipe: what each of its techniques contributes.

For each dataset, the full recipe and, for each technique the recipe lists (`Recipe.techniques` in
engine/config.py), the recipe with that one technique taken out and everything else unchanged,
N seeds each. The cells run as one study (`medmnist-lab study run`, so a killed ablation resumes
where it stopped); the table gives test AUC and ACC as mean ± std over the seeds, the paired
difference to the full recipe (same seed), and the mean wall time per run (training and final
scoring, from the run summaries; comparable only between cells run under the same load).

    MEDMNIST_ROOT=../shared/data/medmnist python benchmarks/ablation.py --recipe fast \
        --datasets breastmnist retinamnist --seeds 0 1 2 --workers 2 --threads 1 -o bench_out/ablation_fast

Selection is on validation AUC inside every run, as always; the test split is only reported.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or imported by the tests
import _study
from _study import mean_std, pm, run_study, study_parser

FULL = "full recipe"


def variants(recipe: str) -> dict[str, dict[str, Any]]:
    """Variant name -> overrides over the recipe: {} for the full recipe, then one per technique."""
    from medmnist_lab.engine.config import RECIPES

    techniques = RECIPES.get(recipe).techniques
    if not techniques:
        raise SystemExit(f"recipe {recipe!r} lists no techniques to remove (Recipe.techniques)")
    return {FULL: {}, **{f"without {name}": removal for name, removal in techniques.items()}}


def effective(dataset: str, recipe: str) -> dict[str, dict[str, Any]]:
    """The variants that differ from the full recipe on this dataset: a removal that resolves to the
    full recipe's own values (a dataset rule already chose them) is no variant there."""
    from medmnist_lab.engine import resolve_config

    full = resolve_config(dataset, recipe)
    return {
        name: removal
        for name, removal in variants(recipe).items()
        if name == FULL or resolve_config(dataset, recipe, **removal) != full
    }


def write_spec(recipe: str, datasets: list[str], seeds: list[int], path: Path) -> None:
    cells = [
        {"dataset": d, "seed": s, **removal}
        for d in datasets
        for removal in effective(d, recipe).values()
        for s in seeds
    ]
    description = f"recipe {recipe} with one technique removed at a time (benchmarks/ablation.py)"
    _study.write_spec(path, f"ablation-{recipe}", description, recipe, cells)


def signatures(dataset: str, recipe: str) -> list[tuple[str, dict[str, Any]]]:
    """(variant, the canonical values of every field a removal touches) for one dataset: a finished
    cell is the variant whose values it carries. Resolved once, not once per cell."""
    from medmnist_lab.engine import resolve_config

    keys = {k for removal in variants(recipe).values() for k in removal}
    out = []
    for name, removal in effective(dataset, recipe).items():
        config = resolve_config(dataset, recipe, **removal).to_dict()
        out.append((name, {k: config[k] for k in keys}))
    return out


def summarize(out: Path, recipe: str) -> list[dict[str, Any]]:
    from medmnist_lab.studies.store import ResultStore

    with ResultStore(out, create=False) as store:
        rows = store.rows(["done"])
    by: dict[tuple[str, str], dict[int, Any]] = {}
    known: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for row in rows:
        if row.config.get("recipe") != recipe:
            continue
        dataset = row.config["dataset"]
        if dataset not in known:
            known[dataset] = signatures(dataset, recipe)
        name = next((n for n, sig in known[dataset] if all(row.config.get(k) == v for k, v in sig.items())), None)
        if name is not None:
            by.setdefault((dataset, name), {})[row.config["seed"]] = row
    table = []
    for (dataset, name), seeds in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1] != FULL, kv[0][1])):
        full = by.get((dataset, FULL), {})
        entry: dict[str, Any] = {"dataset": dataset, "variant": name, "seeds": sorted(seeds)}
        for metric in ("auc", "acc"):
            vals = [seeds[s].value("test", metric) for s in sorted(seeds)]
            entry[metric] = mean_std(vals)
            entry[f"{metric}_per_seed"] = vals
            common = [s for s in sorted(seeds) if s in full]
            paired = [seeds[s].value("test", metric) - full[s].value("test", metric) for s in common]
            entry[f"delta_{metric}"] = mean_std(paired) if paired and name != FULL else None
        entry["seconds"] = statistics.fmean(r.seconds for r in seeds.values() if r.seconds is not None)
        table.append(entry)
    return table


def markdown(table: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | variant | seeds | test AUC | test ACC | Δ AUC vs full | Δ ACC vs full | s per run |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]

    for e in table:
        lines.append(
            f"| {e['dataset']} | {e['variant']} | {len(e['seeds'])} | {pm(e['auc'])} | {pm(e['acc'])} | "
            f"{pm(e['delta_auc'], True)} | {pm(e['delta_acc'], True)} | {e['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    args = study_parser(__doc__, [0, 1, 2]).parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        spec = args.out / "ablation.yaml"
        write_spec(args.recipe, args.datasets, args.seeds, spec)
        run_study(spec, args.out, args.workers, args.threads, args.set)
    table = summarize(args.out, args.recipe)
    (args.out / "ablation.json").write_text(json.dumps(table, indent=2))
    print(markdown(table))


if __name__ == "__main__":
    main()
