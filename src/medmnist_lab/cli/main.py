"""Entry point of the `medmnist-lab` command.

Each command group lives in its own module with a `register(subparsers)` function that adds its
parser and sets `func` (called with the parsed namespace, returns an exit code). User errors
(`MedMNISTLabError`) are printed as one line without a traceback and exit non-zero; anything
else is a bug: one line naming it and a log file with its traceback, exit code 1 (`--debug`
shows the traceback instead).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import NoReturn

from medmnist_lab import __version__
from medmnist_lab.cli.common import HelpFormatter
from medmnist_lab.data.paths import ROOT_ENV
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.outputs import write_text_atomic

# Command groups, in the order `--help` lists them. Modules are imported lazily so that
# `medmnist-lab datasets list` does not pay for importing the training stack.
GROUPS: tuple[str, ...] = (
    "datasets", "train", "evaluate", "calibrate", "predict", "export", "augment", "gan", "study", "results", "report"
)  # fmt: skip


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (the bad value and where help is) and exit code 2.

    Sub-command parsers inherit this class (argparse's `add_subparsers` uses the parent's type).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="medmnist-lab",
        description=(
            "Train, augment, synthesize and benchmark medical image classifiers on MedMNIST.\n"
            "Data lives in --root, else $MEDMNIST_ROOT, else ~/.medmnist (the official package's folder)."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"medmnist-lab {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an unexpected error instead of a one-line summary"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        try:
            module = importlib.import_module(f"medmnist_lab.cli.{group}")
        except ModuleNotFoundError as exc:
            if exc.name == f"medmnist_lab.cli.{group}":
                continue  # group not built yet
            raise
        module.register(sub)
    return parser


def absolute_roots(args: argparse.Namespace) -> None:
    """Make a relative `--root` and `$MEDMNIST_ROOT` absolute, once, at start-up: a later change of
    directory (a test, a study worker, a library call) must not change which folder they mean."""
    env = os.environ.get(ROOT_ENV)
    if env and not os.path.isabs(os.path.expanduser(env)):
        os.environ[ROOT_ENV] = os.path.abspath(env)
    root = getattr(args, "root", None)
    if root is not None and str(root) != "":
        args.root = type(root)(os.path.abspath(os.path.expanduser(os.fspath(root))))
    sets = getattr(args, "set", None)
    if isinstance(sets, list):  # --set root=DIR (train, study run) is the same setting
        for i, item in enumerate(sets):
            key, sep, value = item.partition("=")
            value = value.strip().strip("'\"")
            if key.strip() == "root" and sep and value and value != "null" and not os.path.isabs(value):
                sets[i] = f"root={json.dumps(os.path.abspath(os.path.expanduser(value)))}"  # JSON: valid YAML


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    absolute_roots(args)
    if not getattr(args, "func", None):
        # A group given without its sub-command prints that group's help.
        (getattr(args, "group_parser", None) or parser).print_help()
        return 2 if args.command else 0
    try:
        return int(args.func(args) or 0)
    except MedMNISTLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(
            "interrupted: finished work is kept (rerun a study to resume it; `train --resume RUN_DIR` a run)",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:  # a bug, not a user error: one line for the user, the traceback in a file
        if args.debug:
            raise
        log = crash_log(exc)
        first = (str(exc).strip().splitlines() or [""])[0]
        print(
            f"error: unexpected {type(exc).__name__}: {first} (a bug: the traceback is in {log}; "
            "rerun with --debug to see it)",
            file=sys.stderr,
        )
        return 1


def crash_log(exc: BaseException) -> Path:
    """Write the traceback (and the command line) to a new file in the temp folder; its path."""
    folder = Path(tempfile.gettempdir()) / "medmnist-lab"  # made by write_text_atomic
    path = folder / f"crash-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return write_text_atomic(path, f"medmnist-lab {__version__}\ncommand: {' '.join(sys.argv)}\n\n{text}")


if __name__ == "__main__":
    sys.exit(main())
