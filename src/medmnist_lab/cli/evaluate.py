"""`medmnist-lab evaluate CHECKPOINT [CHECKPOINT ...]`: score a saved model, or the averaged
probabilities of several (an ensemble), on a split."""

from __future__ import annotations

import argparse
import json
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from medmnist_lab.errors import MedMNISTLabError

    for checkpoint in args.checkpoint:
        check_not_exported(checkpoint)
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
        root=args.root,
        device=args.device,
        dataset=args.dataset,
        size=args.size,
        precision=args.precision,
        tta=args.tta,
        use_calibration=not args.uncalibrated,
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


def say_calibration(args: argparse.Namespace, result: Any) -> None:
    """One line on the calibration used (stderr with --json, which keeps stdout JSON)."""
    import sys

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
        root=args.root,
        device=args.device,
        dataset=args.dataset,
        size=args.size,
        precision=args.precision,
        tta=args.tta,
        use_calibration=not args.uncalibrated,
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
        "  medmnist-lab evaluate best.pt --uncalibrated     # ignore calibration.json beside it",
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
    add_precision(p, training=False)
    p.add_argument(
        "-o", "--output", type=Path, default=None, help="ensemble only: write its record (JSON) to this file"
    )
    add_overwrite(p)
    add_root(p)
    p.set_defaults(func=cmd_evaluate)
