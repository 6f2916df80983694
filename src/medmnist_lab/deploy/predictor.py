"""A trained model as a function from uint8 images to class probabilities: a checkpoint (PyTorch)
or an exported .onnx file (ONNX Runtime), with the same preprocessing and the same scores.

A checkpoint runs through the engine's own `predict` and `scores_from_logits`, so probabilities
are exactly those of `evaluate`. An ONNX file holds the normalisation and the softmax/sigmoid in its
graph (see export.py) and its metadata says which dataset, labels, size and channels it expects.
`tta=True` adds each image's horizontal mirror by the engine's one rule (`engine.inference.
flip_logits`: the two views' logits averaged, then scored), so `predict --tta` gives the numbers of
`evaluate --tta`. A model whose run trained with `tta` flips already (in `predict`, and inside its
exported graph); asking again runs nothing more: the mirror runs once.

Calibration: a checkpoint's predictor applies the calibration.json beside it (unless
`use_calibration=False`, the commands' `--uncalibrated`) to its logits, as `evaluate` does; an
ONNX export made from a calibrated checkpoint has the scaling folded into its graph and the
calibration (with any conformal thresholds) in its metadata. `calibration` is what was applied,
and `Calibration.sets` turns calibrated probabilities into prediction sets.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medmnist_lab.data.arrays import SplitData
from medmnist_lab.data.registry import get_dataset
from medmnist_lab.deploy.images import InputSpec
from medmnist_lab.engine.calibration import Calibration, find_calibration
from medmnist_lab.engine.config import cell_hash
from medmnist_lab.errors import CheckpointError, MedMNISTLabError
from medmnist_lab.metrics.official import MULTI_LABEL

METADATA_KEY = "medmnist_lab"  # the ONNX metadata_props key / TorchScript extra file holding ModelInfo
LOGITS_OUTPUT = "logits"  # an ONNX export's second output: what its probabilities are computed from


@dataclass(frozen=True)
class ModelInfo:
    """What a deployed model is: enough to prepare its inputs and name its outputs."""

    dataset: str
    task: str
    label_names: list[str]
    size: int
    channels: int  # model input channels
    source_channels: int  # channels of the dataset's images (1 or 3)
    as_rgb: bool
    mean: float
    std: float
    metrics: dict[str, Any] = field(default_factory=dict)  # val/test AUC/ACC of the run, when known
    config_hash: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None  # `Calibration.to_dict()` of the calibration applied, if any
    spatial_dims: int = 2  # 2: images (N, C, S, S); 3: volumes (N, C, S, S, S). Absent in older 2D exports.

    @property
    def multilabel(self) -> bool:
        return self.task == MULTI_LABEL

    @property
    def trained_with_flips(self) -> bool:
        """The run scored with test-time flips (`tta`), so its model includes them wherever it runs."""
        return bool(self.config.get("tta", False))

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(self.dataset, self.size, self.source_channels, self.as_rgb, self.spatial_dims)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One input's shape: (C, S, S), or (C, S, S, S) for a volume model."""
        return (self.channels, *(self.size,) * self.spatial_dims)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def info_from_checkpoint(state: dict[str, Any], path: Path, calibration: Calibration | None = None) -> ModelInfo:
    ds, config = state["dataset"], state["config"]
    info = get_dataset(ds["flag"], warn_alias=False)
    return ModelInfo(
        dataset=ds["flag"],
        task=ds["task"],
        label_names=list(ds["label_names"]),
        size=int(ds["size"]),
        channels=int(ds["n_channels"]),
        source_channels=info.n_channels,
        as_rgb=bool(config.get("as_rgb", False)),
        mean=float(ds["mean"]),
        std=float(ds["std"]),
        metrics=run_metrics(path.parent),
        config_hash=cell_hash(config),
        config=config,
        calibration=calibration.to_dict() if calibration is not None else None,
        spatial_dims=info.spatial_dims,
    )


