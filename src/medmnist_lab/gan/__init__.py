"""DCGAN synthetic data: train per-class or conditional GANs, sample exact class counts, score them.

`train_gan(GANConfig)` trains and checkpoints; `sample(checkpoint, per_class=N | balance=True |
ratio=R)` draws images; `sample_to_npz` writes them as a training npz for the engine's
`--synthetic`; `medmnist_lab.gan.quality.evaluate_gan` measures FID, precision/recall and CAS.
"""

from medmnist_lab.gan.modes import LOSSES, MODES, GANSpec, build_nets, make_spec
from medmnist_lab.gan.sampling import load_gan, resolve_counts, sample, sample_to_npz, write_synthetic_npz
from medmnist_lab.gan.train import GANConfig, GANRunResult, train_gan

__all__ = [
    "LOSSES",
    "MODES",
    "GANConfig",
    "GANRunResult",
    "GANSpec",
    "build_nets",
    "load_gan",
    "make_spec",
    "resolve_counts",
    "sample",
    "sample_to_npz",
    "train_gan",
    "write_synthetic_npz",
]
