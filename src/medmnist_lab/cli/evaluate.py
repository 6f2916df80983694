"""`medmnist-lab evaluate CHECKPOINT`: score a saved model on a split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medmnist_lab.cli.common import add_root
from medmnist_lab.cli.main import HelpFormatter
from medmnist_lab.data.registry import SPLITS


def cmd_evaluate(args: argparse.Namespace) -> int:
    from medmnist_lab.engine.api import evaluate, save_eval
    from medmnist_lab.outputs import check_output_file

    # The record beside the checkpoint is refreshed; its folder must take it before the scoring.
    if args.checkpoint.is_file():  # (a missing checkpoint gets its own message from evaluate)
        check_output_file(args.checkpoint.with_name(f"eval_{args.checkpoint.stem}_{args.split}.json"), overwrite=True)
    result = evaluate(
        args.checkpoint,
        args.split,
        root=args.root,
        device=args.device,
        dataset=args.dataset,
        size=args.size,
    )
    out = save_eval(result)
    m = result.result.metrics
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"{result.config.dataset}_{result.config.size} {args.split}: AUC {m.auc:.4f}  ACC {m.acc:.4f}")
        extras = result.result.extras
        for key in ("balanced_accuracy", "macro_f1", "ece"):
            if key in extras:
                print(f"  {key}: {extras[key]:.4f}")
    if args.predictions:
        info_run = args.checkpoint.parent.name
        path = result.result.write_predictions(
            args.checkpoint.parent, result.config.dataset, result.config.size, args.split, info_run
        )
        print(f"predictions: {path}")
    print(f"saved: {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a checkpoint on a split with the official metrics (and extras)",
        description="Score a checkpoint (best.pt or last.pt of a run) on train, val or test;\n"
        "prints AUC/ACC and extras and saves eval_{checkpoint}_{split}.json beside it.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("checkpoint", type=Path, help="path to a .pt written by `medmnist-lab train`")
    p.add_argument("--split", choices=SPLITS, default="test")
    p.add_argument("--dataset", default=None, help="refuse unless the checkpoint was trained on this dataset")
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help="refuse unless the checkpoint was trained at this size",
    )
    p.add_argument("--device", default=None, help="auto, cpu, cuda or mps (default: the run's)")
    p.add_argument("--predictions", action="store_true", help="also write the official prediction CSV")
    p.add_argument("--json", action="store_true", help="print all metrics as JSON")
    add_root(p)
    p.set_defaults(func=cmd_evaluate)
