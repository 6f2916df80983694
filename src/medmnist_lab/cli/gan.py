"""`medmnist-lab gan ...`: train DCGANs, sample synthetic training data, measure its quality."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from medmnist_lab.cli.common import (
    PRECISION_CHOICES,
    add_alias,
    add_command,
    add_group,
    add_overwrite,
    add_root,
    deprecation_note,
    given,
    number,
    output_path,
    positive_int,
    seed_int,
)
from medmnist_lab.errors import MedMNISTLabError

if TYPE_CHECKING:
    from medmnist_lab.gan.config import GANConfig

GAN_SIZES = (28, 64)  # the sizes the DCGAN nets are built for (models/dcgan.py)
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps (resolved by the training engine)"


_positive_float = number(0, lo_open=True)


# The deprecated --amp, as the precision fields it stood for (on: mixed precision even where the
# engine's auto would not use it, which GANConfig keeps as amp=True beside precision auto).
AMP_CHOICES: dict[str, dict[str, object]] = {
    "on": {"precision": "auto", "amp": True},
    "off": {"precision": "fp32"},
    "auto": {"precision": "auto"},
}


# Options that are GANConfig fields of the same name, with their defaults (GANConfig's; restated so
# that building the parser does not import the GAN code; tests/test_gan.py asserts they are equal).
# The parser's defaults are None, so a given option is told from an absent one even when its value
# is the default: a new run fills the absent ones with these; with --resume RUN_DIR the run's own
# config is the starting point and every given option changes it (one that may not change on
# resume is refused by train_gan, naming the setting).
CONFIG_DEFAULTS: dict[str, object] = {
    "mode": "conditional",
    "size": 28,
    "epochs": 100,
    "batch_size": 64,
    "width": 64,
    "nz": 100,
    "lr": 2e-4,
    "beta1": 0.5,
    "loss": "bce",
    "seed": 0,
    "sample_every": 10,
    "checkpoint_every": 5,
    "device": "auto",
    "precision": "fp32",
}
CONFIG_OPTIONS = tuple(CONFIG_DEFAULTS)
RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def _new_run_folder(args: argparse.Namespace, cfg) -> Path | None:
    """The run folder --out-dir/--name (or the deprecated --out) ask for; None: the default one."""
    from medmnist_lab.gan.config import default_run_dir

    if args.out is not None:
        if named := given(args, "out_dir", "name"):
            raise MedMNISTLabError(f"--out is the old spelling of --out-dir/--name; give {' and '.join(named)} alone")
        return args.out
    if args.name is not None and not RUN_NAME.fullmatch(args.name):
        raise MedMNISTLabError(f"--name {args.name!r} is not a folder name; use letters, digits, '.', '_' and '-'")
    if args.out_dir is None and args.name is None:
        return None
    return (args.out_dir or default_run_dir(cfg).parent) / (args.name or default_run_dir(cfg).name)


def _resumed_config(folder: Path, args: argparse.Namespace, options: dict) -> GANConfig:
    """The config of the run in `folder` (its last.pt, or config.yaml if it died before one),
    changed by `options`, those given on the command line (and DATASET, if given: it must be the
    run's). Which of those the folder offers is the run folder lifecycle's call
    (`RunFolder.resume_state`)."""
    from dataclasses import replace

    from medmnist_lab.engine.runfolder import RunState, resume_target
    from medmnist_lab.gan.checkpoint import load_checkpoint
    from medmnist_lab.gan.config import GANConfig

    if named := given(args, "out_dir", "name", "out"):
        raise MedMNISTLabError(
            f"--resume {folder} continues the run in that folder; {' and '.join(named)} name the folder of a new run"
        )
    run, last = resume_target(folder)
    if run.resume_state(last, folder) is RunState.DIED_EARLY:
        saved = GANConfig.from_dict(run.read_config())
        print(f"note: {run.path} has no checkpoint (it stopped before its first one): starting it again there")
    else:
        saved = GANConfig.from_dict(load_checkpoint(last)["config"])
    changes = dict(options)  # every option given, even with its default value
    if args.dataset is not None:
        changes["dataset"] = args.dataset
    return replace(saved, **changes)


def _dataset_named(path: Path) -> str | None:
    """`path` as a dataset name (v2 flag or v1 alias, any case) when it is one and no such file or
    folder exists: `gan train --resume breastmnist ...` is the old bare --resume before DATASET."""
    from medmnist_lab.data.registry import get_dataset

    if path.exists() or len(path.parts) != 1:
        return None
    try:
        get_dataset(str(path), warn_alias=False)
    except MedMNISTLabError:
        return None
    return str(path)


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from medmnist_lab.gan.config import GANConfig, default_run_dir
    from medmnist_lab.gan.train import train_gan
    from medmnist_lab.outputs import check_output_dir

    # The config options given on the command line (None: not given, the parser's defaults), so that
    # --resume RUN_DIR applies exactly these, a default value included.
    options = {k: v for k in (*CONFIG_OPTIONS, "root") if (v := getattr(args, k)) is not None}
    if args.amp is not None:
        if args.precision is not None:
            raise MedMNISTLabError(f"--amp {args.amp} is the old spelling of --precision; give --precision alone")
        deprecation_note("--amp", "--precision (off = fp32, auto = auto, on = bf16 or fp16)")
        options.update(AMP_CHOICES[args.amp])
    resume: bool | Path | None = args.resume
    if isinstance(resume, Path) and (name := _dataset_named(resume)) is not None:
        if args.dataset is not None:
            raise MedMNISTLabError(
                f"--resume {resume} is no run folder but a dataset, and DATASET {args.dataset} is given too; "
                "give --resume RUN_DIR, or one dataset"
            )
        args.dataset, resume = name, True  # the old `--resume DATASET` order: a bare --resume, then DATASET
    if isinstance(resume, Path):
        cfg = _resumed_config(resume, args, options)
    else:
        if args.dataset is None:
            raise MedMNISTLabError("give a DATASET to train on (or --resume RUN_DIR); see `medmnist-lab datasets list`")
        cfg = GANConfig(dataset=args.dataset, **{**CONFIG_DEFAULTS, **options})
        folder = _new_run_folder(args, cfg)
        if folder is not None:
            cfg = replace(cfg, out=str(check_output_dir(folder, what="run folder")))
        if resume is True:  # the old bare flag: the run in the folder the other options name
            where = folder or default_run_dir(cfg)
            deprecation_note("--resume without a folder", f"--resume {where}")
    result = train_gan(cfg, resume=resume, progress=not args.no_progress)
    last = result.summary.final
    print(f"\nrun: {result.run_dir}   checkpoint: {result.checkpoint}   epochs: {result.epochs_done}")
    print(
        f"last epoch: loss_d {last.loss_d:.3f}  loss_g {last.loss_g:.3f}  "
        f"D(x) {last.d_real:.2f}  D(G(z)) {last.d_fake:.2f}"
    )
    secs = sorted(r.seconds for r in result.history)
    print(f"seconds/epoch: median {secs[len(secs) // 2]:.2f} over {len(secs)} epochs")
    if result.grids:
        print(f"latest sample grid: {result.grids[-1]}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from medmnist_lab.gan.sampling import sample_to_npz

    output_path(args.output, args, (".npz",))
    path, counts = sample_to_npz(
        args.checkpoint,
        args.output,
        per_class=args.per_class,
        balance=args.balance,
        ratio=args.ratio,
        seed=args.seed,
        device=args.device,
    )
    print(f"wrote {path}: {sum(counts)} images, per class {counts}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from medmnist_lab.gan.quality import default_quality_path, evaluate_gan

    if args.output is not None:  # checked before the work; the default quality.json is refreshed
        output_path(args.output, args, (".json",))
    elif args.checkpoint.is_file():
        from medmnist_lab.data.paths import dataset_files
        from medmnist_lab.outputs import check_output_file

        check_output_file(
            default_quality_path(args.checkpoint), overwrite=True, protected=dataset_files(), what="quality record"
        )
    if args.classifier is not None and args.no_cas and (unused := given(args, "classifier_epochs", "classifier_width")):
        raise MedMNISTLabError(
            f"{' and '.join(unused)} set the default and CAS classifiers; "
            "with --classifier and --no-cas neither is trained"
        )
    q = evaluate_gan(
        args.checkpoint,
        classifier=args.classifier,
        n=args.n,
        root=args.root,
        cas=not args.no_cas,
        classifier_epochs=args.classifier_epochs or 10,
        classifier_width=args.classifier_width or 16,
        seed=args.seed,
        device=args.device,
    )
    path = q.write(args.output if args.output is not None else default_quality_path(args.checkpoint))
    for w in q.warnings:
        print(f"warning: {w}", file=sys.stderr)
    fe = q.feature_extractor
    print(
        f"{q.dataset} {q.size}px {q.mode} GAN after {q.epoch + 1} epochs: {q.n_generated} generated "
        f"(per class {q.counts})"
    )
    print(
        f"features: {fe.model} (width {fe.width}, {fe.source})"
        + (f", test AUC {fe.test.auc:.3f} ACC {fe.test.acc:.3f}" if fe.test is not None else "")
    )
    rows = {"all": q.fid, **{f"class {k}": v for k, v in q.fid_per_class.items()}}
    print(f"{'FID vs real train':<28} {'generated':>10} {'gen. at n':>10} {'real test':>10} {'n':>5}")
    for name, f in rows.items():
        cells = [f.generated_vs_train, f.generated_vs_train_at_test_n, f.test_vs_train]
        text = " ".join(f"{v:10.3f}" if v is not None else f"{'-':>10}" for v in cells)
        print(f"{name[:28]:<28} {text} {f.test_n:5d}")
    pr = q.precision_recall
    print(
        f"precision {pr.precision:.3f}  recall {pr.recall:.3f}  (k={pr.k}; real test: "
        f"{pr.test_precision:.3f} / {pr.test_recall:.3f})"
    )
    d = q.diversity
    print(
        f"spread generated/real {d.spread_ratio:.2f}   near-duplicates {d.dup_share_fake:.1%} "
        f"(real {d.dup_share_real:.1%})"
    )
    m = q.memorization
    print(
        f"median distance to nearest train image: generated {m.median_nn_to_train_generated:.3f}, "
        f"real test {m.median_nn_to_train_test:.3f} (ratio {m.ratio:.2f}; << 1 = copying)"
    )
    if q.cas is not None:
        syn, real = q.cas.synthetic_trained, q.cas.real_trained
        print(
            f"CAS (test on real): trained on synthetic AUC {syn.auc:.3f} ACC {syn.acc:.3f}; "
            f"on real AUC {real.auc:.3f} ACC {real.acc:.3f}"
        )
    print(f"saved {path}")
    return 0


EPILOG_TRAIN = """\
modes:
  per-class     one unconditional DCGAN per class, trained on that class only (the seed's scheme)
  conditional   one DCGAN for all classes: one-hot label into G, projection discriminator

The run folder (--out-dir/--name, default runs/gan/{dataset}-{size}px-{mode}-seed{seed}) holds
config.yaml, last.pt (atomic, resumable with --resume RUN_DIR), history.jsonl (0-based epochs, as
`train` runs), samples/epoch_XXXX.png grids (one row per class, fixed noise; XXXX the 0-based
epoch) and, once finished, summary.json. Multi-label ChestMNIST is refused: per-class counts are
undefined when an image carries several findings.

examples:
  medmnist-lab gan train breastmnist --mode per-class --epochs 100
  medmnist-lab gan train breastmnist --out-dir gans --name breast-cond --epochs 200
  medmnist-lab gan train --resume gans/breast-cond --epochs 300      # train it further, to 300 epochs
"""

EPILOG_SAMPLE = """\
Exactly one of:
  --per-class N   N images of every class
  --balance       top every class up to the largest class of the real train split
  --ratio R       round(R x real count) images of each class

The npz holds train_images / train_labels in the official layout, marked as synthetic
(origin, checkpoint, mode, counts).

examples:
  medmnist-lab gan sample runs/gan/breastmnist-28px-conditional-seed0/last.pt --balance -o synthetic.npz
  medmnist-lab gan sample runs/gan/breastmnist-28px-per-class-seed0/last.pt --per-class 500 -o s500.npz
  medmnist-lab train breastmnist --synthetic synthetic.npz --synthetic-ratio 0.5
"""

EPILOG_EVALUATE = """\
Metrics live in the feature space of a classifier trained on the real data (Inception-FID
needs downloaded weights and is out of domain on small grayscale scans). Without --classifier,
a ResNet-18 of width 16 is trained for --classifier-epochs with the engine's `short` recipe and
cached under RUN/quality/. Reported: FID (generated vs real train; a real test set as the
floor), k-NN precision/recall (k=3), CAS (a classifier trained on synthetic only, tested on
real, next to the same recipe trained on real) and mode-collapse warnings.

examples:
  medmnist-lab gan evaluate runs/gan/breastmnist-28px-conditional-seed0/last.pt
  medmnist-lab gan evaluate runs/gan/NAME/last.pt --classifier runs/breastmnist_28/resnet18/NAME/best.pt --no-cas
"""


def _config_option(p: argparse.ArgumentParser, flag: str, help: str, **kw) -> None:
    """An option that is a GANConfig field: parser default None (not given), its default in the help."""
    default = CONFIG_DEFAULTS[flag[2:].replace("-", "_")]
    p.add_argument(flag, default=None, help=f"{help} (default: {default})", **kw)


def register(sub: argparse._SubParsersAction) -> None:
    _, group = add_group(sub, "gan", "train DCGANs, sample synthetic training data, measure its quality")

    p = add_command(
        group, "train", "train a per-class or class-conditional DCGAN on a dataset's train split", epilog=EPILOG_TRAIN
    )
    p.add_argument(
        "dataset",
        nargs="?",
        help="dataset flag, e.g. breastmnist (single-label datasets only; not needed with --resume)",
    )
    _config_option(p, "--mode", "per-class or conditional")
    _config_option(p, "--size", "image size in pixels", type=int, choices=GAN_SIZES)
    _config_option(p, "--epochs", "total epochs (with --resume: train up to this)", type=positive_int)
    _config_option(p, "--batch-size", "training batch size", type=positive_int)
    _config_option(p, "--width", "channels of the largest hidden map (DCGAN ngf/ndf)", type=positive_int)
    _config_option(p, "--nz", "length of the noise vector z", type=positive_int)
    _config_option(p, "--lr", "Adam learning rate (the paper's)", type=_positive_float)
    _config_option(p, "--beta1", "Adam beta1 in [0, 1) (the paper's)", type=number(0, 1, hi_open=True))
    _config_option(p, "--loss", "bce (non-saturating, the paper's) or hinge")
    _config_option(p, "--sample-every", "save a sample grid every N epochs", type=positive_int)
    _config_option(p, "--checkpoint-every", "write last.pt every N epochs", type=positive_int)
    p.add_argument("--out-dir", type=Path, default=None, help="folder holding run folders (default runs/gan)")
    p.add_argument("--name", default=None, help="run folder name (default: {dataset}-{size}px-{mode}-seed{seed})")
    add_alias(p, "--out", dest="out", use="--out-dir DIR --name NAME", metavar="RUN_DIR", type=Path, default=None)
    p.add_argument(
        "--resume",
        type=Path,
        nargs="?",
        const=True,
        default=None,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last.pt (its settings, changed by the options given: "
        "--epochs N trains up to N); without RUN_DIR (deprecated): the run --out-dir/--name name",
    )
    _config_option(p, "--seed", "seed of the weights, the batches and the noise", type=seed_int)
    _config_option(p, "--device", DEVICE_HELP)
    _config_option(
        p,
        "--precision",
        "training precision; auto = the engine's choice (bf16 on CUDA and on CPUs with avx512_bf16/AMX); "
        "for GANs fp32 unless asked: every GAN number was measured in fp32",
        choices=PRECISION_CHOICES,
    )
    p.add_argument(
        "--amp",
        choices=tuple(AMP_CHOICES),
        default=None,
        help="older spelling of --precision (off = fp32, auto = auto, on = mixed precision); deprecated",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    add_root(p)
    p.set_defaults(func=cmd_train)

    p = add_command(
        group,
        "sample",
        "draw an exact number of images per class from a GAN checkpoint into an npz",
        epilog=EPILOG_SAMPLE,
    )
    p.add_argument("checkpoint", type=Path, help="GAN checkpoint, e.g. runs/gan/NAME/last.pt")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--per-class", type=positive_int, metavar="N", help="N images of every class")
    how.add_argument("--balance", action="store_true", help="top every class up to the largest real class")
    how.add_argument("--ratio", type=_positive_float, metavar="R", help="R x the real count of each class")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .npz")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the noise")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_overwrite(p)
    p.set_defaults(func=cmd_sample)

    p = add_command(
        group,
        "evaluate",
        "FID, precision/recall, CAS and mode-collapse check of a GAN checkpoint",
        epilog=EPILOG_EVALUATE,
    )
    p.add_argument("checkpoint", type=Path, help="GAN checkpoint, e.g. runs/gan/NAME/last.pt")
    p.add_argument(
        "--classifier",
        type=Path,
        default=None,
        help="classifier checkpoint (best.pt of `medmnist-lab train`) whose features to use",
    )
    p.add_argument(
        "--n",
        type=positive_int,
        default=None,
        help="images to generate, split like the real classes; if not given: as many as the real train split",
    )
    p.add_argument(
        "--no-cas", action="store_true", help="skip the classification accuracy score (trains 1-2 classifiers)"
    )
    p.add_argument(
        "--classifier-epochs", type=positive_int, default=None, help="epochs of the default and CAS classifiers (10)"
    )
    p.add_argument(
        "--classifier-width", type=positive_int, default=None, help="ResNet-18 width of those classifiers (16)"
    )
    p.add_argument(
        "-o", "--output", type=Path, default=None, help="JSON file; if not given: quality.json beside the checkpoint"
    )
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the noise and of the classifiers trained here")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_overwrite(p)
    add_root(p)
    p.set_defaults(func=cmd_evaluate)
