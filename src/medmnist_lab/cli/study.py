"""`medmnist-lab study run|list|show`: run a declared grid of training runs to a results store."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from medmnist_lab.cli.common import (
    KEEP_CHOICES,
    add_command,
    add_group,
    add_out_dir,
    add_precision,
    add_root,
    positive_int,
    seed_int,
)


def _format_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.0f}min"
    return f"{s / 3600:.1f}h"


def _device_name(text: str) -> str:
    """A device name the engine knows (checked here, not in each cell: a typo would fail every cell);
    whether that device exists is each worker's to say, since a Ray cluster's may differ from ours."""
    if text in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"'{text}' is not a device; valid: auto, cpu, cuda, cuda:N, mps")


def _spec_from_args(args: argparse.Namespace):
    from medmnist_lab.studies.spec import apply_overrides, load_spec, parse_set

    if args.root is not None:  # --root DIR is --set root=DIR (a location: no cell's hash changes)
        if any(s.partition("=")[0].strip() == "root" for s in args.set or []):
            from medmnist_lab.errors import MedMNISTLabError

            raise MedMNISTLabError("--root and --set root=... both set the data folder; give one of them")
        args.set = [*(args.set or []), f"root={json.dumps(str(args.root))}"]  # quoted: read as YAML
    if args.device is not None and any(s.partition("=")[0].strip() == "device" for s in args.set or []):
        from medmnist_lab.errors import MedMNISTLabError

        raise MedMNISTLabError("--device and --set device=... both set the device; give one of them")
    spec = load_spec(args.spec)
    # --precision replaces whatever precision the spec chose, including its older spelling `amp`
    sets = [*(args.set or []), *([f"precision={args.precision}", "amp=null"] if args.precision else [])]
    sets += [f"device={json.dumps(args.device)}"] if args.device else []  # quoted: `cuda:0` stays a string
    return apply_overrides(spec, parse_set(sets), args.datasets, args.seeds, args.trials, args.sizes)


def cmd_run(args: argparse.Namespace) -> int:
    from medmnist_lab.studies.backends import BackendOptions
    from medmnist_lab.studies.runner import run_study

    spec = _spec_from_args(args)
    study_dir = args.out_dir or Path("studies") / spec.name
    if args.address and args.backend != "ray":
        from medmnist_lab.errors import MedMNISTLabError

        raise MedMNISTLabError("--address joins a Ray cluster: it needs --backend ray")
    if args.dry_run:
        return _dry_run(spec, study_dir, args.workers or 1, args.threads)
    options = BackendOptions(workers=args.workers, address=args.address, threads=args.threads)
    report = run_study(
        spec,
        study_dir,
        backend=args.backend,
        options=options,
        keep=args.keep,
        max_attempts=args.max_attempts,
        progress=not args.no_progress,
    )
    print(
        f"study {spec.name}: {report.cells} cells; {report.skipped} finished before, {report.done} done now, "
        f"{report.pruned} pruned, {report.failed} failed attempts"
    )
    for key, h in report.chosen.items():
        print(f"search {key}: chosen trial {h} (best validation AUC)")
    if report.still_failed:
        print(
            f"{len(report.still_failed)} cell(s) failed ({len(report.given_up)} of them {args.max_attempts} times, "
            f"not retried again); their logs: {study_dir}/logs/HASH.log for {', '.join(report.still_failed[:5])}",
            file=sys.stderr,
        )
    if report.interrupted:
        print(f"interrupted: rerun the same command to resume (results so far in {study_dir})", file=sys.stderr)
        return 130
    print(f"results: medmnist-lab results table {study_dir}")
    if args.report and report.done + report.skipped:
        from medmnist_lab.report.site import build_report

        built = build_report([study_dir], study_dir / "report", progress=not args.no_progress)
        print(f"report: {built.index}")
    return 1 if report.still_failed else 0


def _dry_run(spec, study_dir: Path, workers: int, threads: int | None) -> int:
    import os

    from medmnist_lab.studies.estimate import cache_path, estimate
    from medmnist_lab.studies.rows import show_value as show
    from medmnist_lab.studies.runner import plan
    from medmnist_lab.studies.store import ResultStore, db_path

    threads = threads or max(1, (os.cpu_count() or 1) // workers)  # what each worker will use

    def measuring(i: int, n: int, config) -> None:
        print(
            f"measuring the training step on this machine ({i + 1}/{n}: {config.model} width {config.width}, "
            f"{config.size} px, batch {config.batch_size}, {threads} thread(s)); recorded in {cache_path()}",
            file=sys.stderr,
            flush=True,
        )

    grid, searches = plan(spec, study_dir)
    cells = grid or [s.template for s in searches]  # a search: one line per group, x trials
    if searches:
        fields = [r.field for r in spec.ranges]
        print(f"search {spec.name}: {len(searches)} group(s) x {spec.trials} trials over {fields}")
    status: dict[str, str] = {}
    if db_path(study_dir).is_file():
        with ResultStore(study_dir, create=False) as store:
            times = estimate(cells, store, threads=threads, on_measure=measuring)
            status = {h: (store.status(h) or ("new", 0))[0] for h in times}
    else:
        times = estimate(cells, threads=threads, on_measure=measuring)
    print(f"{'hash':<16}  {'status':<8}  {'estimate':>8}  {'from':<8}  cell")
    total = 0.0
    for cell in cells:
        seconds, source = times[cell.hash]
        state = status.get(cell.hash, "new")
        if state not in ("done", "pruned"):
            total += seconds
        print(f"{cell.hash}  {state:<8}  {_format_seconds(seconds):>8}  {source:<8}  {cell.label}")
    from medmnist_lab.studies.synthetic import is_named

    if any(is_named(cell.config.synthetic) for cell in cells):
        print(
            "note: cells with synthetic: gan-balanced first train their GAN (once per dataset and size, shared "
            "by the study); that time is not in the estimates"
        )
    if spec.trust:
        t = spec.trust
        steps = f"{t['calibrate']} scaling" + (
            f", {t['score'].upper()} sets at ALPHA {t['conformal']:g}" if t["conformal"] else ""
        )
        if t["corruptions"] is not None:
            steps += f", MedMNIST-C corruptions {show(t['corruptions'])} at severities {show(t['severities'])}"
        print(f"note: after training, each cell runs its trust steps ({steps}); that time is not in the estimates")
    per = spec.trials if spec.is_search else 1
    left = total * per
    print(
        f"{len(cells) * per} cells; about {_format_seconds(left)} of work left, {_format_seconds(left / workers)} "
        f"wall with {workers} worker(s) of {threads} thread(s) (speeds: study = this study's finished cells, "
        "cache = measured on this machine before, measured = just now)"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from medmnist_lab.studies.spec import builtin_names, grid_points, load_spec

    print(f"{'study':<16} {'cells':>6}  description")
    for name in builtin_names():
        spec = load_spec(name)
        n = len(grid_points(spec)) * (spec.trials or 1)
        first = spec.description.split(". ")[0].rstrip(".")
        print(f"{name:<16} {n:>6}  {first}")
    print("\n`medmnist-lab study show NAME` prints a spec; `--datasets` restricts a study to the files you have.")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import yaml

    from medmnist_lab.studies.spec import load_spec

    print(yaml.safe_dump(load_spec(args.spec).to_dict(), sort_keys=False), end="")
    return 0


EPILOG = """\
A spec is YAML: base (RunConfig fields), axes (lists: their cross product; or ranges searched
with Optuna, with `trials: N`), optional include/exclude lists of cells. Each cell is one
training run, identified by a hash of its resolved config; rerunning a study skips finished
cells, retries failed ones and resumes interrupted ones from their last checkpoint.
The built-in studies train with the `fast` recipe (16 epochs, near the official ResNet-18
numbers on the real files: BENCHMARKS.md) and 5 seeds; --set recipe=medmnist-v2 gives the
official 100-epoch protocol instead.

