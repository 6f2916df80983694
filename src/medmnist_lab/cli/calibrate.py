"""`medmnist-lab calibrate CHECKPOINT`: calibrated probabilities and conformal prediction sets,
fitted on the validation split (docs/trust.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medmnist_lab.cli.common import HelpFormatter, add_overwrite, add_root, number

METHODS: tuple[str, ...] = ("temperature", "vector")  # metrics.reliability.METHODS (tested equal)
SCORES: tuple[str, ...] = ("lac", "aps", "raps")  # metrics.conformal.SCORES (tested equal)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("ece", "ECE"),
    ("ece_mass", "ECE-mass"),
    ("classwise_ece", "cw-ECE"),
    ("nll", "NLL"),
    ("brier", "Brier"),
)


def _parameters(record: dict[str, Any]) -> str:
    params = record["parameters"]
    if params["method"] == "temperature":
        temps = params["temperature"]
        return "T = " + ", ".join(f"{t:.3f}" for t in temps) + (" (one per label)" if len(temps) > 1 else "")
    w = ", ".join(f"{v:.3f}" for v in params["weight"])
    b = ", ".join(f"{v:.3f}" for v in params["bias"])
    return f"weight [{w}], bias [{b}]"


def show(record: dict[str, Any]) -> None:
    print(
        f"{record['dataset']}_{record['size']} {record['checkpoint']} (config {record['config_hash']}): "
        f"{record['method']} scaling fitted on {record['fitted_on']} ({record['n_fitted']} images): "
        + _parameters(record)
    )
    print(f"  {'split':<6}{'':<8}" + "".join(f"{title:>10}" for _, title in COLUMNS))
    for split, rows in record["scores"].items():
        for when in ("before", "after"):
            values = "".join(f"{rows[when][key]:>10.4f}" for key, _ in COLUMNS)
            print(f"  {split if when == 'before' else '':<6}{when:<8}{values}  ({rows['n']} images)")
    conf = record["conformal"]
    if conf is not None:
        test = conf["test"]
        kind = f"{conf['score'].upper()}{', Mondrian' if conf['mondrian'] else ''}"
        print(
            f"conformal sets ({kind}, ALPHA {conf['alpha']:g}) calibrated on {conf['fitted_on']} "
            f"({conf['calibration_images']} images), on test ({test['n']} images):"
        )
        print(
            f"  coverage {test['coverage']:.3f} (target {test['target']:.3f}; chance alone stays above "
            f"{test['tolerance']:.3f} 95% of the time)"
        )
        per_class = ", ".join(
            f"{name} {row['coverage']:.3f} (n={row['n']})" if row["n"] else f"{name} - (n=0)"
            for name, row in test["per_class"].items()
        )
        print(f"  per class: {per_class}")
        print(
            f"  mean set size {test['mean_set_size']:.3f}; singletons {100 * test['singleton_share']:.1f}%; "
            f"empty {100 * test['empty_share']:.1f}%"
        )
    if record["warnings"]:
        print("NOT VALIDATED: the calibration does not hold up beyond the split it was fitted on:")
        for line in record["warnings"]:
            print(f"  warning: {line}")
    else:
        print("ok: test NLL and ECE improved" + (", test coverage within its tolerance" if conf else ""))


def cmd_calibrate(args: argparse.Namespace) -> int:
    from medmnist_lab.cli.evaluate import check_not_exported
    from medmnist_lab.data.paths import dataset_files
    from medmnist_lab.deploy.calibrate import calibrate, default_path

    check_not_exported(args.checkpoint)
    out = args.output if args.output is not None else default_path(args.checkpoint)
    outcome = calibrate(
        args.checkpoint,
        args.method,
        conformal=args.conformal,
        score=args.score,
        mondrian=args.mondrian,
        root=args.root,
        device=args.device,
        output=out,
        overwrite=args.overwrite,
        seed=args.seed,
        protected=dataset_files(args.root),
    )
    show(outcome.record)
    print(f"saved: {outcome.path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="calibrate a checkpoint's probabilities (temperature/vector scaling, conformal sets) on val",
        description="Fit temperature or vector scaling of a checkpoint's logits on the validation split only,\n"
        "print ECE (equal-width and equal-mass bins), class-wise ECE, NLL and Brier score on val and test,\n"
        "before and after, and write calibration.json beside the checkpoint (method, parameters, the split\n"
        "it was fitted on, the checkpoint's config hash and SHA-256).\n\n"
        "With --conformal ALPHA, also split-conformal prediction sets (LAC, APS or RAPS; --mondrian: per\n"
        "class), calibrated on val and reported on test: coverage overall and per class, mean set size,\n"
        "singleton and empty shares. The guarantees need val and test to be exchangeable: a test coverage\n"
        "below 1-ALPHA by more than chance allows, or a scaling that makes test NLL/ECE worse, is printed\n"
        "as a warning (NOT VALIDATED) instead of a success. Multi-label tasks get one temperature per\n"
        "label; ordinal tasks are treated as multi-class. See docs/trust.md.",
        epilog="examples:\n"
        "  medmnist-lab calibrate runs/breastmnist_28/resnet18/NAME/best.pt\n"
        "  medmnist-lab calibrate best.pt --method vector --overwrite\n"
        "  medmnist-lab calibrate best.pt --conformal 0.1 --score aps --mondrian -o aps_calibration.json",
        formatter_class=HelpFormatter,
    )
    p.add_argument("checkpoint", type=Path, help="best.pt or last.pt of a run (`medmnist-lab train`)")
    p.add_argument(
        "--method",
        choices=METHODS,
        default="temperature",
        help="temperature: logits / T (one T, one per label for multi-label; keeps the predictions); "
        "vector: a weight and bias per class (can change predictions)",
    )
    p.add_argument(
        "--conformal",
        type=number(0, 1, lo_open=True, hi_open=True),
        default=None,
        metavar="ALPHA",
        help="also fit split-conformal prediction sets that miss the true class with probability ALPHA, "
        "e.g. 0.1 for 90%% coverage; needs at least 1/ALPHA val images (single-label tasks only)",
    )
    p.add_argument(
        "--score",
        choices=SCORES,
        default="lac",
        help="conformal score: lac (smallest sets), aps (adaptive), raps (adaptive, regularised)",
    )
    p.add_argument(
        "--mondrian",
        action="store_true",
        help="calibrate the conformal sets per class (coverage for every class; needs 1/ALPHA val images of each)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the randomised APS/RAPS sets")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or mps (default: the run's)")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="where to write the record (default: calibration.json beside it)",
    )
    add_overwrite(p)
    add_root(p)
    p.set_defaults(func=cmd_calibrate)
