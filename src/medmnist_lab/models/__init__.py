"""Classifier models: a registry, `create_model()`, ResNet-18/50 and the optional timm family."""

from medmnist_lab.models import resnet, timm_models  # noqa: F401  (registers the entries)
from medmnist_lab.models.registry import MODEL_FAMILIES, MODELS, create_model, list_models
from medmnist_lab.models.resnet import ResNet

__all__ = ["MODELS", "MODEL_FAMILIES", "ResNet", "create_model", "list_models"]
