"""Data augmentation: named policies applied to batches on their device, per sample.

    aug = build_augment("simple+mixup", image_size=28, channels=1, rotate=10)
    x = aug.images(x_uint8, generator)          # (B, C, H, W) uint8, same device
    if aug.mixes:
        x, y = aug.mix(x_float, y_onehot, generator)
    run_config["augment"] = aug.describe()

`POLICIES` lists the names (`policy_help()` formats them); `medmnist-lab augment list` shows
them with their magnitudes. Offline expansion lives in `medmnist_lab.augment.expand`.
"""

from medmnist_lab.augment.params import parse_magnitudes
from medmnist_lab.augment.policies import (
    POLICIES,
    BatchAugment,
    PolicyDef,
    build_augment,
    parse_spec,
    policy_help,
)

__all__ = [
    "POLICIES",
    "BatchAugment",
    "PolicyDef",
    "build_augment",
    "parse_magnitudes",
    "parse_spec",
    "policy_help",
]
