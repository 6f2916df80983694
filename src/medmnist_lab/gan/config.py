"""`GANConfig`: the settings of one GAN run, frozen and validated once, when it is built.

Names are made canonical there (dataset flag, mode, loss), so the config written to config.yaml,
to the checkpoint and to summary.json is the one that ran, and a resumed run compares like with
like. How a run is driven (resume, progress bar) is not part of it: those are arguments of
`train_gan`. Change a field with `dataclasses.replace`, which validates again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medmnist_lab.data.registry import get_dataset
from medmnist_lab.engine.config import PRECISIONS
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.gan.modes import LOSSES, GANSpec, make_spec
from medmnist_lab.records import check_fields


@dataclass(frozen=True)
class GANConfig:
    dataset: str
    mode: str = "conditional"
    size: int = 28
    epochs: int = 100
    batch_size: int = 64
    width: int = 64
    nz: int = 100
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    loss: str = "bce"
    seed: int = 0
    sample_every: int = 10
    checkpoint_every: int = 5
    out: str | None = None
    root: str | None = None
    device: str = "auto"
    # Training precision, auto|fp32|bf16|fp16 as for classifiers (the engine's resolve_precision),
    # but fp32 by default: see train.py. `amp` is its older spelling, kept so that configs written
    # before `precision` existed read back as the same run (`from_dict`); new configs leave it None.
    precision: str = "fp32"
    amp: bool | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "sample_every", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise MedMNISTLabError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not self.lr > 0:
            raise MedMNISTLabError(f"lr must be positive, got {self.lr}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise MedMNISTLabError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.precision not in PRECISIONS:
            raise MedMNISTLabError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.amp is not None and self.precision != "auto":
            raise MedMNISTLabError(f"give precision only (amp={self.amp!r} is its older spelling: off = fp32)")
        info = get_dataset(self.dataset)
        if info.is_3d:
            raise MedMNISTLabError(
                f"the DCGAN generates 2D images; {info.flag} holds 3D volumes (no volume GAN here: "
                "augment volumes online with --augment volume)"
            )
        spec = make_spec(info, self.mode, self.size, self.nz, self.width)  # multi-label, size, nz, width
        canonical = {
            "dataset": info.flag,
            "mode": spec.mode,
            "loss": LOSSES.canonical(self.loss),
            "out": None if self.out is None else str(self.out),  # a Path would not go into YAML
            "root": None if self.root is None else str(self.root),
        }
        for name, value in canonical.items():
            object.__setattr__(self, name, value)  # frozen afterwards

    def spec(self) -> GANSpec:
        """The nets this config builds."""
        return make_spec(get_dataset(self.dataset, warn_alias=False), self.mode, self.size, self.nz, self.width)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GANConfig:
        fields = check_fields(cls, data, "GAN config")
        if "precision" not in fields and "amp" in fields:
            # Written before `precision`: amp False (their default) was fp32, None the engine's
            # choice, True mixed precision even where auto would not use it (kept as amp=True).
            amp = fields.pop("amp")
            fields["precision"] = "fp32" if amp is False else "auto"
            fields["amp"] = True if amp is True else None
        return cls(**fields)


# Fields that may change when a run is resumed (more epochs, another folder, another device);
# all others must match the checkpoint, or the resumed run would be a different experiment. The
# check itself is the engine's one resumability check (`engine.runfolder.check_resume`).
RESUMABLE_CHANGES = ("epochs", "sample_every", "checkpoint_every", "out", "root", "device")


def default_run_dir(cfg: GANConfig) -> Path:
    return Path("runs") / "gan" / f"{cfg.dataset}-{cfg.size}px-{cfg.mode}-seed{cfg.seed}"
