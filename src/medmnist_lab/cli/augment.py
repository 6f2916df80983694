"""`medmnist-lab augment ...`: list, preview, expand."""

from __future__ import annotations

import argparse
from pathlib import Path

from medmnist_lab.cli.common import (
    add_alias,
    add_command,
    add_group,
    add_overwrite,
    add_root,
    add_size,
    cell_pixels,
    given,
    output_path,
    positive_int,
    seed_int,
)
from medmnist_lab.data.registry import SIZES, SPLITS, get_dataset
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.outputs import IMAGE_SUFFIXES

SPEC_HELP = (
    "policy spec: one image policy, optionally joined with '+' to mixup and/or cutmix "
    "(e.g. simple, autoaugment-imagenet+mixup); see `medmnist-lab augment list`"
)
SET_HELP = (
    "override a magnitude, NAME=VALUE, repeatable (e.g. --augment-set rotate=30 --augment-set fill=0,0,0); "
    "`augment list -v` shows the names, defaults and valid ranges"
)


def add_augment_set(parser: argparse.ArgumentParser) -> None:
    """`--augment-set NAME=VALUE` (the spelling of `train`), and `--set`, its old spelling here."""
    parser.add_argument("--augment-set", action="append", default=[], metavar="NAME=VALUE", help=SET_HELP)
    add_alias(parser, "--set", dest="augment_set", use="--augment-set", metavar="NAME=VALUE", append=True)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def cmd_list(args: argparse.Namespace) -> int:
    from medmnist_lab.augment import POLICIES

    if not args.verbose and (unused := given(args, "size", "channels")):
        raise MedMNISTLabError(f"{' and '.join(unused)} only apply with -v (they set the defaults -v shows)")
    args.size, args.channels = args.size or 28, args.channels or 1
    rows = [["name", "kind", "what it does"]]
    rows += [[n, POLICIES.get(n).kind, POLICIES.get(n).summary] for n in POLICIES]
    print(_table(rows))
    print("\ncombine one image policy, medmnist-c and mixup and/or cutmix using '+', e.g. simple+mixup")
    if args.verbose:
        for n in POLICIES:
            params = POLICIES.get(n).params
            if not params:
                continue
            print(f"\n{n} (defaults at {args.size} px, {args.channels} channel(s)):")
            rows = [["  name", "default", "valid", "meaning"]]
            for p in params:
                default = p.default_for(args.size, args.channels)
                rows.append([f"  {p.name}", str(default), p.describe_range(args.size), p.help])
            print(_table(rows))
    return 0


def _row_label(index: int, labels, info) -> str:
    if info.is_multilabel:
        found = [str(k) for k in labels.nonzero().flatten().tolist()]
        return f"#{index} [{','.join(found) or '-'}]"
    k = int(labels[0])
    name = info.label_names[k]
    return f"#{index} class {k}" if name == str(k) else f"#{index} {k}: {name}"


def cmd_preview(args: argparse.Namespace) -> int:
    from medmnist_lab.augment import build_augment, parse_magnitudes
    from medmnist_lab.augment.preview import preview_rows
    from medmnist_lab.data.arrays import load_split
    from medmnist_lab.data.montage import grid_image, save_image, volume_rows

    info = get_dataset(args.name)
    output_path(args.output, args, IMAGE_SUFFIXES)
    data = load_split(info, args.split, args.size, args.root)
    aug = build_augment(
        args.policy,
        args.size,
        int(data.images.shape[1]),
        dataset=info.flag,
        spatial_dims=info.spatial_dims,
        **parse_magnitudes(args.augment_set),
    )
    if args.n > len(data):
        raise MedMNISTLabError(f"--n {args.n} is more than the {len(data)} images of {info.flag} {args.split}")
    rows, pick = preview_rows(data, aug, args.n, args.copies, args.seed)
    if info.is_3d:  # each volume drawn as its middle slices on the three axes
        rows = volume_rows(rows, "slices")
    names = [_row_label(int(i), data.labels[int(i)], info) for i in pick]
    path = save_image(grid_image(rows, names, cell=args.cell), args.output)
    what = "volumes (middle slices on the D | H | W axes)" if info.is_3d else "images"
    print(
        f"wrote {path}: {len(rows)} {info.flag} {args.split} {what} at {args.size} px (first "
        f"column) and {args.copies} '{aug.spec}' versions of each"
    )
    return 0


