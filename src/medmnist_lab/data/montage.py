"""Labelled image grids, to look at data (real, augmented or synthetic)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.outputs import atomic_path


def _cell(img: torch.Tensor, cell: int) -> Image.Image:
    arr = img.detach().cpu().numpy()  # (C, H, W) uint8
    arr = arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0))
    pil = Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")
    # Nearest keeps the pixels honest: 28 px images are shown as they are, only bigger.
    return pil.resize((cell, cell), Image.NEAREST)


def grid_image(
    rows: Sequence[Sequence[torch.Tensor]],
    row_labels: Sequence[str],
    cell: int = 64,
    pad: int = 2,
    label_width: int = 150,
) -> Image.Image:
    """Draw rows of (C, H, W) uint8 images with a text label at the left of each row."""
    n_cols = max((len(r) for r in rows), default=0)
    if not rows or n_cols == 0:
        raise MedMNISTLabError("nothing to draw: no images were selected")
    width = label_width + n_cols * (cell + pad) + pad
    height = len(rows) * (cell + pad) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for r, (row, label) in enumerate(zip(rows, row_labels, strict=True)):
        y = pad + r * (cell + pad)
        draw.text((4, y + cell // 2 - 6), label[:24], fill=(0, 0, 0), font=font)
        for c, img in enumerate(row):
            canvas.paste(_cell(img, cell), (label_width + pad + c * (cell + pad), y))
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
    """Pick `per_row` images per class (single-label) or per finding (multi-label)."""
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
