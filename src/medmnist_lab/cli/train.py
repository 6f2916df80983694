"""`medmnist-lab train DATASET ...`: train and evaluate a classifier in one command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from medmnist_lab.cli.common import (
    KEEP_CHOICES,
    MODEL_NAMES,
    HelpFormatter,
    add_precision,
    add_root,
    deprecation_note,
    given,
    nonnegative_int,
    number,
    positive_int,
    seed_int,
)
from medmnist_lab.data.registry import SIZES

if TYPE_CHECKING:
    from medmnist_lab.engine.config import RunConfig


def _tristate(text: str) -> bool | None:
    table = {"on": True, "off": False, "auto": None}
    if text not in table:
        raise argparse.ArgumentTypeError(f"'{text}' is not one of: on, off, auto")
    return table[text]


def _deprecated_amp(value: bool | None) -> bool | None:
    if value is not None:
        deprecation_note("--amp", "--precision (off = fp32, on = bf16 or fp16)")
    return value


def _fraction_list(text: str) -> list[float]:
    fraction = number(0, 1, lo_open=True, hi_open=True)
    try:
        return [fraction(v) for v in text.split(",") if v]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a comma-separated list of fractions of the epochs, e.g. 0.5,0.75 ({exc})"
        ) from None


def _epilog() -> str:
    from medmnist_lab.engine.config import RECIPES

    recipes = "\n".join(f"  {n:<12} {RECIPES.get(n).description}" for n in RECIPES)
    return (
        f"recipes (what each technique contributes: docs/recipes.md):\n{recipes}\n\n"
        f"models: {', '.join(MODEL_NAMES)} (and timm:<name> with the timm extra)\n\n"
        "examples:\n"
        "  medmnist-lab train breastmnist                      # official protocol, ResNet-18\n"
        "  medmnist-lab train retinamnist --recipe fast        # official accuracy, a fraction of the time\n"
        "  medmnist-lab train retinamnist --model ResNet50 --epochs 20 --augment simple\n"
        "  medmnist-lab train breastmnist --resume runs/breastmnist_28/resnet18/NAME\n"
        "  medmnist-lab train adrenalmnist3d --conv acs --recipe fast   # volumes: 3D ResNet, a 2-core CPU"
    )


# CLI flag -> RunConfig field for plain overrides (None = not given, the recipe decides).
OVERRIDES: dict[str, tuple[type | object, str]] = {
    "--epochs": (positive_int, "training epochs"),
    "--batch-size": (positive_int, "training batch size"),
    "--lr": (number(0, lo_open=True), "peak learning rate, > 0"),
    "--optimizer": (str, "sgd, nesterov (SGD with Nesterov momentum), adam or adamw"),
    "--momentum": (number(0, 1, hi_open=True), "SGD momentum in [0, 1) (--optimizer sgd or nesterov only)"),
    "--weight-decay": (number(0), "weight decay, >= 0"),
    "--schedule": (str, "multistep, cosine, onecycle or constant"),
    "--milestones": (
        _fraction_list,
        "multistep milestones as fractions of the epochs, e.g. 0.5,0.75 (--schedule multistep only)",
    ),
    "--gamma": (number(0, 1, lo_open=True), "multistep decay factor in (0, 1] (--schedule multistep only)"),
    "--warmup": (nonnegative_int, "epochs of linear learning-rate warm-up"),
    "--label-smoothing": (number(0, 1, hi_open=True), "label smoothing in [0, 1)"),
    "--ema": (number(0, 1, hi_open=True), "decay of a weight average used for evaluation, e.g. 0.99 (0: off)"),
    "--augment": (str, "augmentation policies joined by +, e.g. simple+mixup (see `augment list`)"),
    "--width": (
        positive_int,
        "base channel width of the ResNet (64 = the real thing; tiny for tests)",
    ),
    "--stem": (
        str,
        "cifar (3x3, no max-pool), imagenet (7x7/2 + max-pool) or strided (cifar with stride 2); default by image size",
    ),
    "--conv": (
        str,
        "3D datasets only: how the ResNet sees volumes: 2.5d (2D kernels per slice), 3d (3D kernels) or "
        "acs (2D kernels on the axial, coronal and sagittal planes; the default)",
    ),
    "--eval-batch-size": (
        positive_int,
        "batch size for evaluation (default: scaled with image size)",
    ),
}


# Options that may go with --resume besides the config fields a resumed run may change
# (engine.train.RESUMABLE_CHANGES: --epochs, --root, --device): how this process behaves. Every
# other option would change the run: an error.
PROCESS_OPTIONS = ("keep", "no_progress", "report", "log")


def resumed_config(args: argparse.Namespace) -> RunConfig:
    """The config of the run in --resume (from its checkpoint, or config.yaml if it died before
    one) with the allowed changes applied; any option that would change the run is an error.
    Which of those the folder offers is the run folder lifecycle's call (`RunFolder.resume_state`)."""
    from dataclasses import replace

    from medmnist_lab.engine import RunConfig
    from medmnist_lab.engine.checkpoint import load_checkpoint
    from medmnist_lab.engine.runfolder import RunState, resume_target
    from medmnist_lab.engine.train import RESUMABLE_CHANGES
    from medmnist_lab.errors import MedMNISTLabError

    allowed = (*RESUMABLE_CHANGES, *PROCESS_OPTIONS, "resume", "dataset", "func", "command", "debug")
    changing = [f for f in vars(args) if f not in allowed]
    if bad := given(args, *changing):
        raise MedMNISTLabError(
            f"{', '.join(bad)} would change the run being resumed; with --resume only --epochs (to train "
            "it further), --root, --device, --keep and --no-progress may be given"
        )
    folder, last = resume_target(args.resume)
    if folder.resume_state(last, args.resume) is RunState.DIED_EARLY:
        config = RunConfig.from_dict(folder.read_config())
        print(f"note: {folder.path} has no checkpoint (it stopped during its first epoch): starting it again there")
    else:
        config = RunConfig.from_dict(load_checkpoint(last)["config"])
    if args.dataset is not None and args.dataset.lower() != config.dataset:
        raise MedMNISTLabError(f"--resume {args.resume} is a {config.dataset} run, not {args.dataset}")
    changes = {k: getattr(args, k) for k in RESUMABLE_CHANGES if getattr(args, k) is not None}
    return replace(config, **changes)


