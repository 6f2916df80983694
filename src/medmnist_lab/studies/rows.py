"""The record a results store hands to tables and reports: one finished (or failed) cell.

Kept free of torch and of the engine, so tables and reports read results without importing the
training stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ResultRow:
    """One run as the store holds it.

    config: the resolved RunConfig as a plain dict (dataset, size, model, recipe, augment,
    synthetic, seed, lr, ...). metrics: split -> {"auc": float, "acc": float, ...extras}.
    """

    hash: str
    config: dict[str, Any]
    status: str  # "done" | "failed" | "running" | "pending" | "pruned"
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_dir: str | None = None
    study: str | None = None
    seconds: float | None = None  # wall time of the run (training and final scoring)

    def value(self, split: str, metric: str) -> float | None:
        v = self.metrics.get(split, {}).get(metric)
        return None if v is None else float(v)


def canon(value: Any) -> str:
    """A hashable, order-independent form of a config value (configs hold lists and dicts)."""
    return json.dumps(value, sort_keys=True, default=str)


def show_value(value: Any) -> str:
    """A config value as tables and reports print it: strings bare, None as "none", lists and
    dicts in their canonical JSON form. The one rendering for the CLI's tables and the HTML report."""
    if isinstance(value, str):
        return value
    return "none" if value is None else canon(value) if isinstance(value, list | dict) else str(value)
