"""A checkpoint's calibration record (`calibration.json`, written by `medmnist-lab calibrate`):
reading it, checking that it belongs to the checkpoint, and what it says in one line.

Lives in the engine (not in deploy, where `calibrate` fits it) because `evaluate` uses it: the
engine never imports deploy. The application itself (scaling logits, building prediction sets
from the stored thresholds) is array math in `metrics.reliability` and `metrics.conformal`.

A record is used when it exists beside the checkpoint, unless the caller passes
`use_calibration=False` (the commands' `--uncalibrated`). A record fitted for another checkpoint
(config hash or file SHA-256 differ) or a damaged one is refused with one line, never ignored.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medmnist_lab.engine.checkpoint import load_checkpoint
from medmnist_lab.engine.config import cell_hash
from medmnist_lab.errors import CheckpointError, MedMNISTLabError
from medmnist_lab.metrics.conformal import sets_from_thresholds
from medmnist_lab.metrics.reliability import Scaling

CALIBRATION_FILE = "calibration.json"
FORMAT = "medmnist-lab/calibration/1"


def default_path(checkpoint: str | Path) -> Path:
    return Path(checkpoint).with_name(CALIBRATION_FILE)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_identity(checkpoint: Path, state: dict[str, Any]) -> dict[str, str]:
    return {"checkpoint": checkpoint.name, "config_hash": cell_hash(state["config"]), "sha256": file_sha256(checkpoint)}


def read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MedMNISTLabError(f"{path} is not a readable calibration record ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise MedMNISTLabError(f"{path} is not a calibration record (format {FORMAT!r} expected)")
    return record


def mismatch(record: dict[str, Any], identity: dict[str, str]) -> str | None:
    """Why `record` is not the calibration of the checkpoint with `identity`, or None."""
    if record.get("config_hash") != identity["config_hash"]:
        return (
            f"it was fitted for a checkpoint of another run ({record.get('checkpoint')}, config hash "
            f"{record.get('config_hash')}; this checkpoint's is {identity['config_hash']})"
        )
    if record.get("checkpoint_sha256") != identity["sha256"]:
        return (
            f"it was fitted for other weights of this run ({record.get('checkpoint')}, SHA-256 "
            f"{str(record.get('checkpoint_sha256'))[:12]}…; {identity['checkpoint']} is {identity['sha256'][:12]}…)"
        )
    return None


def _scaling(record: dict[str, Any], path: Path) -> Scaling:
    try:
        scaling = Scaling.from_dict(record["parameters"])
        values = scaling.weight + scaling.bias
    except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError) as exc:
        raise MedMNISTLabError(
            f"{path} is a damaged calibration record (its parameters cannot be read: {type(exc).__name__} {exc}); "
            "refit it with `medmnist-lab calibrate CHECKPOINT --overwrite`"
        ) from None
    if not values or not all(math.isfinite(v) for v in values):
        raise MedMNISTLabError(
            f"{path} is a damaged calibration record (non-finite or empty parameters); refit it with "
            "`medmnist-lab calibrate CHECKPOINT --overwrite`"
        )
    return scaling


def load_calibration(
    checkpoint: str | Path, path: str | Path | None = None, state: dict[str, Any] | None = None
) -> tuple[dict[str, Any], Scaling]:
    """The calibration record of `checkpoint` (default: calibration.json beside it) and its scaling;
    a record fitted for another checkpoint (config hash or file hash differ) is refused."""
    checkpoint = Path(checkpoint)
    path = Path(path) if path is not None else default_path(checkpoint)
    if not path.is_file():
        raise MedMNISTLabError(f"{path} does not exist; fit one with `medmnist-lab calibrate {checkpoint}`")
    record = read_record(path)
    why = mismatch(record, checkpoint_identity(checkpoint, state if state is not None else load_checkpoint(checkpoint)))
    if why is not None:
        raise CheckpointError(
            f"calibration {path} does not belong to {checkpoint}: {why}; "
            f"refit with `medmnist-lab calibrate {checkpoint}`, or pass --uncalibrated"
        )
    return record, _scaling(record, path)


@dataclass(frozen=True)
class Calibration:
    """A calibration in use: its scaling and, when it has one, its conformal part."""

    scaling: Scaling
    conformal: dict[str, Any] | None = None  # alpha, score, mondrian, quantiles (None: infinite), seed
    file: str = ""

    def apply(self, logits: Any) -> Any:
        """Calibrated logits (float64 tensor)."""
        return self.scaling.apply(logits)

    def sets(self, probs: np.ndarray, label_names: Sequence[str], u: np.ndarray | None = None) -> np.ndarray | None:
        """Prediction sets (N, K) booleans of calibrated `probs` by the stored thresholds, or None
        without a conformal calibration. APS/RAPS use `u`, by default drawn from the record's seed
        for the images in order (`predict` draws one stream over all its batches, the same numbers)."""
        if not self.conformal:
            return None
        c = self.conformal
        quantiles = {k: (math.inf if v is None else float(v)) for k, v in c["quantiles"].items()}
        if c["score"] == "lac":
            u = np.zeros(len(probs))
        elif u is None:
            u = np.random.default_rng(int(c.get("seed", 0))).random(len(probs))
        return sets_from_thresholds(probs, c["score"], quantiles, label_names, u)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"used": True, **self.scaling.to_dict(), "file": self.file}
        if self.conformal:
            out["conformal"] = {k: self.conformal[k] for k in ("alpha", "score", "mondrian", "quantiles", "seed")}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """The inverse of `to_dict` (an exported model's metadata)."""
        return cls(Scaling.from_dict(data), data.get("conformal"), data.get("file", ""))

    def describe(self) -> str:
        s = self.scaling
        if s.method == "temperature":
            what = "temperature scaling, T = " + ", ".join(f"{t:.4g}" for t in s.temperature)
        else:
            what = (
                "vector scaling, weight " + ", ".join(f"{w:.4g}" for w in s.weight)
                + "; bias " + ", ".join(f"{b:.4g}" for b in s.bias)
            )  # fmt: skip
        if self.conformal:
            c = self.conformal
            what += f"; {c['score'].upper()} prediction sets at ALPHA {c['alpha']:g}" + (
                " (Mondrian)" if c.get("mondrian") else ""
            )
        return f"calibration: {what}, from {self.file} (--uncalibrated for the raw model)"


UNCALIBRATED_LINE = "calibration: off (--uncalibrated): the raw model's probabilities"


def no_calibration_line(checkpoint: str | Path) -> str:
    return (
        f"calibration: none ({default_path(checkpoint)} does not exist; fit one with "
        f"`medmnist-lab calibrate {checkpoint}`): the raw model's probabilities"
    )


def off_record(uncalibrated: bool) -> dict[str, Any]:
    """What a result records when no calibration was applied."""
    return {"used": False, "why": "--uncalibrated" if uncalibrated else f"no {CALIBRATION_FILE}"}


def find_calibration(
    checkpoint: str | Path, use_calibration: bool = True, state: dict[str, Any] | None = None
) -> Calibration | None:
    """The calibration beside `checkpoint` when it exists and `use_calibration`; None otherwise.
    A record of another checkpoint, or a damaged one, is refused (one line)."""
    path = default_path(checkpoint)
    if not use_calibration or not path.exists():
        return None
    record, scaling = load_calibration(checkpoint, path, state)
    conformal = record.get("conformal")
    if conformal is not None:
        if not isinstance(conformal, dict) or not all(k in conformal for k in ("alpha", "score", "quantiles")):
            raise MedMNISTLabError(f"{path} is a damaged calibration record (its conformal part is incomplete)")
        conformal = {"mondrian": False, "seed": 0, **conformal}
    return Calibration(scaling, conformal, str(path))


def describe(calibration: Calibration | None, checkpoint: str | Path, uncalibrated: bool) -> str:
    """The one line the commands print about the calibration they used."""
    if calibration is not None:
        return calibration.describe()
    return UNCALIBRATED_LINE if uncalibrated else no_calibration_line(checkpoint)
