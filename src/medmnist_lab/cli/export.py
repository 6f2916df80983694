"""`medmnist-lab export`: a checkpoint as one self-describing ONNX or TorchScript file."""

from __future__ import annotations

import argparse
from pathlib import Path

from medmnist_lab.cli.common import HelpFormatter, add_overwrite, output_path


def cmd_export(args: argparse.Namespace) -> int:
    from medmnist_lab.deploy.export import SUFFIXES, default_output, export_model
    from medmnist_lab.engine.calibration import Calibration, describe

    out = args.output or default_output(args.checkpoint, args.format)
    output_path(out, args, (SUFFIXES[args.format],))
    path, info = export_model(args.checkpoint, args.format, out, use_calibration=not args.uncalibrated)
    calibration = Calibration.from_dict(info.calibration) if info.calibration is not None else None
    print(describe(calibration, args.checkpoint, args.uncalibrated))
    kind = f"{info.size}^3 volumes" if info.spatial_dims == 3 else f"{info.size} px"
    shape = ", ".join(map(str, info.input_shape))
    print(
        f"wrote {path}: {info.dataset} {kind}, {info.channels} channel(s), {len(info.label_names)} "
        f"classes; input float32 (N, {shape}) {'voxel' if info.spatial_dims == 3 else 'pixel'} values 0..255, "
        f"output {'calibrated ' if calibration else ''}probabilities"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX or TorchScript, with its metadata inside",
        description=(
            "Write a checkpoint as one self-describing file: the graph takes float32 pixel values 0..255\n"
            "(N, C, S, S; any N; a 3D model: volumes N, C, S, S, S), normalises them as in training and\n"
            "returns probabilities. Label names, image size, channels, mean/std, task, dataset, the run's\n"
            "metrics and its config hash are stored in it (ONNX metadata_props / a TorchScript extra file,\n"
            "key 'medmnist_lab', JSON).\n\n"
            "A calibration.json beside the checkpoint (`medmnist-lab calibrate`) is folded into the graph\n"
            "(its scaling applied to the logits; the metadata records it and any conformal thresholds);\n"
            "--uncalibrated exports the raw model."
        ),
        epilog=(
            "examples:\n"
            "  medmnist-lab export runs/breastmnist_28/resnet18/NAME/best.pt --format onnx\n"
            "  medmnist-lab export best.pt --format torchscript -o deploy/breast.pt\n"
            "  medmnist-lab export best.pt --format onnx --uncalibrated -o raw.onnx   # ignore calibration.json\n"
            "  medmnist-lab predict runs/breastmnist_28/resnet18/NAME/best.onnx scans/   # use the export\n"
            "  medmnist-lab export runs/adrenalmnist3d_28/resnet18/NAME/best.pt --format onnx   # a 3D model"
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("checkpoint", type=Path, help="best.pt or last.pt of a run")
    p.add_argument("--format", choices=("onnx", "torchscript"), required=True, help="file format")
    p.add_argument(
        "-o", "--output", type=Path, default=None, help="default: beside the checkpoint (.onnx / .torchscript.pt)"
    )
    p.add_argument(
        "--uncalibrated",
        action="store_true",
        help="export the raw model even when calibration.json (from `medmnist-lab calibrate`) is beside it",
    )
    add_overwrite(p)
    p.set_defaults(func=cmd_export)
