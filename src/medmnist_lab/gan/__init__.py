"""DCGAN synthetic data: train per-class or conditional GANs, sample exact class counts, score them.

`train_gan(GANConfig, resume=..., progress=...)` trains and checkpoints, and writes a
`GANRunSummary`; `sample(checkpoint, per_class=N | balance=True | ratio=R)` draws images;
`sample_to_npz` writes them as a training npz for the engine's `--synthetic`;
`medmnist_lab.gan.quality.evaluate_gan` measures FID, precision/recall and CAS as a `GANQuality`.
"""

from medmnist_lab.gan.config import GANConfig
from medmnist_lab.gan.modes import LOSSES, MODES, GANSpec, build_nets, make_spec
from medmnist_lab.gan.sampling import load_gan, resolve_counts, sample, sample_to_npz, write_synthetic_npz
from medmnist_lab.gan.summaries import GANEpochStats, GANQuality, GANRunSummary
from medmnist_lab.gan.train import GANRunResult, train_gan

__all__ = [
    "LOSSES",
    "MODES",
    "GANConfig",
    "GANEpochStats",
    "GANQuality",
    "GANRunResult",
    "GANRunSummary",
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
