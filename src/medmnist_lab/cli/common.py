"""Argument helpers shared by command groups."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from medmnist_lab.data.registry import SIZES

# engine.runfolder.KEEP_CHOICES, restated so that building the parsers does not import the engine
# and its metrics stack (~2 s); tests/test_study.py asserts the two are equal.
KEEP_CHOICES: tuple[str, ...] = ("best", "last", "both")
# The built-in model names (models.MODELS), restated for the same reason: the registry is filled by
# importing the networks, i.e. torch. tests/test_same_numbers.py asserts the two are equal.
MODEL_NAMES: tuple[str, ...] = ("resnet18", "resnet50")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-made line breaks of descriptions and epilogs, and appends an option's
    default once: not when it is empty (None/False/an empty list) or the help text already speaks
    of it; a list as `a,b`, the way it is typed."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or default is None
            or default is False
            or default == argparse.SUPPRESS
            or (isinstance(default, list | tuple) and not default)
            or "default" in text.lower()
        ):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, list | tuple) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


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


PRECISION_CHOICES: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")  # engine.config.PRECISIONS (tested equal)


def add_precision(parser: argparse.ArgumentParser, *, training: bool) -> None:
    """`--precision`: for training, the autocast dtype (auto: bf16 on CUDA and on CPUs with
    avx512_bf16/AMX, fp32 elsewhere); for scoring, fp32 unless asked, so one checkpoint gives the
    same numbers on every CPU and matches its ONNX export."""
    if training:
        parser.add_argument(
            "--precision",
            choices=PRECISION_CHOICES,
            default=None,
            help="training precision; auto = bf16 on CUDA and on CPUs with avx512_bf16/AMX (volumes on a "
            "CPU: fp32), else fp32 (default: the recipe's, auto); the final scores are always computed in fp32",
        )
    else:
        parser.add_argument(
            "--precision",
            choices=PRECISION_CHOICES,
            default="fp32",
            help="scoring precision (default fp32: the same numbers on every CPU and as the ONNX export; "
            "auto = the training rule)",
        )


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output file (dataset files of the data root are never replaced)",
    )


def _bound(v: float | None) -> str:
    return "inf" if v is None else f"{v:g}"


def number(
    lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False
) -> Callable[[str], float]:
    """An argparse type: a finite float in a range; NaN, infinity and out-of-range values are errors
    that state the valid range (never clamped)."""
    valid = f"{'(' if lo_open or lo is None else '['}{'-inf' if lo is None else f'{lo:g}'}, {_bound(hi)}" + (
        ")" if hi_open or hi is None else "]"
    )

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number; valid: {valid}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"'{text}' is not a finite number; valid: {valid}")
        below = lo is not None and (value <= lo if lo_open else value < lo)
        above = hi is not None and (value >= hi if hi_open else value > hi)
        if below or above:
            raise argparse.ArgumentTypeError(f"{text} is out of range; valid: {valid}")
        return value

    return parse


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi]; out-of-range values are errors stating the range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if lo == 1 and hi is None:
                raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
            raise argparse.ArgumentTypeError(f"{value} is out of range; valid: {_bound(lo)}..{_bound(hi)}")
        return value

    return parse


positive_int = integer(1)
nonnegative_int = integer(0)
seed_int = integer(0, 2**32 - 1)  # numpy's and torch's seeds
cell_pixels = integer(16, 512)  # pixels per image in a grid: smaller is unreadable, larger is huge


def given(args: argparse.Namespace, *names: str) -> list[str]:
    """The options among `names` (dest names) that were given (not None/False/empty)."""
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n, None) not in (None, False, [], ())]


def output_path(path: Path, args: argparse.Namespace, suffixes: tuple[str, ...], what: str = "output") -> Path:
    """Check an output file named on the command line before any work (see outputs.check_output_file)."""
    from medmnist_lab.data.paths import dataset_files
    from medmnist_lab.outputs import check_output_file

    overwrite, root = getattr(args, "overwrite", False), getattr(args, "root", None)
    return check_output_file(path, overwrite=overwrite, suffixes=suffixes, protected=dataset_files(root), what=what)


def deprecation_note(old: str, new: str) -> None:
    """The one-line notice of an old spelling that still works (for one more release)."""
    import sys

    print(f"note: {old} is deprecated and will be removed in the next release; use {new}", file=sys.stderr)


class Deprecated(argparse.Action):
    """An old spelling kept for one release: stores (or, with `append=True`, appends) its value
    into the new option's dest and prints `deprecation_note`; `use` names the new spelling."""

    def __init__(self, option_strings: list[str], dest: str, *, use: str, append: bool = False, **kw) -> None:
        super().__init__(option_strings, dest, **kw)
        self.use, self.append = use, append

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        deprecation_note(option_string or self.dest, self.use)
        if self.append:
            values = [*(getattr(namespace, self.dest, None) or []), values]
        setattr(namespace, self.dest, values)


def add_alias(parser, *flags: str, dest: str, use: str, metavar: str, append: bool = False, **kw) -> None:
    """An old spelling of `use` (the option storing into `dest`), kept for one release: see `Deprecated`."""
    help = f"old spelling of {use} (deprecated)"
    parser.add_argument(*flags, dest=dest, action=Deprecated, use=use, append=append, metavar=metavar, help=help, **kw)


def add_out_dir(parser: argparse.ArgumentParser, help: str, *, required: bool = False) -> None:
    """`--out-dir DIR`, the folder a command writes, and `-o/--output`, its old spelling (deprecated)."""
    where = parser.add_mutually_exclusive_group(required=required)
    where.add_argument("--out-dir", type=Path, default=None, help=help)
    add_alias(where, "-o", "--output", dest="out_dir", use="--out-dir", metavar="DIR", type=Path)
