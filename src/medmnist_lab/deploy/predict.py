"""`predict_files`: a model applied to image files, folders and npz files, with every failure listed.

Inputs stream through in batches, so a folder of a million PNG files needs memory for one batch.
A file that cannot be used is recorded with its reason and skipped; the others are predicted.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medmnist_lab.deploy.images import Item, read_inputs
from medmnist_lab.deploy.predictor import Predictor

THRESHOLD = 0.5  # multi-label: a label is predicted at or above this probability


@dataclass
class Prediction:
    path: str
    probabilities: list[float]
    prediction: str  # the label name; multi-label: the names at or above THRESHOLD, "; "-joined
    note: str = ""


@dataclass
class PredictionReport:
    label_names: list[str]
    predictions: list[Prediction] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def to_dict(self, model: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": model,
            "predictions": [
                {
                    "path": p.path,
                    "prediction": p.prediction,
                    "probabilities": dict(zip(self.label_names, p.probabilities, strict=True)),
                    "note": p.note,
                }
                for p in self.predictions
            ],
            "failed": [{"path": path, "reason": why} for path, why in self.failed],
        }

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["path", "prediction", *(f"p[{name}]" for name in self.label_names), "note"])
        for p in self.predictions:
            writer.writerow([p.path, p.prediction, *(f"{v:.6f}" for v in p.probabilities), p.note])
        return buf.getvalue()


def batched(items: Iterable[Item], size: int, report: PredictionReport) -> Iterable[list[Item]]:
    batch: list[Item] = []
    for item in items:
        if item.error is not None:
            report.failed.append((item.name, item.error))
            continue
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def label_of(probs: np.ndarray, names: Sequence[str], multilabel: bool) -> str:
    if multilabel:
        return "; ".join(n for n, p in zip(names, probs, strict=True) if p >= THRESHOLD)
    return names[int(np.argmax(probs))]


def predict_files(
    predictor: Predictor,
    inputs: Sequence[str | os.PathLike[str]],
    *,
    tta: bool = False,
    batch_size: int = 256,
    on_batch: Callable[[list[Item], np.ndarray], None] | None = None,
) -> PredictionReport:
    """Predict every readable input; `on_batch(items, probabilities)` sees each batch (explanations,
    progress)."""
    info = predictor.info
    report = PredictionReport(list(info.label_names))
    for batch in batched(read_inputs(inputs, info.input_spec), batch_size, report):
        images = np.stack([item.pixels for item in batch])
        probs = predictor.probabilities(images, tta=tta, batch_size=batch_size)
        for item, p in zip(batch, probs, strict=True):
            report.predictions.append(
                Prediction(item.name, [float(v) for v in p], label_of(p, info.label_names, info.multilabel), item.note)
            )
        if on_batch is not None:
            on_batch(batch, probs)
    return report


def write_report(report: PredictionReport, out: Path, model: dict[str, Any]) -> None:
    from medmnist_lab.outputs import atomic_path

    text = json.dumps(report.to_dict(model), indent=2) if out.suffix.lower() == ".json" else report.to_csv()
    with atomic_path(out) as tmp:
        tmp.write_text(text)
