"""Training engine: recipes, fit(), evaluate(), checkpoints."""

from medmnist_lab.engine.api import EvalResult, evaluate, load_model
from medmnist_lab.engine.config import RECIPES, RunConfig, resolve_config
from medmnist_lab.engine.train import RunResult, fit

__all__ = [
    "RECIPES",
    "EvalResult",
    "RunConfig",
    "RunResult",
    "evaluate",
    "fit",
    "load_model",
    "resolve_config",
]
