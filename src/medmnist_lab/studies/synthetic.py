"""Named synthetic-data sources for study cells: `synthetic: gan-balanced[:epochs=N:width=W:mode=M]`.

A cell names how its synthetic data is made, not a file path, so its hash says what the data is
and the study can make it: a conditional DCGAN (300 epochs, seed 0, as in benchmarks/
synthetic_study.sh) is trained once per (dataset, size, GAN settings) into the study folder, and
its class-balancing samples (`gan sample --balance`) are written beside it. Cells of the same
dataset share them; a file lock makes concurrent workers take turns, the first one trains, the
others reuse its files. The training run then records the npz path in its config.
"""

from __future__ import annotations

import dataclasses
import fcntl
from pathlib import Path
from typing import Any

from medmnist_lab.errors import MedMNISTLabError

PREFIX = "gan-balanced"
DEFAULTS: dict[str, Any] = {"epochs": 300, "width": 64, "mode": "conditional", "seed": 0}


def is_named(value: str | None) -> bool:
    return value is not None and (value == PREFIX or value.startswith(PREFIX + ":"))


def parse(value: str) -> dict[str, Any]:
    """`gan-balanced:epochs=2:width=4` -> GAN settings over DEFAULTS."""
    settings = dict(DEFAULTS)
    for part in value.split(":")[1:]:
        key, sep, text = part.partition("=")
        if not sep or key not in DEFAULTS:
            raise MedMNISTLabError(
                f"synthetic {value!r}: '{part}' is not KEY=VALUE with KEY one of {', '.join(DEFAULTS)}"
            )
        try:
            settings[key] = type(DEFAULTS[key])(text)
        except ValueError:
            raise MedMNISTLabError(f"synthetic {value!r}: {key}={text!r} is not a valid value") from None
    return settings


def resolve(config: Any, study_dir: Path) -> Any:
    """The config with a named source replaced by the npz path (made here when missing)."""
    if not is_named(config.synthetic):
        return config
    s = parse(config.synthetic)
    tag = f"{config.dataset}_{config.size}-{s['mode']}-w{s['width']}-e{s['epochs']}-s{s['seed']}"
    folder = study_dir / "synthetic"
    folder.mkdir(parents=True, exist_ok=True)
    npz = folder / f"{tag}-balanced.npz"
    with open(folder / f".{tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker makes the data; the others wait, then reuse it
        if not npz.is_file():
            _make(config, s, folder / f"gan-{tag}", npz)
    return dataclasses.replace(config, synthetic=str(npz))


def _make(config: Any, s: dict[str, Any], gan_dir: Path, npz: Path) -> None:
    from medmnist_lab.engine.runfolder import RunFolder, RunState
    from medmnist_lab.gan import GANConfig, sample_to_npz, train_gan

    gan = GANConfig(
        config.dataset,
        mode=s["mode"],
        size=config.size,
        epochs=s["epochs"],
        width=s["width"],
        seed=s["seed"],
        out=str(gan_dir),
        root=config.root,
        device=config.device,
    )
    # The run folder lifecycle decides: a finished GAN is reused, an interrupted one resumed, one
    # killed before its first checkpoint started again in place (by train_gan), a new one trained.
    state = RunFolder(gan_dir).state()
    if state is not RunState.FINISHED:
        train_gan(gan, resume=state is RunState.INTERRUPTED, progress=False)
    # written atomically (outputs.atomic_path, inside): a kill leaves no half file
    sample_to_npz(gan_dir / "last.pt", npz, balance=True, seed=s["seed"], device=config.device)
