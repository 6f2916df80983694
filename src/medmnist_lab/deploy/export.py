"""`export`: a checkpoint as a self-describing ONNX or TorchScript file.

The exported graph is the whole inference path: input float32 (N, C, S, S), or (N, C, S, S, S)
for a 3D model, holding the pixel values 0..255 (the uint8 images or volumes as floats; any batch
size, the spatial size fixed at the model's), normalised inside exactly as the
training engine does (x / 255 - mean) / std, then the network, then softmax (single-label) or
sigmoid (multi-label, and one-logit binary heads): output (N, K) probabilities. A run trained with
`tta` has its test-time flip in the graph, by the engine's own `flip_logits` (the logits of the
image and of its mirror averaged, then scored). An ONNX graph has a second output, `logits`, the
(N, K) logits the probabilities are computed from, which lets `predict --tta` add the mirror to a
model trained without it by that same rule (TorchScript keeps its one output). What the model is
(`ModelInfo`: dataset, task, label names, size, channels, mean/std, the run's metrics, config and
its hash) goes inside the file: ONNX `metadata_props` / a TorchScript extra file, both under the
key `medmnist_lab`, as JSON.

A checkpoint with a calibration.json beside it (`medmnist-lab calibrate`) is exported calibrated
unless `use_calibration=False` (`export --uncalibrated`): its scaling (w * logits + b; temperature:
w = 1 / T, b = 0) is applied to the logits inside the graph, after the flips (the scaling is
linear, so flipping before or after it is the same), so both outputs are calibrated, and the
metadata's `calibration` holds the method, its parameters and any conformal thresholds.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from medmnist_lab.deploy.predictor import LOGITS_OUTPUT, METADATA_KEY, ModelInfo, info_from_checkpoint
from medmnist_lab.engine.calibration import Calibration, find_calibration
from medmnist_lab.engine.inference import flip_logits
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.outputs import atomic_path

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}


class Deployable(nn.Module):
    """Pixels 0..255 -> probabilities (and, with `with_logits`, the logits they come from), with the
    engine's normalisation, test-time flips and score function."""

    def __init__(
        self, model: nn.Module, info: ModelInfo, with_logits: bool = False, calibration: Calibration | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.scale = 1.0 / (255.0 * info.std)  # the batcher's x * scale + shift
        self.shift = -info.mean / info.std
        self.sigmoid = info.multilabel or len(info.label_names) == 1
        self.tta = info.trained_with_flips  # a model trained with tta is scored with it, as in evaluate
        self.with_logits = with_logits
        self.calibrated = calibration is not None
        scaling = calibration.scaling if calibration is not None else None
        self.register_buffer("cal_weight", torch.tensor(scaling.weight if scaling else (1.0,), dtype=torch.float32))
        self.register_buffer("cal_bias", torch.tensor(scaling.bias if scaling else (0.0,), dtype=torch.float32))

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = images * self.scale + self.shift
        logits = flip_logits(self.model, x, self.tta)
        if self.calibrated:
            logits = logits * self.cal_weight + self.cal_bias
        probs = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, dim=1)
        return (probs, logits) if self.with_logits else probs


def default_output(checkpoint: Path, fmt: str) -> Path:
    return checkpoint.with_name(f"{checkpoint.stem}.{'onnx' if fmt == 'onnx' else 'torchscript.pt'}")


def export_model(
    checkpoint: str | os.PathLike[str], fmt: str, out: str | os.PathLike[str], use_calibration: bool = True
) -> tuple[Path, ModelInfo]:
    """Write `checkpoint` as `fmt` to `out` (atomically), calibrated by the calibration.json beside it
    unless `use_calibration` is False; returns the file and what it holds (`info.calibration`)."""
    from medmnist_lab.engine.scoring import load_model

    if fmt not in FORMATS:
        raise MedMNISTLabError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    checkpoint, out = Path(checkpoint), Path(out)
    model, state = load_model(checkpoint, "cpu")
    calibration = find_calibration(checkpoint, use_calibration, state)
    info = info_from_checkpoint(state, checkpoint, calibration)
    wrapper = Deployable(model, info, with_logits=fmt == "onnx", calibration=calibration).eval()
    example = torch.full((2, *info.input_shape), 127.0)
    meta = json.dumps(info.to_dict())
    with atomic_path(out) as tmp:
        if fmt == "onnx":
            _export_onnx(wrapper, example, tmp, meta)
        else:
            with torch.no_grad(), warnings.catch_warnings():
                # torch.jit is deprecated upstream in favour of torch.export; the file format still
                # loads everywhere TorchScript does, which is why it is offered (ONNX is preferred).
                warnings.simplefilter("ignore", FutureWarning)
                # acsconv's layers branch on the volume's spatial shape in Python: the trace keeps the
                # branch of the model's own size, the only size the graph takes (the batch stays free).
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                traced = torch.jit.trace(wrapper, example)
                torch.jit.save(traced, str(tmp), _extra_files={f"{METADATA_KEY}.json": meta})
    return out, info


def _export_onnx(wrapper: nn.Module, example: torch.Tensor, path: Path, meta: str) -> None:
    try:
        import onnx
    except ImportError:
        raise MedMNISTLabError("ONNX export needs the onnx extra: pip install 'medmnist-lab[onnx]'") from None
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        wrapper,
        (example,),
        input_names=["images"],
        output_names=["probabilities", LOGITS_OUTPUT],
        dynamic_shapes={"images": {0: batch}},
        dynamo=True,
        verbose=False,
    )
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def read_torchscript_info(path: str | os.PathLike[str]) -> ModelInfo:
    files = {f"{METADATA_KEY}.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    return ModelInfo.from_dict(json.loads(files[f"{METADATA_KEY}.json"]))