def run_metrics(run_dir: Path) -> dict[str, Any]:
    """Val/test AUC and ACC from the run's summary.json, if it is there and readable."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        return {s: {k: summary["metrics"][s][k] for k in ("auc", "acc")} for s in ("val", "test")}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


class Predictor:
    """Probabilities (N, K) float64 for uint8 images (N, C, S, S) or volumes (N, C, S, S, S)."""

    info: ModelInfo
    calibration: Calibration | None = None  # applied to the logits (checkpoint) or folded in (ONNX)

    @staticmethod
    def load(
        path: str | os.PathLike[str], device: str = "cpu", precision: str = "fp32", use_calibration: bool = True
    ) -> Predictor:
        """A checkpoint's or an ONNX file's predictor; a checkpoint runs in `precision` (default fp32,
        as `evaluate`: the same probabilities on every CPU and as its ONNX export), calibrated by the
        calibration.json beside it unless `use_calibration` is False."""
        path = Path(path)
        if path.suffix.lower() == ".onnx":
            if precision != "fp32":
                raise MedMNISTLabError(
                    f"--precision {precision} is for PyTorch checkpoints; an .onnx model runs in fp32"
                )
            return OnnxPredictor(path, use_calibration)
        return TorchPredictor(path, device, precision, use_calibration)

    def probabilities(self, images: np.ndarray, tta: bool = False, batch_size: int = 256) -> np.ndarray:
        """`tta`: each image with its horizontal mirror too (see the module's docstring)."""
        raise NotImplementedError


class TorchPredictor(Predictor):
    def __init__(self, path: Path, device: str = "cpu", precision: str = "fp32", use_calibration: bool = True) -> None:
        from dataclasses import replace

        from medmnist_lab.engine.config import RunConfig
        from medmnist_lab.engine.device import resolve_device, scoring_precision
        from medmnist_lab.engine.scoring import load_model

        self.model, state = load_model(path, device)
        self.calibration = find_calibration(path, use_calibration, state)
        self.info = info_from_checkpoint(state, path, self.calibration)
        self.device = resolve_device(device)
        self.config = replace(RunConfig.from_dict(state["config"]), device=str(self.device))
        self.precision = scoring_precision(self.device, precision, self.config)
        self.dataset = get_dataset(self.info.dataset, warn_alias=False)

    def probabilities(self, images: np.ndarray, tta: bool = False, batch_size: int = 256) -> np.ndarray:
        """Exactly `evaluate`'s code path: the engine's `predict` (with its flips when the run trained
        with them or `tta` asks for them, once), then `scores_from_logits`."""
        from dataclasses import replace

        from medmnist_lab.engine.inference import predict, uses_flips
        from medmnist_lab.metrics.official import scores_from_logits

        data = SplitData(
            info=self.dataset,
            split="predict",
            size=self.info.size,
            images=torch.from_numpy(images),
            labels=torch.zeros(len(images), 1, dtype=torch.int64),
            source=Path("<predict>"),
        )
        config = replace(self.config, eval_batch_size=batch_size, tta=uses_flips(self.config.tta, tta))
        logits = predict(self.model, data, config, self.device, self.precision, channels_last=False)
        if self.calibration is not None:
            logits = self.calibration.apply(logits.cpu())
        return scores_from_logits(logits, self.info.task)


class OnnxPredictor(Predictor):
    def __init__(self, path: Path, use_calibration: bool = True) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise MedMNISTLabError(
                "running .onnx models needs the onnx extra: pip install 'medmnist-lab[onnx]'"
            ) from None
        if not path.is_file():
            raise CheckpointError(f"model {path} does not exist")
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for foreign files
            raise CheckpointError(f"{path} is not a loadable ONNX model ({type(exc).__name__}: {exc})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise CheckpointError(f"{path} was not exported by medmnist-lab (no '{METADATA_KEY}' metadata)")
        self.info = ModelInfo.from_dict(json.loads(meta[METADATA_KEY]))
        if self.info.calibration is not None:
            if not use_calibration:
                raise MedMNISTLabError(
                    f"{path} has its calibration folded into the graph, so --uncalibrated cannot apply; export the "
                    "checkpoint again with `medmnist-lab export CHECKPOINT --uncalibrated` for the raw model"
                )
            try:
                self.calibration = Calibration.from_dict(self.info.calibration)
            except (KeyError, TypeError, ValueError, MedMNISTLabError) as exc:
                raise CheckpointError(f"{path} has a damaged calibration in its metadata ({exc})") from None
        self.input_name = self.session.get_inputs()[0].name
        # Exports before the logits output had probabilities only; they still run, without --tta flips.
        self.has_logits = LOGITS_OUTPUT in {o.name for o in self.session.get_outputs()}

    def probabilities(self, images: np.ndarray, tta: bool = False, batch_size: int = 256) -> np.ndarray:
        """The graph's logits scored as `evaluate` scores them (`scores_from_logits`, float64). A graph
        exported from a run trained with `tta` flips inside; for any other `tta` adds the mirror here
        with the engine's `flip_logits`, so either way the mirror runs once, by the one rule."""
        from medmnist_lab.engine.inference import flip_logits
        from medmnist_lab.metrics.official import scores_from_logits

        flip_here = tta and not self.info.trained_with_flips  # a tta run's graph has its mirror already
        n_classes = len(self.info.label_names)
        if not self.has_logits:
            if flip_here:
                raise MedMNISTLabError(
                    "this .onnx file was exported by an older medmnist-lab without a logits output, which "
                    "--tta needs; export the checkpoint again (`medmnist-lab export CHECKPOINT`)"
                )
            out = [self._output(None, images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
            return np.concatenate(out).astype(np.float64) if out else np.zeros((0, n_classes))
        logits = [
            flip_logits(self._logits, torch.from_numpy(images[i : i + batch_size].astype(np.float32)), flip_here)
            for i in range(0, len(images), batch_size)
        ]
        return scores_from_logits(torch.cat(logits), self.info.task) if logits else np.zeros((0, n_classes))

    def _output(self, name: str | None, pixels: np.ndarray) -> np.ndarray:
        """One output of the graph (None: its first, the probabilities) for float32 pixels 0..255."""
        return self.session.run(None if name is None else [name], {self.input_name: pixels.astype(np.float32)})[0]

    def _logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """The graph as a batch -> logits function, for `flip_logits` (pixels 0..255 as float32)."""
        return torch.from_numpy(self._output(LOGITS_OUTPUT, pixels.contiguous().numpy()))
