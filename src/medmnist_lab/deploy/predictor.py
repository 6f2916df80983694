"""A trained model as a function from uint8 images to class probabilities: a checkpoint (PyTorch)
or an exported .onnx file (ONNX Runtime), with the same preprocessing and the same scores.

A checkpoint runs through the engine's own `predict` and `scores_from_logits`, so probabilities
are exactly those of `evaluate`. An ONNX file holds the normalisation and the softmax/sigmoid in its
graph (see export.py) and its metadata says which dataset, labels, size and channels it expects.
`tta=True` averages the probabilities of each image and its horizontal mirror.
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
from medmnist_lab.engine.config import cell_hash
from medmnist_lab.errors import CheckpointError, MedMNISTLabError
from medmnist_lab.metrics.official import MULTI_LABEL

METADATA_KEY = "medmnist_lab"  # the ONNX metadata_props key / TorchScript extra file holding ModelInfo


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

    @property
    def multilabel(self) -> bool:
        return self.task == MULTI_LABEL

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(self.dataset, self.size, self.source_channels, self.as_rgb)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def info_from_checkpoint(state: dict[str, Any], path: Path) -> ModelInfo:
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
    )


def run_metrics(run_dir: Path) -> dict[str, Any]:
    """Val/test AUC and ACC from the run's summary.json, if it is there and readable."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        return {s: {k: summary["metrics"][s][k] for k in ("auc", "acc")} for s in ("val", "test")}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


class Predictor:
    """Probabilities (N, K) float64 for uint8 images (N, C, S, S)."""

    info: ModelInfo

    @staticmethod
    def load(path: str | os.PathLike[str], device: str = "cpu", precision: str = "fp32") -> Predictor:
        """A checkpoint's or an ONNX file's predictor; a checkpoint runs in `precision` (default fp32,
        as `evaluate`: the same probabilities on every CPU and as its ONNX export)."""
        path = Path(path)
        if path.suffix.lower() == ".onnx":
            if precision != "fp32":
                raise MedMNISTLabError(
                    f"--precision {precision} is for PyTorch checkpoints; an .onnx model runs in fp32"
                )
            return OnnxPredictor(path)
        return TorchPredictor(path, device, precision)

    def probabilities(self, images: np.ndarray, tta: bool = False, batch_size: int = 256) -> np.ndarray:
        probs = self._run(images, batch_size)
        if tta:  # the mirror image: a flip that keeps every MedMNIST label meaningful
            probs = (probs + self._run(np.ascontiguousarray(images[..., ::-1]), batch_size)) / 2
        return probs

    def _run(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        raise NotImplementedError


class TorchPredictor(Predictor):
    def __init__(self, path: Path, device: str = "cpu", precision: str = "fp32") -> None:
        from dataclasses import replace

        from medmnist_lab.engine.config import RunConfig
        from medmnist_lab.engine.device import resolve_device, scoring_precision
        from medmnist_lab.engine.scoring import load_model

        self.model, state = load_model(path, device)
        self.info = info_from_checkpoint(state, path)
        self.device = resolve_device(device)
        self.config = replace(RunConfig.from_dict(state["config"]), device=str(self.device))
        self.precision = scoring_precision(self.device, precision, self.config)
        self.dataset = get_dataset(self.info.dataset, warn_alias=False)

    def _run(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        from dataclasses import replace

        from medmnist_lab.engine.inference import predict
        from medmnist_lab.metrics.official import scores_from_logits

        data = SplitData(
            info=self.dataset,
            split="predict",
            size=self.info.size,
            images=torch.from_numpy(images),
            labels=torch.zeros(len(images), 1, dtype=torch.int64),
            source=Path("<predict>"),
        )
        config = replace(self.config, eval_batch_size=batch_size)
        logits = predict(self.model, data, config, self.device, self.precision, channels_last=False)
        return scores_from_logits(logits, self.info.task)


class OnnxPredictor(Predictor):
    def __init__(self, path: Path) -> None:
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
        self.input_name = self.session.get_inputs()[0].name

    def _run(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        out = [
            self.session.run(None, {self.input_name: images[i : i + batch_size].astype(np.float32)})[0]
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, len(self.info.label_names)))
