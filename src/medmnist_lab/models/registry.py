"""Model registry and `create_model()`, in the style of timm's `register_model`/`create_model`.

Every entry is a function `(in_channels, num_classes, image_size, **kw) -> nn.Module` whose
module exposes `forward_features(x) -> (B, D)` and `feature_dim`. A name `family:sub` (for
example `timm:convnext_tiny`) goes to a family builder instead, which receives `sub` first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.registry import Registry

ModelFn = Callable[..., nn.Module]

MODELS: Registry[ModelFn] = Registry("model")
MODEL_FAMILIES: Registry[ModelFn] = Registry("model family")

register = MODELS.register


def create_model(name: str, in_channels: int, num_classes: int, image_size: int, **kw: Any) -> nn.Module:
    """Build the model `name` (case-insensitive) for inputs (B, in_channels, size, size)."""
    for what, value in (
        ("in_channels", in_channels),
        ("num_classes", num_classes),
        ("image_size", image_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MedMNISTLabError(f"{what} must be a positive integer, got {value!r}")
    family, sep, sub = name.partition(":")
    if sep:
        if not sub:
            raise MedMNISTLabError(f"model '{name}' names no model after '{family}:'")
        return MODEL_FAMILIES.get(family)(sub, in_channels, num_classes, image_size, **kw)
    return MODELS.get(name)(in_channels, num_classes, image_size, **kw)


def list_models() -> list[str]:
    """Registered names, plus one `family:<name>` pattern per family."""
    return sorted(MODELS.names()) + [f"{f}:<name>" for f in sorted(MODEL_FAMILIES.names())]
