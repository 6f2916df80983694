"""`medmnist-lab export`: a checkpoint as one self-describing ONNX or TorchScript file."""

from __future__ import annotations

import argparse
from pathlib import Path

from medmnist_lab.cli.common import HelpFormatter, add_overwrite, output_path


def cmd_export(args: argparse.Namespace) -> int:
    from medmnist_lab.deploy.export import SUFFIXES, default_output, export_model

    out = args.output or default_output(args.checkpoint, args.format)
    output_path(out, args, (SUFFIXES[args.format],))
    path, info = export_model(args.checkpoint, args.format, out)
    print(
        f"wrote {path}: {info.dataset} {info.size} px, {info.channels} channel(s), {len(info.label_names)} "
        f"classes; input float32 (N, {info.channels}, {info.size}, {info.size}) pixel values 0..255, "
        "output probabilities"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX or TorchScript, with its metadata inside",
        description=(
            "Write a checkpoint as one self-describing file: the graph takes float32 pixel values 0..255\n"
            "(N, C, S, S; any N), normalises them as in training and returns probabilities. Label names,\n"
            "image size, channels, mean/std, task, dataset, the run's metrics and its config hash are stored\n"
            "in it (ONNX metadata_props / a TorchScript extra file, key 'medmnist_lab', JSON)."
        ),
        epilog=(
            "examples:\n"
            "  medmnist-lab export runs/breastmnist_28/resnet18/NAME/best.pt --format onnx\n"
            "  medmnist-lab export best.pt --format torchscript -o deploy/breast.pt\n"
            "  medmnist-lab predict runs/breastmnist_28/resnet18/NAME/best.onnx scans/   # use the export"
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("checkpoint", type=Path, help="best.pt or last.pt of a run")
    p.add_argument("--format", choices=("onnx", "torchscript"), required=True, help="file format")
    p.add_argument(
        "-o", "--output", type=Path, default=None, help="default: beside the checkpoint (.onnx / .torchscript.pt)"
    )
    add_overwrite(p)
    p.set_defaults(func=cmd_export)