examples:
  medmnist-lab study list
  medmnist-lab study run resnet18-vs-50 --datasets breastmnist --seeds 0 1 2
  medmnist-lab study run augment --datasets retinamnist --set epochs=30 --workers 2 --dry-run
  medmnist-lab study run resolution --datasets breastmnist --device cuda --workers 2
  medmnist-lab study run resolution --datasets adrenalmnist3d --sizes 28 64 --device cuda
  medmnist-lab study run my_spec.yaml --backend ray --address auto --out-dir /shared/studies/mine
  medmnist-lab results table studies/resnet18-vs-50 --baseline model=resnet18
"""


def register(sub: argparse._SubParsersAction) -> None:
    from medmnist_lab.studies.backends import BACKENDS

    _, cmds = add_group(sub, "study", "run declared grids of training runs (local or Ray) into a results store")
    p = add_command(cmds, "run", "run (or resume) a study", epilog=EPILOG)
    p.add_argument("spec", metavar="SPEC.yaml|NAME", help="a spec file or a built-in study (see `study list`)")
    p.add_argument("--backend", choices=BACKENDS.names(), default="local", help="where cells run")
    p.add_argument("--workers", type=positive_int, default=None, help="cells at once (local default 1)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads per cell (default cores/workers)")
    p.add_argument("--address", default=None, help="Ray cluster to join: auto or HOST:PORT (default: a local Ray)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list the cells with an estimated time (from speeds recorded on this machine; the first time, "
        "a few real training steps are timed); run nothing",
    )
    p.add_argument("--datasets", nargs="+", default=None, metavar="FLAG", help="replace the dataset axis")
    p.add_argument("--seeds", nargs="+", type=seed_int, default=None, metavar="N", help="replace the seed axis")
    p.add_argument(
        "--sizes", nargs="+", type=positive_int, default=None, metavar="PX", help="replace the size axis (e.g. 28 64)"
    )
    p.add_argument("--trials", type=positive_int, default=None, help="trials per search (specs with range axes)")
    p.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="FIELD=VALUE",
        help="fix a config field for every cell, repeatable (e.g. --set epochs=1 --set width=4)",
    )
    add_out_dir(p, "study folder (default studies/NAME)")
    p.add_argument(
        "--keep", choices=KEEP_CHOICES, default="best", help="checkpoints kept per finished cell (best: weights only)"
    )
    p.add_argument("--max-attempts", type=positive_int, default=3, help="attempts per cell before giving up")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_precision(p, training=True)
    p.add_argument(
        "--device",
        type=_device_name,
        default=None,
        help="auto, cpu, cuda, cuda:N or mps for every cell (as --set device=...: part of each cell's identity, "
        "since results differ by device; default: the spec's, else auto)",
    )
    p.add_argument("--report", action="store_true", help="write or refresh STUDY/report/ (HTML) when the study ends")
    add_root(p)
    p.set_defaults(func=cmd_run)
    p = add_command(
        cmds,
        "list",
        "built-in studies with their cell counts",
        epilog="examples:\n  medmnist-lab study list\n  medmnist-lab study show resnet18-vs-50",
    )
    p.set_defaults(func=cmd_list)
    p = add_command(
        cmds,
        "show",
        "print a study spec (built-in or file) as YAML",
        epilog=(
            "examples:\n"
            "  medmnist-lab study show augment\n"
            "  medmnist-lab study show augment > my_spec.yaml   # a starting point for your own study"
        ),
    )
    p.add_argument("spec", metavar="SPEC.yaml|NAME", help="a spec file or a built-in study (see `study list`)")
    p.set_defaults(func=cmd_show)