def cmd_expand(args: argparse.Namespace) -> int:
    from medmnist_lab.augment import parse_magnitudes
    from medmnist_lab.augment.expand import expand_dataset

    output_path(args.output, args, (".npz",))
    path = expand_dataset(
        args.name,
        args.policy,
        args.factor,
        args.output,
        size=args.size,
        root=args.root,
        seed=args.seed,
        **parse_magnitudes(args.augment_set),
    )
    print(
        f"wrote {path}: train = originals + {args.factor} '{args.policy}' copies of each; "
        f"val/test copied unchanged. Train on it with `medmnist-lab train {args.name} --train-npz {path}`"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    _, group = add_group(sub, "augment", "list augmentation policies, preview them, expand a training split offline")

    p = add_command(
        group,
        "list",
        "augmentation policies with one-line descriptions",
        epilog="examples:\n  medmnist-lab augment list\n  medmnist-lab augment list -v --size 64 --channels 3",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="also list each policy's magnitudes")
    p.add_argument("--size", type=int, choices=SIZES, default=None, help="image size of the defaults -v shows (28)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None, help="channels of the defaults -v shows (1)")
    p.set_defaults(func=cmd_list)

    p = add_command(
        group,
        "preview",
        "save a grid: original images in the first column, augmented versions beside them",
        description=(
            "Save a grid of N images of a split (first column) and COPIES augmented versions of\n"
            "each, drawn with per-sample randomness as in training: a look before a long run."
        ),
        epilog=(
            "examples:\n"
            "  medmnist-lab augment preview breastmnist --policy simple -o simple.png\n"
            "  medmnist-lab augment preview retinamnist --policy randaugment --augment-set magnitude=15 -o ra.png"
        ),
    )
    p.add_argument("name", help="dataset flag, e.g. retinamnist")
    p.add_argument("--policy", required=True, help=SPEC_HELP)
    p.add_argument("-o", "--output", type=Path, required=True, help="output .png")
    p.add_argument("--n", type=positive_int, default=8, help="number of original images (rows)")
    p.add_argument("--copies", type=positive_int, default=7, help="augmented versions per image (columns)")
    p.add_argument("--split", choices=SPLITS, default="train", help="split to draw the images from")
    add_size(p)
    p.add_argument("--cell", type=cell_pixels, default=64, help="pixels per image in the grid, 16..512")
    p.add_argument("--seed", type=seed_int, default=0, help="picks the images and the augmentations")
    add_augment_set(p)
    add_overwrite(p)
    add_root(p)
    p.set_defaults(func=cmd_preview)

    p = add_command(
        group,
        "expand",
        "write an npz whose train split is every original plus K augmented copies of each",
        description=(
            "Offline augmentation done right: the new train split keeps every original image\n"
            "unchanged and adds FACTOR augmented copies of each, with their labels; val and test are\n"
            "copied unchanged. The file is written atomically and marked as made by medmnist-lab,\n"
            "so `medmnist-lab train DATASET --train-npz FILE` trains on it and evaluates on the\n"
            "real val/test. Mixup/cutmix need soft labels and are applied online only."
        ),
        epilog=(
            "examples:\n"
            "  medmnist-lab augment expand breastmnist --policy simple --factor 4 -o breast_x4.npz\n"
            "  medmnist-lab train breastmnist --train-npz breast_x4.npz"
        ),
    )
    p.add_argument("name", help="dataset flag, e.g. breastmnist")
    p.add_argument("--policy", required=True, help="image policy (no mixup/cutmix): " + SPEC_HELP)
    p.add_argument("--factor", type=positive_int, required=True, help="augmented copies per original image (K)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .npz")
    add_size(p)
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the augmentations")
    add_augment_set(p)
    add_overwrite(p)
    add_root(p)
    p.set_defaults(func=cmd_expand)
