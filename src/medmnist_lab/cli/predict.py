"""`medmnist-lab predict`: apply a trained model (checkpoint or ONNX export) to image or volume files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medmnist_lab.cli.common import HelpFormatter, add_overwrite, add_precision, output_path, positive_int

PREDICT_EPILOG = """\
inputs:
  PNG, JPEG, TIFF, BMP files (8 or 16 bit; grayscale, RGB, RGBA, palette, CMYK), folders (searched
  recursively for those, .dcm and .npz files), npz files of the official layout (every split's
  images, named FILE.npz#split/index), and DICOM files with the dicom extra (pydicom).
  Each image is converted as the model's training data was: 8-bit, its dataset's channel count,
  resized to the model's size with antialiased bicubic if it is not already that size, then
  normalised with the mean/std stored in the model. See docs/deploy.md.
  3D models take volumes: .npy (D, H, W) or stacks (N, D, H, W), .npz (official layout or arrays),
  NIfTI .nii/.nii.gz (nifti extra: nibabel), and folders of DICOM slices (one series, one volume
  per folder; sorted along the slice normal). uint8 volumes are used as they are, others mapped
  from their min..max onto 0..255; resampled trilinearly to the model's size^3. See docs/deploy.md
  (Volumes).

output:
  one row per image: path, predicted label (multi-label: every label at or above 0.5), the
  probability of every class, the calibration used, and a note on any conversion. CSV (default;
  to stdout without -o) or JSON (-o FILE.json). Unreadable files are listed on stderr with the
  reason and skipped.

calibration:
  a calibration.json beside the checkpoint (`medmnist-lab calibrate`; an .onnx export carries it
  inside) makes the probabilities the calibrated ones; one line on stderr says which, and
  --uncalibrated switches it off. With a conformal calibration (`calibrate --conformal ALPHA`)
  each row also has its prediction set (prediction_set: label names joined by |, empty for an
  empty set). --abstain-below P adds an abstain column: true where the top probability is below P.
  See docs/trust.md.

exit code: 0 every input predicted, 1 some inputs could not be read (the rest are written),
  2 a usage error (bad model, no inputs, an output that exists).

examples:
  medmnist-lab predict runs/breastmnist_28/resnet18/NAME/best.pt scans/ -o predictions.csv
  medmnist-lab predict best.onnx image.png --tta
  medmnist-lab predict best.pt scans/ --explain cams/      # Grad-CAM overlays (explain extra)
  medmnist-lab predict best.pt scans/ --abstain-below 0.8  # flag images the model is unsure of
  medmnist-lab predict best.pt scans/ --uncalibrated       # ignore calibration.json
  medmnist-lab predict runs/adrenalmnist3d_28/resnet18/NAME/best.pt ct.nii.gz series/ vols.npy
"""


def default_batch_size(spatial_dims: int, size: int) -> int:
    """256 images; volumes scaled by voxel count from 32 at 28^3 (a 64^3 batch of 32 through a
    width-64 3D ResNet would need tens of GB for its activations)."""
    return 256 if spatial_dims == 2 else max(1, int(32 * (28 / size) ** 3))


def cmd_predict(args: argparse.Namespace) -> int:
    from medmnist_lab.deploy.predict import check_abstain, predict_files, write_report
    from medmnist_lab.deploy.predictor import Predictor, TorchPredictor
    from medmnist_lab.engine.calibration import describe
    from medmnist_lab.errors import MedMNISTLabError
    from medmnist_lab.outputs import check_output_dir

    if args.abstain_below is not None:
        check_abstain(args.abstain_below)

    if args.output is not None:
        output_path(args.output, args, (".csv", ".json"))
        if args.format is not None:
            raise MedMNISTLabError("--format chooses what goes to stdout; with -o the file's suffix (.csv/.json) does")
    if args.explain is not None:
        check_output_dir(args.explain, what="--explain")
    if args.device is not None and args.checkpoint.suffix.lower() == ".onnx":
        raise MedMNISTLabError("--device applies to PyTorch checkpoints; .onnx models run on the CPU here")
    predictor = Predictor.load(args.checkpoint, args.device or "cpu", args.precision, not args.uncalibrated)
    on_batch = None
    if args.explain is not None:
        if predictor.info.spatial_dims != 2:
            raise MedMNISTLabError("--explain draws Grad-CAM overlays on 2D images; it does not apply to a 3D model")
        if not isinstance(predictor, TorchPredictor):
            raise MedMNISTLabError("--explain needs a PyTorch checkpoint (.pt), not an exported .onnx file")
        from medmnist_lab.deploy.explain import Explainer

        args.explain.mkdir(parents=True, exist_ok=True)
        on_batch = Explainer(predictor, args.explain)
    report = predict_files(
        predictor,
        args.inputs,
        tta=args.tta,
        batch_size=args.batch_size or default_batch_size(predictor.info.spatial_dims, predictor.info.size),
        on_batch=on_batch,
        abstain_below=args.abstain_below,
        uncalibrated=args.uncalibrated,
    )
    for path, why in report.failed:
        print(f"skipped {path}: {why}", file=sys.stderr)
    if not report.predictions and not report.failed:
        found = ", ".join(map(str, args.inputs))
        what = "volume" if predictor.info.spatial_dims == 3 else "image, DICOM or npz"
        raise MedMNISTLabError(f"no {what} files found in {found}; see `medmnist-lab predict --help`")
    model = {k: v for k, v in predictor.info.to_dict().items() if k != "config"}
    model["source"] = str(args.checkpoint)
    if args.output is None:
        text = report.to_csv() if args.format != "json" else json.dumps(report.to_dict(model), indent=2) + "\n"
        sys.stdout.write(text)
    else:
        write_report(report, args.output, model)
    print(describe(predictor.calibration, args.checkpoint, args.uncalibrated), file=sys.stderr)
    where = f" -> {args.output}" if args.output else ""
    cams = f"; Grad-CAM overlays in {args.explain}" if args.explain else ""
    unit = "volume(s)" if predictor.info.spatial_dims == 3 else "image(s)"
    print(f"predicted {len(report.predictions)} {unit}, {len(report.failed)} skipped{where}{cams}", file=sys.stderr)
    return 1 if report.failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="apply a trained model to image files, folders or npz files (3D models: volumes)",
        description="Predict the class of each image with a checkpoint (best.pt) or an exported .onnx model.",
        epilog=PREDICT_EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("checkpoint", type=Path, metavar="MODEL", help="best.pt/last.pt of a run, or an exported .onnx")
    p.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help="image files, folders or .npz files (3D models: volume files, DICOM series folders)",
    )
    p.add_argument("-o", "--output", type=Path, default=None, help="write .csv or .json here (default: CSV to stdout)")
    p.add_argument("--format", choices=("csv", "json"), default=None, help="stdout format without -o (default csv)")
    p.add_argument(
        "--tta",
        action="store_true",
        help="add each image's horizontal mirror (logits averaged, as `evaluate --tta`; a --tta run has it already)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="inputs per forward pass (default 256 images; volumes: 32 at 28^3, 2 at 64^3)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda or mps (PyTorch checkpoints; default cpu)")
    p.add_argument("--explain", type=Path, default=None, metavar="DIR", help="write a Grad-CAM overlay per image here")
    p.add_argument(
        "--uncalibrated",
        action="store_true",
        help="the raw model's probabilities even when calibration.json (`medmnist-lab calibrate`) is beside it",
    )
    p.add_argument(
        "--abstain-below",
        type=float,
        default=None,
        metavar="P",
        help="add an abstain column: true for images whose top probability is below P (0 < P < 1)",
    )
    add_precision(p, training=False)
    add_overwrite(p)
    p.set_defaults(func=cmd_predict)
