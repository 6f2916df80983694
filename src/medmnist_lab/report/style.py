"""One plot style for every figure of a report: the Okabe-Ito palette (distinguishable with every
common colour-vision deficiency), text readable at 100% zoom, PNG for the page and SVG beside it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from PIL import Image

from medmnist_lab.outputs import atomic_path

# Okabe & Ito (2008), "Color Universal Design": black first for single series.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
DPI = 110
P = ParamSpec("P")
R = TypeVar("R")

RC = {
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "figure.dpi": DPI,
    "svg.fonttype": "none",  # text stays text in the SVG
}


def styled(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a plotting function under the report style (labels and titles read it when drawn)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with plt.rc_context(RC):
            return fn(*args, **kwargs)

    return wrapper


def figure(
    width: float = 5.5, height: float = 3.6, ncols: int = 1, margins: dict[str, float] | None = None
) -> tuple[Figure, list]:
    """A figure with fixed margins (fractions of its size): a layout engine or bbox="tight" would
    draw every figure once more per file, which is most of a report's build time."""
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    fig.subplots_adjust(**{"left": 0.14, "right": 0.96, "bottom": 0.15, "top": 0.88, "wspace": 0.35, **(margins or {})})
    return fig, list(axes[0])


@dataclass(frozen=True)
class Fig:
    """A figure of a page: its caption, PNG file (under assets/), SVG file if any, full width or not."""

    caption: str
    png: str
    svg: str | None = None
    wide: bool = False


def save(fig: Figure, folder: Path, name: str, caption: str, wide: bool = False) -> Fig:
    """`name.png` and `name.svg` in `folder`, each written atomically: a report rebuilt over an old
    one and interrupted keeps the old figure, never a truncated one."""
    try:
        with plt.rc_context(RC):
            # The temporary name ends in .tmp, so the format is given, not guessed from the suffix.
            with atomic_path(folder / f"{name}.png") as tmp:
                fig.savefig(tmp, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
            with atomic_path(folder / f"{name}.svg") as tmp:
                fig.savefig(tmp, format="svg")
    finally:
        plt.close(fig)  # a failed save must not leak the figure into the next page's memory
    return Fig(caption, f"{name}.png", f"{name}.svg", wide)


def save_image(image: Image.Image, folder: Path, name: str, caption: str, wide: bool = False) -> Fig:
    """A picture that is not a plot (an image grid): PNG only."""
    with atomic_path(folder / f"{name}.png") as tmp:  # two workers may draw the same montage
        image.save(tmp, format="PNG")
    return Fig(caption, f"{name}.png", None, wide)
