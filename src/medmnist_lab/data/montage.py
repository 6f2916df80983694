"""Labelled image grids, to look at data (real, augmented or synthetic), 2D images or 3D volumes.

A volume (C, D, H, W) is drawn as one cell of three panels side by side, one per axis, D | H | W:
either the middle slice across that axis (`slices`: volume[D//2], volume[:, H//2], volume[:, :, W//2])
or the maximum-intensity projection along it (`mip`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.outputs import atomic_path

VOLUME_VIEWS: dict[str, str] = {
    "slices": "middle slice across each axis",
    "mip": "maximum-intensity projection along each axis",
}
_GAP = 128  # mid-grey between the panels of a volume: neither a black background nor a white mask


def volume_panels(volume: torch.Tensor, view: str = "slices") -> torch.Tensor:
    """(C, D, H, W) uint8 -> (C, S, 3S + 2) uint8: the D | H | W panels, 1 px apart (a cube, S = D)."""
    if view not in VOLUME_VIEWS:
        raise MedMNISTLabError(f"unknown volume view '{view}'; choose one of: {', '.join(VOLUME_VIEWS)}")
    if volume.ndim != 4:
        raise MedMNISTLabError(f"a volume to draw must be (C, D, H, W), got shape {tuple(volume.shape)}")
    _, d, h, w = volume.shape
    if view == "slices":
        panels = [volume[:, d // 2], volume[:, :, h // 2], volume[:, :, :, w // 2]]
    else:
        panels = [volume.amax(dim=k) for k in (1, 2, 3)]
    gap = torch.full_like(panels[0][..., :1], _GAP)
    return torch.cat([panels[0], gap, panels[1], gap, panels[2]], dim=-1)


def volume_rows(rows: Sequence[Sequence[torch.Tensor]], view: str) -> list[list[torch.Tensor]]:
    """Rows of volumes (C, D, H, W) -> rows of their panel images, for `grid_image`."""
    return [[volume_panels(v, view) for v in row] for row in rows]


def _cell(img: torch.Tensor, cell: int) -> Image.Image:
    arr = img.detach().cpu().numpy()  # (C, H, W) uint8
    arr = arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0))
    pil = Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")
    # Nearest keeps the pixels honest: 28 px images are shown as they are, only bigger.
    # A cell is `cell` px high; a wide image (a volume's panels) keeps its aspect ratio.
    return pil.resize((_cell_width(img, cell), cell), Image.NEAREST)


def _cell_width(img: torch.Tensor, cell: int) -> int:
    return round(cell * img.shape[-1] / img.shape[-2])


def grid_image(
    rows: Sequence[Sequence[torch.Tensor]],
    row_labels: Sequence[str],
    cell: int = 64,
    pad: int = 2,
    label_width: int = 150,
    title: str | None = None,
) -> Image.Image:
    """Draw rows of (C, H, W) uint8 images with a text label at the left of each row, and an
    optional title line above (e.g. what the panels of a volume are)."""
    n_cols = max((len(r) for r in rows), default=0)
    if not rows or n_cols == 0:
        raise MedMNISTLabError("nothing to draw: no images were selected")
    cell_w = max(_cell_width(img, cell) for row in rows for img in row)
    top = 16 if title else 0
    width = label_width + n_cols * (cell_w + pad) + pad
    height = top + len(rows) * (cell + pad) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    if title:
        draw.text((4, 2), title, fill=(0, 0, 0), font=font)
    for r, (row, label) in enumerate(zip(rows, row_labels, strict=True)):
        y = top + pad + r * (cell + pad)
        draw.text((4, y + cell // 2 - 6), label[:24], fill=(0, 0, 0), font=font)
        for c, img in enumerate(row):
            canvas.paste(_cell(img, cell), (label_width + pad + c * (cell_w + pad), y))
    return canvas


def save_image(image: Image.Image, out: str | Path) -> Path:
    out = Path(out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise MedMNISTLabError(f"output '{out}' must end in .png, .jpg or .jpeg")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        image.save(tmp, format="PNG" if out.suffix.lower() == ".png" else "JPEG")
    return out


def class_rows(
    images: torch.Tensor,
    labels: torch.Tensor,
    label_names: Sequence[str],
    multilabel: bool,
    per_row: int,
    seed: int = 0,
) -> tuple[list[list[torch.Tensor]], list[str]]:
    """Pick `per_row` images (or volumes) per class (single-label) or per finding (multi-label)."""
    gen = np.random.default_rng(seed)
    rows, names = [], []
    for k, name in enumerate(label_names):
        hits = torch.nonzero(labels[:, k] == 1 if multilabel else labels[:, 0] == k).flatten().numpy()
        if len(hits) == 0:
            continue
        pick = gen.choice(hits, size=min(per_row, len(hits)), replace=False)
        rows.append([images[i] for i in sorted(pick)])
        names.append(f"{k}: {name}")
    return rows, names
