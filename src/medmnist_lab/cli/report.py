"""`medmnist-lab report PATH... --out-dir DIR`: a browsable, offline HTML report of runs and studies."""

from __future__ import annotations

import argparse
from pathlib import Path

from medmnist_lab.cli.common import HelpFormatter, add_out_dir, add_root

EPILOG = """\
PATH: run folders, study folders (holding results.db), results databases (.db), or folders
holding any of these (searched recursively). A study's runs get pages too, wherever they are.

pages:
  index.html         every run and study, sortable tables (click a header)
  runs/NAME.html     config; learning curves; ROC per class; confusion matrix; reliability
                     diagram with ECE; precision/recall per class; misclassified test images;
                     the dataset's montage
  studies/NAME.html  per dataset: each method's AUC/ACC with 95% CIs and the official, seed and
                     MedMNIST+ numbers; paired differences and their tests; resolution curves,
                     models side by side, augmentation previews, GAN samples with their quality
Figures are PNG (shown) and SVG (linked). Everything is a local file: the report opens offline
from file://. A run with missing or damaged files gets a page that says what is missing.

examples:
  medmnist-lab report runs/ --out-dir report --open
  medmnist-lab report studies/resnet18-vs-50 studies/resolution --out-dir report
"""


def cmd_report(args: argparse.Namespace) -> int:
    from medmnist_lab.outputs import check_output_dir
    from medmnist_lab.report.site import build_report

    out = check_output_dir(args.out_dir, what="--out-dir")
    result = build_report(args.paths, out, root=args.root, progress=not args.no_progress)
    damaged = sum(bool(p.problems) for p in result.runs) + sum(bool(p.problems) for p in result.studies)
    print(
        f"wrote {result.index}: {len(result.runs)} run page(s), {len(result.studies)} study page(s) "
        f"in {result.seconds:.1f}s" + (f"; {damaged} page(s) list missing or damaged files" if damaged else "")
    )
    if args.open:
        import webbrowser

        webbrowser.open(result.index.resolve().as_uri())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="build a browsable HTML report (plots, tables, CIs) of runs and studies",
        description="Build a static HTML report of run folders and studies that works offline.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="run folders, study folders or .db files")
    add_out_dir(p, "folder for the site (created; pages refreshed)", required=True)
    p.add_argument("--open", action="store_true", help="open index.html in the default browser when done")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_root(p)
    p.set_defaults(func=cmd_report)
