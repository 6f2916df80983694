"""`medmnist-lab datasets ...`: list, info, download, verify, montage."""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

from medmnist_lab.cli.common import (
    add_command,
    add_group,
    add_overwrite,
    add_root,
    add_size,
    cell_pixels,
    output_path,
    positive_int,
    seed_int,
)
from medmnist_lab.data.paths import resolve_root
from medmnist_lab.data.registry import CITATION, SIZES, SPLITS, DatasetInfo, get_dataset, list_datasets
from medmnist_lab.errors import DataFileError
from medmnist_lab.outputs import IMAGE_SUFFIXES


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    root = resolve_root(args.root)
    rows = [["name", "dim", "task", "ch", "classes", "train", "val", "test", "local sizes"]]
    for info in list_datasets():
        local = [str(s) for s in info.sizes if (root / info.filename(s)).is_file()]
        rows.append(
            [
                info.flag,
                f"{info.spatial_dims}D",
                info.task,
                str(info.n_channels),
                str(info.n_classes),
                *(str(info.n_samples[s]) for s in SPLITS),
                ",".join(local) or "-",
            ]
        )
    print(_table(rows))
    print(
        f"\nroot: {root}   sizes: {', '.join(map(str, SIZES))} (3D: 28, 64)   "
        "v1 aliases: organmnist_axial/coronal/sagittal"
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    info = get_dataset(args.name)
    info.check_size(args.size)  # before printing anything: 3D datasets have 28 and 64 only
    root = resolve_root(args.root)
    kind = f"3D volumes (D x H x W = {args.size}^3)" if info.is_3d else "2D images"
    print(
        f"{info.flag} ({info.python_class}): {kind}, {info.task}, {info.n_channels} channel(s), "
        f"{info.n_classes} classes"
    )
    print(f"\n{info.description}\n")
    print(f"license: {info.license}")
    print(f"sizes: {', '.join(map(str, info.sizes))}; file at {args.size} px: {root / info.filename(args.size)}")
    # Every size of a dataset holds the same images in the same splits (MedMNIST+ resized them), so
    # the class counts of any local size are those of every size.
    local = [root / info.filename(s) for s in (args.size, *info.sizes) if (root / info.filename(s)).is_file()]
    path = local[0] if local else root / info.filename(args.size)
    counts: dict[str, list[int]] = {}
    if path.is_file():
        try:
            with np.load(path) as arrays:  # labels only (a few kB), read without torch
                for split in SPLITS:
                    labels = arrays[f"{split}_labels"]
                    col = labels.sum(0) if info.is_multilabel else np.bincount(labels[:, 0], minlength=info.n_classes)
                    counts[split] = [int(v) for v in col]
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise DataFileError(
                f"{path} is not a readable {info.flag} file ({type(exc).__name__}: {exc}); "
                f"`medmnist-lab datasets verify {info.flag}` checks it, `datasets download {info.flag}` replaces it"
            ) from None
    header = ["label", "name", *(f"{s} (n={info.n_samples[s]})" for s in SPLITS)]
    rows = [header]
    for k, name in enumerate(info.label_names):
        rows.append([str(k), name, *(str(counts[s][k]) if counts else "?" for s in SPLITS)])
    print(_table(rows))
    if not counts:
        print(f"(class counts need a local file of any size; run `medmnist-lab datasets download {info.flag}`)")
    elif path != root / info.filename(args.size):
        print(f"(class counts read from {path.name}: the splits are the same at every size)")
    if info.is_multilabel:
        print("(multi-label: counts are positives per finding)")
    print(f"\ncite: {CITATION}")
    return 0


def _sizes(info: DatasetInfo, text: str) -> list[int]:
    """`all` means every size of that dataset (3D datasets have 28 and 64 only)."""
    return list(info.sizes) if text == "all" else [int(text)]


def cmd_download(args: argparse.Namespace) -> int:
    from medmnist_lab.data.download import download

    root = resolve_root(args.root)
    mirror = args.mirror  # None: download() falls back to $MEDMNIST_MIRROR, then the official URL
    infos = [get_dataset(n) for n in args.names]
    for info in infos:
        for size in _sizes(info, args.size):
            info.check_size(size)
            path = download(info, size, root, mirror=mirror, force=args.force)
            print(f"ok  {info.flag} {size}px  {path}")
    return 0


class NothingToVerify(DataFileError):
    exit_code = 1  # as a bad file: a check that checked nothing has not passed


def cmd_verify(args: argparse.Namespace) -> int:
    from medmnist_lab.data.verify import verify_file

    root = resolve_root(args.root)
    infos = [get_dataset(n) for n in args.names] if args.names else list_datasets()
    if not root.is_dir():
        raise NothingToVerify(
            f"data root {root} does not exist; download into it with "
            f"`medmnist-lab datasets download {infos[0].flag if args.names else 'NAME'} --root {root}`"
        )
    absent = []
    bad = checked = 0
    for info in infos:
        if args.names and not any((root / info.filename(size)).exists() for size in info.sizes):
            absent.append(info)
        for size in info.sizes:
            path = root / info.filename(size)
            if not path.exists():
                if args.names:  # asked for by name: a missing size is a line (no size at all: an error)
                    print(f"missing  {info.flag} {size}px  {path}")
                continue
            checked += 1
            result = verify_file(info, size, path, deep=not args.quick)
            print(
                f"{result.status:<8} {info.flag} {size}px  {path}"
                + ("" if result.ok else f"\n         {result.message}")
            )
            bad += not result.ok
    if checked:
        print(f"\n{checked - bad} valid, {bad} bad")
    elif not args.names:
        raise NothingToVerify(
            f"no MedMNIST files found under {root}; download some with `medmnist-lab datasets download NAME`"
        )
    if absent:
        names = " ".join(i.flag for i in absent)
        raise NothingToVerify(
            f"no local file of {', '.join(i.flag for i in absent)} under {root} (e.g. {absent[0].filename(28)}); "
            f"download with `medmnist-lab datasets download {names}" + (f" --root {root}`" if args.root else "`")
        )
    return 1 if bad else 0


def cmd_montage(args: argparse.Namespace) -> int:
    from medmnist_lab.data.arrays import load_split
    from medmnist_lab.data.montage import VOLUME_VIEWS, class_rows, grid_image, save_image, volume_rows

    info = get_dataset(args.name)
    if args.view is not None and not info.is_3d:
        raise DataFileError(f"--view draws volumes; {info.flag} is a 2D dataset (its images are drawn as they are)")
    output_path(args.output, args, IMAGE_SUFFIXES)
    data = load_split(info, args.split, args.size, args.root)
    rows, names = class_rows(data.images, data.labels, info.label_names, info.is_multilabel, args.per_class, args.seed)
    title, what, pad = None, "images", 2
    if info.is_3d:
        view = args.view or "slices"
        rows = volume_rows(rows, view)
        title = f"{info.flag} {args.split} {args.size}^3, each volume: {VOLUME_VIEWS[view]}, D | H | W"
        what, pad = f"volumes as {view}", 10  # wider gaps between volumes than between their panels
    out = save_image(grid_image(rows, names, cell=args.cell, pad=pad, title=title), args.output)
    print(f"wrote {out} ({len(rows)} rows x up to {args.per_class} {what}, {info.flag} {args.split} {args.size}px)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    _, group = add_group(sub, "datasets", "list, inspect, download, verify and look at MedMNIST datasets")

    p = add_command(
        group,
        "list",
        "table of the 18 MedMNIST v2 datasets (12 2D, 6 3D) and which sizes are present locally",
        epilog="examples:\n  medmnist-lab datasets list\n  medmnist-lab datasets list --root /data/medmnist",
    )
    add_root(p)
    p.set_defaults(func=cmd_list)

    p = add_command(
        group,
        "info",
        "label names, class counts per split, license and citation of one dataset",
        epilog="examples:\n  medmnist-lab datasets info breastmnist\n  medmnist-lab datasets info chestmnist --size 64",
    )
    p.add_argument("name", help="dataset flag, e.g. breastmnist")
    add_root(p)
    add_size(p)
    p.set_defaults(func=cmd_info)

    p = add_command(
        group,
        "download",
        "download dataset files, verify their MD5 and move them into place atomically",
        description=(
            "Download from the official record URL, or from a mirror (--mirror URL or $MEDMNIST_MIRROR:\n"
            "a base URL under which the official file names are served). Partial downloads resume,\n"
            "transient failures are retried, and a file whose MD5 does not match is never kept."
        ),
        epilog=(
            "examples:\n"
            "  medmnist-lab datasets download breastmnist retinamnist\n"
            "  medmnist-lab datasets download pathmnist --size all --root /data/medmnist\n"
            "  medmnist-lab datasets download breastmnist --mirror https://mirror.example.org/medmnist/"
        ),
    )
    p.add_argument("names", nargs="+", metavar="NAME", help="dataset flags")
    p.add_argument("--size", default="28", choices=[*map(str, SIZES), "all"], help="image size, or all (3D: 28 and 64)")
    p.add_argument("--mirror", default=None, help="base URL serving the official file names")
    p.add_argument("--force", action="store_true", help="download again even if a valid file exists")
    add_root(p)
    p.set_defaults(func=cmd_download)

    p = add_command(
        group,
        "verify",
        "check local files against the registry (MD5, keys, shapes, labels)",
        description=(
            "Check local files against the registry (MD5, keys, shapes, labels). Exit code 1 if a file\n"
            "is bad, the data root does not exist, no file is found, or a named dataset has no local file."
        ),
        epilog="examples:\n  medmnist-lab datasets verify\n  medmnist-lab datasets verify breastmnist --quick",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="dataset flags (default: every file found)")
    p.add_argument("--quick", action="store_true", help="MD5 only, skip reading the arrays")
    add_root(p)
    p.set_defaults(func=cmd_verify)

    p = add_command(
        group,
        "montage",
        "save a labelled grid of images (or volumes), one row per class",
        description=(
            "Save a labelled grid of images, one row per class (per finding for multi-label).\n"
            "A 3D volume is drawn as three panels side by side, one per axis, D | H | W: with\n"
            "--view slices (default) the middle slice across that axis (volume[D//2], volume[:, H//2],\n"
            "volume[:, :, W//2]), with --view mip the maximum-intensity projection along it. The PNG's\n"
            "title line says which."
        ),
        epilog=(
            "examples:\n"
            "  medmnist-lab datasets montage breastmnist -o breast.png\n"
            "  medmnist-lab datasets montage retinamnist --split test --per-class 12 --size 64 -o figures/retina.png\n"
            "  medmnist-lab datasets montage adrenalmnist3d --view mip --per-class 4 -o adrenal.png"
        ),
    )
    p.add_argument("name", help="dataset flag, e.g. breastmnist")
    p.add_argument("--split", choices=SPLITS, default="train", help="split to draw the images from")
    add_size(p)
    p.add_argument("--per-class", type=positive_int, default=8, help="images per row")
    p.add_argument("--cell", type=cell_pixels, default=64, help="pixels per image (its height) in the grid, 16..512")
    p.add_argument(
        "--view",
        choices=("slices", "mip"),
        default=None,
        help="3D only: middle slices (default) or maximum-intensity projections on the three axes",
    )
    p.add_argument("--seed", type=seed_int, default=0, help="picks the images")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .png or .jpg")
    add_overwrite(p)
    add_root(p)
    p.set_defaults(func=cmd_montage)
