"""`timm:<name>`: any timm model, when the optional `timm` extra is installed."""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import torch
from torch import nn

from medmnist_lab.errors import MedMNISTLabError, UnknownNameError
from medmnist_lab.models.registry import MODEL_FAMILIES

INSTALL_HINT = 'pip install "medmnist-lab[timm]"'


class TimmClassifier(nn.Module):
    """Gives a timm model this project's interface: `forward_features` -> (B, D), `feature_dim`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.feature_dim = int(model.num_features)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # timm's forward_features returns unpooled maps; forward_head(pre_logits=True) pools them.
        feats = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        return torch.flatten(feats, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _import_timm() -> Any:
    try:
        return importlib.import_module("timm")
    except ImportError as e:
        raise MedMNISTLabError(f"timm models need the optional 'timm' package: {INSTALL_HINT}") from e


@MODEL_FAMILIES.register("timm")
def timm_model(name: str, in_channels: int, num_classes: int, image_size: int, **kw: Any) -> TimmClassifier:
    timm = _import_timm()
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise UnknownNameError(f"unknown timm model '{name}'{hint}; see timm.list_models() for the choices")
    # image_size is not passed: convnets ignore it, and for ViTs the user says img_size= in kw.
    model = timm.create_model(name, in_chans=in_channels, num_classes=num_classes, **kw)
    return TimmClassifier(model)
