"""Classifier models: a registry, `create_model()`, ResNet-18/50 (2D, or converted to 3D by
`create_volumetric_model()`) and the optional timm family.

Exports are lazy (`medmnist_lab.lazy`); the registry is filled by importing `models.zoo` (the
ResNet and timm entries) on first use of MODELS or create_model. `models.registry` alone holds
an empty registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medmnist_lab.lazy import lazy_exports

if TYPE_CHECKING:
    from medmnist_lab.models.registry import MODEL_FAMILIES, MODELS, create_model, list_models
    from medmnist_lab.models.resnet import ResNet
    from medmnist_lab.models.volumetric import CONVERSIONS, create_volumetric_model

_EXPORTS = {
    "MODELS": "medmnist_lab.models.zoo",
    "MODEL_FAMILIES": "medmnist_lab.models.zoo",
    "create_model": "medmnist_lab.models.zoo",
    "list_models": "medmnist_lab.models.zoo",
    "ResNet": "medmnist_lab.models.resnet",
    "CONVERSIONS": "medmnist_lab.models.volumetric",
    "create_volumetric_model": "medmnist_lab.models.volumetric",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = [
    "CONVERSIONS",
    "MODELS",
    "MODEL_FAMILIES",
    "ResNet",
    "create_model",
    "create_volumetric_model",
    "list_models",
]
