"""Argument helpers shared by command groups."""

from __future__ import annotations

import argparse

from medmnist_lab.cli.main import HelpFormatter
from medmnist_lab.data.registry import SIZES

# engine.runfolder.KEEP_CHOICES, restated so that building the parsers does not import the engine
# and its metrics stack (~2 s); tests/test_study.py asserts the two are equal.
KEEP_CHOICES: tuple[str, ...] = ("best", "last", "both")


def add_group(sub: argparse._SubParsersAction, name: str, help: str, description: str | None = None):
    """Add a command group; returns (group parser, its sub-command action)."""
    parser = sub.add_parser(name, help=help, description=description or help, formatter_class=HelpFormatter)
    parser.set_defaults(group_parser=parser)
    return parser, parser.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")


def add_command(sub: argparse._SubParsersAction, name: str, help: str, description: str | None = None, **kw):
    return sub.add_parser(name, help=help, description=description or help, formatter_class=HelpFormatter, **kw)


def add_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=None, help="data folder (default: $MEDMNIST_ROOT, else ~/.medmnist)")


def add_size(parser: argparse.ArgumentParser, default: int = 28) -> None:
    parser.add_argument("--size", type=int, choices=SIZES, default=default, help="image size in pixels")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value
