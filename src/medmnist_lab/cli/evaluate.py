"""`medmnist-lab evaluate CHECKPOINT [CHECKPOINT ...]`: score a saved model, or the averaged
probabilities of several (an ensemble), on a split."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from medmnist_lab.cli.common import HelpFormatter, add_overwrite, add_precision, add_root, output_path
from medmnist_lab.data.registry import SPLITS


def check_not_exported(checkpoint: Path) -> None:
    """An exported model given to `evaluate`: say what it is and what runs it."""
    from medmnist_lab.engine.checkpoint import exported_format
    from medmnist_lab.errors import CheckpointError

    fmt = exported_format(checkpoint) if checkpoint.is_file() else None
    if fmt == "ONNX":
        raise CheckpointError(
            f"{checkpoint} is an exported ONNX model, not a checkpoint: evaluate scores a run's best.pt or "
            f"last.pt; to run the exported model on images: `medmnist-lab predict {checkpoint} IMAGES`"
        )
    if fmt is not None:
        raise CheckpointError(
            f"{checkpoint} is an exported {fmt} model, not a checkpoint: evaluate scores the best.pt or last.pt "
            "it was exported from (`medmnist-lab predict` runs those, and .onnx exports, on image files)"
        )


def scoring_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options every scoring path takes (one checkpoint, an ensemble, under corruptions), read once."""
    return {
        "root": args.root,
        "device": args.device,
        "precision": args.precision,
        "tta": args.tta,
        "use_calibration": not args.uncalibrated,
    }


def cmd_evaluate(args: argparse.Namespace) -> int:
    from medmnist_lab.errors import MedMNISTLabError

    for checkpoint in args.checkpoint:
        check_not_exported(checkpoint)
    if args.corruptions is not None:
        return cmd_corruptions(args)
    for flag, value in (("--severities", args.severities), ("--baseline", args.baseline), ("--seed", args.seed)):
        if value is not None:
            raise MedMNISTLabError(f"{flag} goes with --corruptions (scoring under MedMNIST-C corruptions)")
    if len(args.checkpoint) > 1:
        return cmd_ensemble(args)
    if args.output is not None:
        raise MedMNISTLabError(
            "-o/--output is for an ensemble (several checkpoints); one checkpoint's record is written beside it"
        )
    from medmnist_lab.data.paths import dataset_files
    from medmnist_lab.engine.scoring import evaluate, save_eval
    from medmnist_lab.outputs import check_output_file

    checkpoint = args.checkpoint[0]
    # The record beside the checkpoint is refreshed; its folder must take it before the scoring.
    if checkpoint.is_file():  # (a missing checkpoint gets its own message from evaluate)
        check_output_file(
            checkpoint.with_name(f"eval_{checkpoint.stem}_{args.split}.json"), overwrite=True, protected=dataset_files()
        )
    result = evaluate(
        checkpoint,
        args.split,
        dataset=args.dataset,
        size=args.size,
        **scoring_options(args),
    )
    out = save_eval(result)
    say_calibration(args, result)
    show(args, result, f"{result.config.dataset}_{result.config.size} {args.split}")
    if args.predictions:
        info_run = checkpoint.parent.name
        path = result.result.write_predictions(
            checkpoint.parent, result.config.dataset, result.config.size, args.split, info_run
        )
        print(f"predictions: {path}")
    print(f"saved: {out}")
    return 0


