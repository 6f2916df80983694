"""The filled model registry: importing this module registers every built-in model."""

from medmnist_lab.models import resnet, timm_models  # noqa: F401  (registers the entries)
from medmnist_lab.models.registry import MODEL_FAMILIES, MODELS, create_model, list_models

__all__ = ["MODELS", "MODEL_FAMILIES", "create_model", "list_models"]
