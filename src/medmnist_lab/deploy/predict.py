"""`predict_files`: a model applied to image files, folders and npz files (a 3D model: volume files
and folders of DICOM slices, deploy/volumes.py), with every failure listed.

Inputs stream through in batches, so a folder of a million PNG files needs memory for one batch.
A file that cannot be used is recorded with its reason and skipped; the others are predicted.

With a calibration (the predictor's: calibration.json beside a checkpoint, or folded into an ONNX
export) the probabilities are the calibrated ones and every row says so (`calibration`); with a
conformal calibration each image also gets its prediction set (the label names, `|`-joined in CSV;
an empty set is empty). `abstain_below` P marks the images whose top probability is below P
(multi-label: whose least sure label, max(p, 1 - p), is).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medmnist_lab.deploy.images import Item, read_inputs
from medmnist_lab.deploy.predictor import Predictor
from medmnist_lab.deploy.volumes import read_volumes
from medmnist_lab.engine.calibration import off_record
from medmnist_lab.errors import MedMNISTLabError

THRESHOLD = 0.5  # multi-label: a label is predicted at or above this probability


@dataclass
class Prediction:
    path: str
    probabilities: list[float]
    prediction: str  # the label name; multi-label: the names at or above THRESHOLD, "; "-joined
    note: str = ""
    prediction_set: list[str] | None = None  # conformal calibration only
    abstain: bool | None = None  # with abstain_below only


@dataclass
class PredictionReport:
    label_names: list[str]
    predictions: list[Prediction] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    calibration: dict[str, Any] = field(default_factory=lambda: off_record(False))
    with_sets: bool = False
    abstain_below: float | None = None

    @property
    def calibration_label(self) -> str:
        """The calibration in a few words, for the CSV's `calibration` column."""
        c = self.calibration
        if not c.get("used"):
            return "off (--uncalibrated)" if c.get("why") == "--uncalibrated" else "none"
        if c["method"] == "temperature":
            return "temperature " + " ".join(f"{t:.6g}" for t in c["temperature"])
        return "vector"

    def to_dict(self, model: dict[str, Any]) -> dict[str, Any]:
        def row(p: Prediction) -> dict[str, Any]:
            out: dict[str, Any] = {
                "path": p.path,
                "prediction": p.prediction,
                "probabilities": dict(zip(self.label_names, p.probabilities, strict=True)),
            }
            if self.with_sets:
                out["prediction_set"] = p.prediction_set
            if self.abstain_below is not None:
                out["abstain"] = p.abstain
            out["note"] = p.note
            return out

        return {
            "model": model,
            "calibration": self.calibration,
            "abstain_below": self.abstain_below,
            "predictions": [row(p) for p in self.predictions],
            "failed": [{"path": path, "reason": why} for path, why in self.failed],
        }

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        extra = (["prediction_set"] if self.with_sets else []) + (["abstain"] if self.abstain_below is not None else [])
        writer.writerow(
            ["path", "prediction", *(f"p[{name}]" for name in self.label_names), *extra, "calibration", "note"]
        )
        label = self.calibration_label
        for p in self.predictions:
            cells = (["|".join(p.prediction_set or [])] if self.with_sets else []) + (
                ["true" if p.abstain else "false"] if self.abstain_below is not None else []
            )
            writer.writerow([p.path, p.prediction, *(f"{v:.6f}" for v in p.probabilities), *cells, label, p.note])
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


def check_abstain(value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and 0.0 < value < 1.0):
        raise MedMNISTLabError(f"--abstain-below {value}: must lie strictly between 0 and 1 (e.g. 0.8)")
    return float(value)


def top_confidence(probs: np.ndarray, multilabel: bool) -> np.ndarray:
    """(N,) the top class probability; multi-label: the least sure label's max(p, 1 - p)."""
    p = np.asarray(probs, dtype=np.float64)
    if multilabel:
        return np.maximum(p, 1 - p).min(axis=1)
    return p.max(axis=1)


def predict_files(
    predictor: Predictor,
    inputs: Sequence[str | os.PathLike[str]],
    *,
    tta: bool = False,
    batch_size: int = 256,
    on_batch: Callable[[list[Item], np.ndarray], None] | None = None,
    abstain_below: float | None = None,
    uncalibrated: bool = False,
) -> PredictionReport:
    """Predict every readable input; `on_batch(items, probabilities)` sees each batch (explanations,
    progress). The predictor's calibration, if any, gives the probabilities and the sets (see the
    module); `uncalibrated` only says, in the report, that one was switched off."""
    info = predictor.info
    cal = predictor.calibration
    if abstain_below is not None:
        check_abstain(abstain_below)
    report = PredictionReport(
        list(info.label_names),
        calibration=cal.to_dict() if cal is not None else off_record(uncalibrated),
        with_sets=cal is not None and cal.conformal is not None,
        abstain_below=abstain_below,
    )
    conformal = cal.conformal if cal is not None else None
    # APS/RAPS: one stream of u over all images in input order (as `Calibration.sets` on them all).
    rng = np.random.default_rng(int(conformal.get("seed", 0))) if conformal and conformal["score"] != "lac" else None
    read = read_volumes if info.spatial_dims == 3 else read_inputs
    for batch in batched(read(inputs, info.input_spec), batch_size, report):
        images = np.stack([item.pixels for item in batch])
        probs = predictor.probabilities(images, tta=tta, batch_size=batch_size)
        sets = None
        if cal is not None and conformal:
            sets = cal.sets(probs, info.label_names, rng.random(len(batch)) if rng is not None else None)
        sure = top_confidence(probs, info.multilabel)
        for i, (item, p) in enumerate(zip(batch, probs, strict=True)):
            report.predictions.append(
                Prediction(
                    item.name,
                    [float(v) for v in p],
                    label_of(p, info.label_names, info.multilabel),
                    item.note,
                    None if sets is None else [n for n, keep in zip(info.label_names, sets[i], strict=True) if keep],
                    bool(sure[i] < abstain_below) if abstain_below is not None else None,
                )
            )
        if on_batch is not None:
            on_batch(batch, probs)
    return report


def write_report(report: PredictionReport, out: Path, model: dict[str, Any]) -> None:
    from medmnist_lab.outputs import atomic_path

    text = json.dumps(report.to_dict(model), indent=2) if out.suffix.lower() == ".json" else report.to_csv()
    with atomic_path(out) as tmp:
        tmp.write_text(text)