# RunConfig fields `--set` leaves to their own spelling.
SET_ELSEWHERE = {"dataset": "the DATASET argument", "recipe": "--recipe", "augment_params": "--augment-set NAME=VALUE"}


def apply_set(args: argparse.Namespace) -> dict:
    """`--set FIELD=VALUE`, read and checked as `study run --set` reads it: a field that has an
    option of its own acts as that option; the others are returned as overrides. A field given
    both ways is an error."""
    from medmnist_lab.errors import MedMNISTLabError
    from medmnist_lab.studies.spec import parse_set

    extra = {}
    for key, value in parse_set(args.set).items():
        if key in SET_ELSEWHERE:
            raise MedMNISTLabError(f"--set {key}=...: give the {key} with {SET_ELSEWHERE[key]}")
        if not hasattr(args, key):
            extra[key] = value
        elif given(args, key):
            raise MedMNISTLabError(f"--set {key}={value!r} and {given(args, key)[0]} both set {key}; give one of them")
        else:
            setattr(args, key, value)
    return extra


def cmd_train(args: argparse.Namespace) -> int:
    from medmnist_lab.augment import parse_magnitudes
    from medmnist_lab.deploy.card import write_model_card
    from medmnist_lab.engine import fit, resolve_config
    from medmnist_lab.engine.schedule import short_run_note
    from medmnist_lab.engine.trackers import make_trackers
    from medmnist_lab.errors import MedMNISTLabError
    from medmnist_lab.outputs import check_output_dir

    trackers = make_trackers(args.log)
    if args.resume is not None:
        config = resumed_config(args)
        result = fit(
            config,
            resume=args.resume,
            progress=not args.no_progress,
            keep=args.keep,
            trackers=trackers,
            on_finish=write_model_card,
        )
    else:
        if args.dataset is None:
            raise MedMNISTLabError("give a DATASET to train on (or --resume RUN_DIR); see `medmnist-lab datasets list`")
        extra = apply_set(args) if args.set else {}
        out_dir = check_output_dir(args.out_dir or Path("runs"), what="--out-dir")
        overrides = extra | {
            flag.lstrip("-").replace("-", "_"): getattr(args, flag.lstrip("-").replace("-", "_")) for flag in OVERRIDES
        }
        config = resolve_config(
            args.dataset,
            args.recipe or "medmnist-v2",
            size=args.size,
            root=args.root,
            model=args.model,
            seed=args.seed,
            device=args.device,
            amp=_deprecated_amp(args.amp),
            precision=args.precision,
            channels_last=args.channels_last,
            compile=args.compile or None,
            train_npz=str(args.train_npz) if args.train_npz else None,
            synthetic=str(args.synthetic) if args.synthetic else None,
            synthetic_ratio=args.synthetic_ratio,
            subset=args.subset,
            as_rgb=args.as_rgb or None,
            tta=args.tta,
            name=args.name,
            out_dir=str(out_dir),
            augment_params=parse_magnitudes(args.augment_set) or None,
            **overrides,
        )
        if note := short_run_note(config):
            print(note, file=sys.stderr)
        result = fit(
            config, progress=not args.no_progress, keep=args.keep, trackers=trackers, on_finish=write_model_card
        )
    m = result.summary.metrics
    print(f"\nrun: {result.run_dir}   best epoch: {result.best_epoch}   wall: {result.summary.wall_seconds:.1f}s")
    print(f"{'split':<6} {'AUC':>7} {'ACC':>7}")
    for split in ("train", "val", "test"):
        print(f"{split:<6} {m[split].auc:7.4f} {m[split].acc:7.4f}")
    if args.report:
        from medmnist_lab.report.site import build_report

        built = build_report([result.run_dir], result.run_dir / "report", root=config.root, progress=False)
        print(f"report: {built.index}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a ResNet on a MedMNIST dataset and score it with the official metrics",
        description=(
            "Train a classifier with a named recipe (default: the official MedMNIST v2 protocol),\n"
            "select the epoch with the best validation AUC, then score train/val/test once with it.\n"
            "Writes runs/{flag}_{size}/{model}/{name}/: config.yaml, history.jsonl, best.pt, last.pt,\n"
            "official prediction CSVs and summary.json."
        ),
        epilog=_epilog(),
        formatter_class=HelpFormatter,
    )
    p.add_argument("dataset", nargs="?", help="dataset flag, e.g. breastmnist (not needed with --resume)")
    p.add_argument("--size", type=int, choices=SIZES, default=None, help="image size (default 28)")
    p.add_argument("--model", default=None, help="resnet18 or resnet50 (default resnet18; ResNet18 also works)")
    p.add_argument("--recipe", default=None, help="named preset (default medmnist-v2); every field below overrides it")
    for flag, (kind, help_text) in OVERRIDES.items():
        shown = help_text if "default" in help_text else f"{help_text} (default: the recipe's)"
        p.add_argument(flag, type=kind, default=None, help=shown)
    p.add_argument(
        "--augment-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override an augmentation magnitude, repeatable (e.g. --augment-set rotate=30); see `augment list -v`",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="set any config field, as `study run --set` does, repeatable (e.g. --set ema=0.99 --set stem=cifar)",
    )
    p.add_argument("--seed", type=seed_int, default=None, help="seed for every RNG (default 0)")
    p.add_argument(
        "--train-npz",
        type=Path,
        default=None,
        help="npz replacing the training split (e.g. from `augment expand`)",
    )
    p.add_argument(
        "--synthetic",
        type=Path,
        default=None,
        help="npz of synthetic samples added to the training split",
    )
    p.add_argument(
        "--synthetic-ratio",
        type=number(0, lo_open=True),
        default=None,
        help="use R x (real train count) synthetic samples",
    )
    p.add_argument("--subset", type=positive_int, default=None, help="train on the first N training samples")
    p.add_argument("--as-rgb", action="store_true", help="repeat grayscale images to 3 channels")
    p.add_argument(
        "--tta", action="store_true", default=None, help="evaluate on each image and its mirror (val and test)"
    )
    p.add_argument("--device", default=None, help="auto, cpu, cuda or mps (default auto)")
    add_precision(p, training=True)
    p.add_argument(
        "--amp",
        type=_tristate,
        default=None,
        metavar="on|off|auto",
        help="older spelling of --precision (off = fp32, auto = auto, on = mixed precision); deprecated",
    )
    p.add_argument(
        "--channels-last",
        type=_tristate,
        default=None,
        metavar="on|off|auto",
        help="channels_last memory format (auto: on CUDA)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--name", default=None, help="run folder name (default: recipe-seed-timestamp)")
    p.add_argument("--out-dir", type=Path, default=None, help="folder holding run folders (default runs)")
    p.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="continue an interrupted run; with --epochs N above its epochs, train a finished or "
        "interrupted run further (the schedule is recomputed for N epochs); other options are errors",
    )
    p.add_argument(
        "--keep",
        choices=KEEP_CHOICES,
        default="both",
        help="checkpoints kept when the run ends: both; best (weights only, ~1/3 the size); last",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    p.add_argument("--report", action="store_true", help="write RUN_DIR/report/ (HTML with every plot) when done")
    p.add_argument(
        "--log",
        action="append",
        choices=("tensorboard", "mlflow"),
        default=[],
        help="also log to TensorBoard (RUN_DIR/tensorboard) or MLflow ($MLFLOW_TRACKING_URI, else ./mlruns); "
        "repeatable",
    )
    add_root(p)
    p.set_defaults(func=cmd_train)