def cmd_corruptions(args: argparse.Namespace) -> int:
    """`evaluate CHECKPOINT --corruptions ...`: the split under MedMNIST-C corruptions."""
    from medmnist_lab.data.paths import dataset_files
    from medmnist_lab.engine.robustness import evaluate_corruptions, robustness_path, save_robustness
    from medmnist_lab.errors import MedMNISTLabError
    from medmnist_lab.outputs import check_output_file

    if len(args.checkpoint) > 1:
        raise MedMNISTLabError("--corruptions scores one checkpoint; give a second one as --baseline")
    for flag, value in (("-o/--output", args.output), ("--predictions", args.predictions or None)):
        if value is not None:
            raise MedMNISTLabError(
                f"{flag} is not used with --corruptions; the record is written beside the checkpoint"
            )
    if args.baseline is not None:
        check_not_exported(args.baseline)
    checkpoint = args.checkpoint[0]
    if checkpoint.is_file():  # checked before the scoring, which takes a while
        check_output_file(
            robustness_path(checkpoint, args.split),
            overwrite=args.overwrite,
            protected=dataset_files(),
            what="robustness record",
        )
    result = evaluate_corruptions(
        checkpoint,
        args.corruptions,
        args.severities or "1-5",
        split=args.split,
        seed=args.seed or 0,
        baseline=args.baseline,
        progress=not args.json,
        **scoring_options(args),
    )
    out = save_robustness(result)
    for m in (result.model, result.baseline):
        if m is not None:
            print(m.calibration_line, file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(robustness_table(result))
    print(f"saved: {out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def robustness_table(result: Any) -> str:
    """Per cell AUC, ACC, balanced error (and ECE when calibrated); a mean row per corruption, with
    the relative balanced errors when there is a baseline."""
    model = result.model
    calibrated = model.calibrated
    conformal = "coverage" in model.clean  # a conformal calibration: its sets under each corruption
    head = f"{'corruption':<18} {'severity':>8} {'AUC':>7} {'ACC':>7} {'BE':>7}" + (
        f" {'ECE':>7}" if calibrated else ""
    )
    head += f" {'cover':>7} {'size':>7}" if conformal else ""
    rel = result.relative()
    if rel is not None:
        head += f" {'rBE':>7} {'nBE':>7}"

    def row(name: str, sev: str, m: dict[str, float]) -> str:
        line = f"{name:<18} {sev:>8} {m['auc']:7.4f} {m['acc']:7.4f} {m['balanced_error']:7.4f}"
        line += f" {m['ece']:7.4f}" if calibrated else ""
        return line + (f" {m['coverage']:7.4f} {m['set_size']:7.3f}" if conformal else "")

    def fmt(v: float | None) -> str:
        return f"{v:7.4f}" if v is not None else f"{'n/a':>7}"

    title = f"{result.dataset}_{result.size} {result.split} under MedMNIST-C corruptions (seed {result.seed})"
    lines = [title, head, row("clean", "-", model.clean)]
    means = model.means()
    for name in result.corruptions:
        lines += [row(name, str(c["severity"]), c) for c in model.cells if c["corruption"] == name]
        mean = row(name, "mean", means[name])
        if rel is not None:
            mean += f" {fmt(rel[name]['relative_balanced_error'])} {fmt(rel[name]['normalized_balanced_error'])}"
        lines.append(mean)
    s = result.summary()
    tail = (
        f"mean balanced error over corruptions {s['mean_balanced_error']:.4f} (clean {s['clean_balanced_error']:.4f})"
    )
    if rel is not None:
        tail += (
            f"; against {result.baseline.checkpoint}: rBE {fmt(s['relative_balanced_error']).strip()}, "
            f"nBE {fmt(s['normalized_balanced_error']).strip()}"
        )
    return "\n".join([*lines, tail])


def say_calibration(args: argparse.Namespace, result: Any) -> None:
    """One line on the calibration used (stderr with --json, which keeps stdout JSON)."""
    from medmnist_lab.engine.calibration import describe

    line = describe(result.calibration, result.checkpoint, args.uncalibrated)
    print(line, file=sys.stderr if args.json else sys.stdout)


def show(args: argparse.Namespace, result: Any, title: str) -> None:
    """Print a result (an EvalResult or EnsembleResult): JSON, or AUC/ACC and the extras."""
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    m = result.result.metrics
    print(f"{title}: AUC {m.auc:.4f}  ACC {m.acc:.4f}")
    extras = result.result.extras
    for key in ("balanced_accuracy", "macro_f1", "mcc", "specificity", "ece"):
        if key in extras:
            print(f"  {key}: {extras[key]:.4f}")
    selective = extras.get("selective")
    if selective is not None:
        at = selective["acc_at_coverage"]
        print(
            f"  selective: AURC {selective['aurc']:.4f}; accuracy at 90% coverage {at['0.9']:.4f}, "
            f"at 80% coverage {at['0.8']:.4f} (the most confident predictions kept)"
        )


def cmd_ensemble(args: argparse.Namespace) -> int:
    from medmnist_lab.engine.scoring import evaluate_ensemble
    from medmnist_lab.errors import MedMNISTLabError
    from medmnist_lab.records import write_json

    if args.predictions and args.output is None:
        raise MedMNISTLabError(
            "--predictions with several checkpoints needs -o/--output: the prediction CSV is written beside that file"
        )
    out = output_path(args.output, args, (".json",), "ensemble record") if args.output is not None else None
    result = evaluate_ensemble(
        args.checkpoint,
        args.split,
        dataset=args.dataset,
        size=args.size,
        **scoring_options(args),
    )
    for m in result.members:
        say_calibration(args, m)
    if not args.json:
        for m in result.members:
            print(f"  member {m.checkpoint}: AUC {m.result.metrics.auc:.4f}  ACC {m.result.metrics.acc:.4f}")
    cfg = result.config
    show(args, result, f"ensemble of {len(result.members)}, {cfg.dataset}_{cfg.size} {args.split}")
    if out is not None:
        write_json(result.to_dict(), out)
        if args.predictions:
            path = result.result.write_predictions(out.parent, cfg.dataset, cfg.size, args.split, out.stem)
            print(f"predictions: {path}")
        print(f"saved: {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a checkpoint (or an ensemble of several) on a split with the official metrics",
        description="Score a checkpoint (best.pt or last.pt of a run) on train, val or test;\n"
        "prints AUC/ACC and extras (balanced accuracy, macro-F1, MCC, specificity, ECE) and selective\n"
        "prediction (the risk-coverage curve's area AURC, accuracy at 90% and 80% coverage), and saves\n"
        "eval_{checkpoint}_{split}.json beside it.\n\n"
        "With several checkpoints of one dataset and size (e.g. the same recipe, different seeds), scores\n"
        "their ensemble: the members' probabilities averaged (each with its own test-time flips), then the\n"
        "official metrics; prints each member and the ensemble, and writes a record only with -o.\n\n"
        "A calibration.json beside a checkpoint (`medmnist-lab calibrate`) rescales its logits before\n"
        "scoring (one line says which; the record's 'calibration' says so too); --uncalibrated switches it off.",
        epilog="examples:\n"
        "  medmnist-lab evaluate runs/breastmnist_28/resnet18/NAME/best.pt --split test\n"
        "  medmnist-lab evaluate runs/breastmnist_28/resnet18/*/best.pt -o ensemble_test.json\n"
        "  medmnist-lab evaluate best.pt --uncalibrated     # ignore calibration.json beside it\n"
        "  medmnist-lab evaluate best.pt --corruptions all --severities 1-5 --baseline ../OTHER/best.pt",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "checkpoint", type=Path, nargs="+", help="a .pt written by `medmnist-lab train`; several: their ensemble"
    )
    p.add_argument("--split", choices=SPLITS, default="test", help="split to score")
    p.add_argument("--dataset", default=None, help="refuse unless the checkpoint was trained on this dataset")
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help="refuse unless the checkpoint was trained at this size",
    )
    p.add_argument("--device", default=None, help="auto, cpu, cuda or mps (default: the run's)")
    p.add_argument(
        "--tta",
        action="store_true",
        help="score each image with its horizontal mirror too, as `predict --tta` (runs trained with --tta always are)",
    )
    p.add_argument(
        "--predictions",
        action="store_true",
        help="also write the official prediction CSV (beside the checkpoint; for an ensemble, beside -o)",
    )
    p.add_argument("--json", action="store_true", help="print all metrics as JSON")
    p.add_argument(
        "--uncalibrated",
        action="store_true",
        help="score the raw model even when calibration.json (from `medmnist-lab calibrate`) is beside it",
    )
    p.add_argument(
        "--corruptions",
        default=None,
        metavar="all|NAME,...",
        help="score under MedMNIST-C corruptions of the checkpoint's dataset (docs/robustness.md): 'all' or names; "
        "writes robustness_{checkpoint}_{split}.json beside it",
    )
    p.add_argument(
        "--severities",
        default=None,
        metavar="1-5|1,3,5",
        help="with --corruptions: severities to score, in 1..5 (default: 1-5)",
    )
    p.add_argument(
        "--baseline",
        type=Path,
        default=None,
        metavar="CKPT",
        help="with --corruptions: a checkpoint of the same dataset and size scored on the same corrupted "
        "images; adds the paper's relative balanced error (rBE) and normalized balanced error (BE)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="with --corruptions: seed of the corrupted images (default 0; each cell's seed also depends "
        "on its corruption and severity)",
    )
    add_precision(p, training=False)
    p.add_argument(
        "-o", "--output", type=Path, default=None, help="ensemble only: write its record (JSON) to this file"
    )
    add_overwrite(p)
    add_root(p)
    p.set_defaults(func=cmd_evaluate)
