"""Entry point of the `medmnist-lab` command.

Each command group lives in its own module with a `register(subparsers)` function that adds its
parser and sets `func` (called with the parsed namespace, returns an exit code). User errors
(`MedMNISTLabError`) are printed as one line without a traceback and exit non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from medmnist_lab import __version__
from medmnist_lab.errors import MedMNISTLabError

# Command groups, in the order `--help` lists them. Modules are imported lazily so that
# `medmnist-lab datasets list` does not pay for importing the training stack.
GROUPS: tuple[str, ...] = ("datasets", "train", "evaluate", "augment", "gan", "study", "results")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-made line breaks of descriptions and epilogs, and appends an option's
    default unless it is empty (None/False) or the help text already speaks of it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default in (None, False, argparse.SUPPRESS) or "default" in text.lower():
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medmnist-lab",
        description=(
            "Train, augment, synthesize and benchmark medical image classifiers on MedMNIST.\n"
            "Data lives in --root, else $MEDMNIST_ROOT, else ~/.medmnist (the official package's folder)."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"medmnist-lab {__version__}")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
