"""Training engine: recipes, fit(), evaluate(), checkpoints."""

from medmnist_lab.engine.api import EnsembleResult, EvalResult, evaluate, evaluate_ensemble, load_model
from medmnist_lab.engine.config import RECIPES, RunConfig, resolve_config
from medmnist_lab.engine.train import RunResult, fit

__all__ = [
    "RECIPES",
    "EnsembleResult",
    "EvalResult",
    "RunConfig",
    "RunResult",
    "evaluate",
    "evaluate_ensemble",
    "fit",
    "load_model",
    "resolve_config",
]
