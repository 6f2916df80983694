"""`medmnist-lab results import|table`: a study's results store, as tables with CIs and tests."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from medmnist_lab.cli.common import add_command, add_group

# studies.table_format.FORMATS, restated: that module imports scipy.stats (1-3 s at every start-up,
# --help included); tests/test_same_numbers.py asserts the two are equal.
FORMATS: tuple[str, ...] = ("md", "csv", "latex", "json")


def _csv_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _baseline(text: str) -> tuple[str, Any]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"'{text}' is not FIELD=VALUE, e.g. model=resnet18")
    return key.strip(), yaml.safe_load(value) if value.strip() else None


def _holds_runs(folder: Path) -> bool:
    """Whether `folder` is a finished run folder or holds one (summary.json at or below it)."""
    return (folder / "summary.json").is_file() or next(folder.rglob("summary.json"), None) is not None


def cmd_import(args: argparse.Namespace) -> int:
    from medmnist_lab.errors import MedMNISTLabError
    from medmnist_lab.studies.importer import find_runs, import_runs, outside_the_spec
    from medmnist_lab.studies.store import ResultStore

    runs = find_runs(args.runs)
    if not runs:  # before a store is created for nothing
        raise MedMNISTLabError(
            f"no finished run folders (holding summary.json) in {', '.join(map(str, args.runs))}; nothing to import"
        )
    with ResultStore(args.output) as store:
        report = import_runs(runs, store, args.study)
    for folder, why in report.skipped:
        print(f"skipped {folder}: {why}", file=sys.stderr)
    print(f"imported {len(report.imported)} run(s) into {store.path}")
    extra = outside_the_spec(args.output, report.imported)
    if extra:
        print(
            f"note: {len(extra)} of the imported runs are not cells of the study's spec ({args.output / 'specs'}): "
            "they enter its tables beside its own runs; import them into another folder to keep them apart",
            file=sys.stderr,
        )
    return 1 if report.skipped and not report.imported else 0


def cmd_table(args: argparse.Namespace) -> int:
    from medmnist_lab.studies.search import chosen_rows
    from medmnist_lab.studies.store import ResultStore, db_path
    from medmnist_lab.studies.table_format import build_table

    if args.store.is_dir() and not db_path(args.store).exists() and _holds_runs(args.store):
        from medmnist_lab.errors import MedMNISTLabError

        what = "a run folder" if (args.store / "summary.json").is_file() else "a folder of run folders"
        raise MedMNISTLabError(
            f"{args.store} is {what}, not a results store (no results.db); import it first: "
            f"`medmnist-lab results import {args.store} -o STUDY_DIR`, then `medmnist-lab results table STUDY_DIR`"
        )
    with ResultStore(args.store, create=False) as store:
        rows = chosen_rows(store)
    text = build_table(
        rows,
        group_by=args.group_by,
        metrics=args.metrics,
        split=args.split,
        baseline=args.baseline,
        reference=args.reference,
        fmt=args.format,
    )
    print(text)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from medmnist_lab.metrics.references import REFERENCES

    _, cmds = add_group(sub, "results", "results stores: import run folders, print tables with CIs and tests")
    p = add_command(
        cmds,
        "import",
        "ingest finished run folders into a results store",
        epilog=(
            "examples:\n"
            "  medmnist-lab results import runs/ -o studies/my-runs\n"
            "  medmnist-lab results import bench_out/official -o studies/official --study official\n"
            "  medmnist-lab results table studies/my-runs"
        ),
    )
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run folders, or folders holding them")
    p.add_argument("-o", "--output", type=Path, required=True, help="study folder or .db file to import into")
    p.add_argument("--study", default="imported", help="study name recorded with the runs")
    p.set_defaults(func=cmd_import)

    p = add_command(
        cmds,
        "table",
        "per-group mean ± std and 95%% CI; paired differences and DeLong tests against a baseline",
        description="Per-group mean ± std and 95% CI; paired differences and DeLong tests against a baseline.",
        epilog=(
            "examples:\n"
            "  medmnist-lab results table studies/resnet18-vs-50 --group-by dataset,model --baseline model=resnet18\n"
            "  medmnist-lab results table studies/augment --baseline augment=none --reference official --format latex"
        ),
    )
    p.add_argument("store", type=Path, metavar="STUDY_DIR|DB", help="a study folder or its results.db")
    p.add_argument(
        "--group-by", type=_csv_list, default=None, metavar="FIELDS", help="config fields (default: those that vary)"
    )
    p.add_argument(
        "--metrics",
        type=_csv_list,
        default=None,
        metavar="auc,acc",
        help="metrics to show (default: auc,acc; with a robustness study's trust numbers also ece,ece_calibrated,"
        "coverage,set_size,corrupted_be; others: nll, nll_calibrated, brier, clean_be, corrupted_be_s1..s5, ...)",
    )
    p.add_argument("--split", choices=("test", "val", "train"), default="test", help="split the numbers are from")
    p.add_argument(
        "--baseline", type=_baseline, default=None, metavar="FIELD=VALUE", help="compare every group with this one"
    )
    p.add_argument("--reference", choices=REFERENCES.names(), default=None, help="published numbers to show beside")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format")
    p.set_defaults(func=cmd_table)
