"""Training engine: recipes, fit(), evaluate(), checkpoints.

Exports are lazy (`medmnist_lab.lazy`): importing `engine.config` (the recipes, for `train --help`)
needs no torch; building a RunConfig does (its validation reads the schedule registry).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medmnist_lab.lazy import lazy_exports

if TYPE_CHECKING:
    from medmnist_lab.engine.config import RECIPES, RunConfig, resolve_config
    from medmnist_lab.engine.scoring import EnsembleResult, EvalResult, evaluate, evaluate_ensemble, load_model
    from medmnist_lab.engine.train import RunResult, Session, build_session, fit, train_step

_EXPORTS = {
    "EnsembleResult": "medmnist_lab.engine.scoring",
    "EvalResult": "medmnist_lab.engine.scoring",
    "evaluate": "medmnist_lab.engine.scoring",
    "evaluate_ensemble": "medmnist_lab.engine.scoring",
    "load_model": "medmnist_lab.engine.scoring",
    "RECIPES": "medmnist_lab.engine.config",
    "RunConfig": "medmnist_lab.engine.config",
    "resolve_config": "medmnist_lab.engine.config",
    "RunResult": "medmnist_lab.engine.train",
    "fit": "medmnist_lab.engine.train",
    "Session": "medmnist_lab.engine.train",
    "build_session": "medmnist_lab.engine.train",
    "train_step": "medmnist_lab.engine.train",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = [
    "RECIPES",
    "EnsembleResult",
    "EvalResult",
    "RunConfig",
    "RunResult",
    "Session",
    "build_session",
    "evaluate",
    "evaluate_ensemble",
    "fit",
    "load_model",
    "resolve_config",
    "train_step",
]
