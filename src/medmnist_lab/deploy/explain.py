"""Grad-CAM overlays of the predicted class, drawn with the maintained `grad-cam` package
(`pip install 'medmnist-lab[explain]'`); nothing of the CAM itself is computed here.

The target layer is the last residual block of the built-in ResNets (the last feature map before
global pooling, as in the Grad-CAM paper). Overlays are saved enlarged (nearest neighbour, to at
least DISPLAY px) since a 28 px heat map is unreadable at its own size.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medmnist_lab.deploy.images import Item
from medmnist_lab.deploy.predictor import TorchPredictor
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.outputs import atomic_path

DISPLAY = 224


class Explainer:
    def __init__(self, predictor: TorchPredictor, folder: Path) -> None:
        try:
            from pytorch_grad_cam import GradCAM
        except ImportError:
            raise MedMNISTLabError("--explain needs the explain extra: pip install 'medmnist-lab[explain]'") from None
        model = predictor.model
        if not hasattr(model, "layer4"):
            raise MedMNISTLabError(f"--explain supports the built-in ResNets, not {predictor.config.model}")
        self.predictor, self.folder, self.count = predictor, folder, 0
        self.cam = GradCAM(model=model, target_layers=[model.layer4[-1]])

    def __call__(self, items: list[Item], probs: np.ndarray) -> None:
        from pytorch_grad_cam.utils.image import show_cam_on_image
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        info = self.predictor.info
        pixels = np.stack([item.pixels for item in items])
        x = (torch.from_numpy(pixels).float() / 255 - info.mean) / info.std
        x = x.to(self.predictor.device)
        classes = probs.argmax(1)
        with torch.enable_grad():
            maps = self.cam(input_tensor=x, targets=[ClassifierOutputTarget(int(k)) for k in classes])
        for item, heat, k in zip(items, maps, classes, strict=True):
            image = item.pixels.transpose(1, 2, 0).astype(np.float32) / 255
            if image.shape[2] == 1:
                image = np.repeat(image, 3, axis=2)
            overlay = Image.fromarray(show_cam_on_image(image, heat, use_rgb=True))
            scale = max(1, -(-DISPLAY // overlay.width))
            overlay = overlay.resize((overlay.width * scale, overlay.height * scale), Image.Resampling.NEAREST)
            label = re.sub(r"[^A-Za-z0-9_-]+", "_", info.label_names[int(k)])[:40]
            with atomic_path(self.folder / f"{self.count:06d}_{overlay_stem(item.name)}_{label}.png") as tmp:
                overlay.save(tmp, format="PNG")  # (the temporary name has no .png suffix)
            self.count += 1


def overlay_stem(name: str) -> str:
    """The part of an input's name that goes into its overlay's file name: the file name without its
    suffix (`scan.png` -> `scan`; an npz entry `x.npz#test/3` -> `x_test_3`), so the overlay, a
    .png, ends in one suffix."""
    file, _, entry = name.partition("#")
    stem = "_".join(p for p in (Path(file).stem, entry.replace("/", "_")) if p)
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem)[:80]
