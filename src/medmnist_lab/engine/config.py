"""Typed, serializable run configuration and named recipes.

A run is fully described by a `RunConfig`: the resolved config is written as YAML next to every
checkpoint and is enough to rerun the run. A RunConfig is frozen and validated once, when it is
built: names are made canonical there (dataset flag, model, optimizer, schedule, recipe), so two
configs of the same run compare equal and hash alike; change one with `dataclasses.replace`.

Recipes are named presets (a registry of field overrides, and optionally values chosen from the
dataset, such as a batch size that follows the training-set size); the resolution order is
dataclass defaults <- recipe <- the recipe's dataset rule <- explicit overrides. The official
`medmnist-v2` recipe IS the defaults.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.records import check_fields
from medmnist_lab.registry import Registry

if TYPE_CHECKING:
    from medmnist_lab.data.registry import DatasetInfo


# Training precisions (engine.device resolves them to autocast dtypes; stated here, without torch).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class RunConfig:
    dataset: str
    size: int = 28
    root: str | None = None
    # model
    model: str = "resnet18"
    width: int = 64
    stem: str | None = None  # None: chosen from the image size
    conv: str | None = None  # 3D datasets: 2.5d, 3d or acs (models.volumetric; None on 2D, acs by default on 3D)
    # recipe
    recipe: str = "medmnist-v2"
    epochs: int = 100
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "multistep"
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # fractions of epochs
    gamma: float = 0.1
    warmup: int = 0  # epochs of linear warm-up
    label_smoothing: float = 0.0
    ema: float = 0.0  # decay of an exponential moving average of the weights, used for evaluation (0: off)
    tta: bool = False  # evaluate (val selection and test) on each image and its horizontal mirror
    mean: float = 0.5
    std: float = 0.5
    # data
    augment: str = "none"
    augment_params: dict[str, Any] = field(default_factory=dict)  # magnitudes, e.g. {"rotate": 30}
    train_npz: str | None = None  # replaces the training split (e.g. an expanded npz)
    synthetic: str | None = None  # npz of synthetic training samples added to the training split
    synthetic_ratio: float | None = None  # synthetic samples as a fraction of the real train count
    subset: int | None = None  # first n training samples, for quick experiments
    as_rgb: bool = False
    # The official 3D "shape transform" (AdrenalMNIST3D, VesselMNIST3D): training volumes scaled by a
    # random factor in [0, 1), evaluation volumes by 0.5. With std 2 (the recipes' 3D rule) evaluation
    # needs nothing else, so checkpoints, predict and exports stay plain; training multiplies each
    # normalised volume by 2u, u ~ U[0, 1): exactly the official (v / 255) * u.
    shape_transform: bool = False
    # engine
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None  # older switch of precision: None auto, False fp32, True mixed precision
    precision: str = "auto"  # training precision: auto|fp32|bf16|fp16 (scoring is fp32: engine.device)
    channels_last: bool | None = None  # None: on for CUDA
    compile: bool = False
    eval_batch_size: int | None = None  # None: scaled with the image size
    name: str | None = None
    out_dir: str = "runs"

    def __post_init__(self) -> None:
        for name, value in coerce_fields({f.name: getattr(self, f.name) for f in fields(self)}).items():
            object.__setattr__(self, name, value)
        for name, value in self._validated().items():
            object.__setattr__(self, name, value)  # canonical names; frozen afterwards

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self, path: Path) -> None:
        from medmnist_lab.outputs import write_text_atomic  # the one writer of this module

        # Atomic: a run resumed after a crash reads its config.yaml back, so never half of one.
        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return cls(**check_fields(cls, data, "config"))

    @classmethod
    def from_yaml(cls, path: Path) -> RunConfig:
        return cls.from_dict(yaml.safe_load(Path(path).read_text()))

    def _validated(self) -> dict[str, Any]:
        """Check every field; returns the canonical forms of the named ones."""

        def bad(name: str, value: object, valid: str) -> MedMNISTLabError:
            return MedMNISTLabError(f"invalid {name} {value!r}; {valid}")

        from medmnist_lab.data.registry import get_dataset
        from medmnist_lab.engine.schedule import OPTIMIZERS, SCHEDULES  # (torch: not at start-up)
        from medmnist_lab.models import MODELS

        info = get_dataset(self.dataset, warn_alias=False)
        info.check_size(self.size)
        for name in ("epochs", "batch_size", "width"):
            if getattr(self, name) <= 0:
                raise bad(name, getattr(self, name), "must be a positive integer")
        if not self.lr > 0:
            raise bad("lr", self.lr, "must be > 0")
        if self.weight_decay < 0 or self.warmup < 0:
            raise bad("weight_decay/warmup", (self.weight_decay, self.warmup), "must be >= 0")
        if self.warmup >= self.epochs and self.warmup:
            raise bad("warmup", self.warmup, f"must be fewer epochs than --epochs ({self.epochs})")
        if not 0 <= self.label_smoothing < 1:
            raise bad("label_smoothing", self.label_smoothing, "must be in [0, 1)")
        if not 0 <= self.ema < 1:
            raise bad("ema", self.ema, "must be in [0, 1) (0: no weight averaging)")
        if not 0 <= self.momentum < 1:
            raise bad("momentum", self.momentum, "must be in [0, 1)")
        if self.synthetic_ratio is not None and (self.synthetic is None or self.synthetic_ratio <= 0):
            raise bad("synthetic_ratio", self.synthetic_ratio, "needs --synthetic and must be > 0")
        if not 0 < self.gamma <= 1:
            raise bad("gamma", self.gamma, "must be in (0, 1]")
        if self.precision not in PRECISIONS:
            raise bad("precision", self.precision, f"choose one of: {', '.join(PRECISIONS)}")
        if self.amp is not None and self.precision != "auto":
            raise bad("amp", self.amp, "give precision only (amp is its older spelling: off = fp32)")
        if not self.std > 0 or not 0 <= self.mean <= 1:
            raise bad("mean/std", (self.mean, self.std), "mean must be in [0, 1] and std > 0")
        if self.augment_params and self.augment == "none":
            raise bad("augment_params", self.augment_params, "set magnitudes of an --augment policy; none is chosen")
        if any(not 0 < m < 1 for m in self.milestones):
            raise bad("milestones", self.milestones, "must be fractions of the epochs in (0, 1)")
        if self.subset is not None and self.subset <= 0:
            raise bad("subset", self.subset, "must be a positive integer (or None for the whole split)")
        if self.augment != "none":
            from medmnist_lab.augment.policies import check_dims, parse_spec

            # unknown policy names, and 2D policies for volumes (or the reverse), fail here, before any work
            check_dims(parse_spec(self.augment), info.spatial_dims)
        model = self.model if self.model.startswith("timm:") else MODELS.canonical(self.model)
        return {
            "dataset": info.flag,
            "model": model,
            "conv": self._checked_conv(info, model),
            "recipe": RECIPES.canonical(self.recipe),
            "optimizer": OPTIMIZERS.canonical(self.optimizer),
            "schedule": SCHEDULES.canonical(self.schedule),
            "milestones": [float(m) for m in self.milestones],
        }

    def _checked_conv(self, info: DatasetInfo, model: str) -> str | None:
        """The canonical convolution type: none for 2D images, acs (the official default) for volumes."""
        from medmnist_lab.models import CONVERSIONS

        is_3d = info.is_3d
        if not is_3d:
            if self.conv is not None:
                raise MedMNISTLabError(
                    f"--conv {self.conv} applies to the 3D datasets only; {info.flag} holds 2D images "
                    "(see `medmnist-lab datasets list`)"
                )
            if self.shape_transform:
                raise MedMNISTLabError(f"shape_transform applies to the 3D datasets only; {info.flag} holds 2D images")
            return None
        if model not in ("resnet18", "resnet50"):
            raise MedMNISTLabError(
                f"model {model!r} has no 3D form; for the volumes of {info.flag} choose resnet18 or resnet50 "
                "with --conv 2.5d|3d|acs"
            )
        return CONVERSIONS.canonical(self.conv or "acs")


def as_number(value: Any) -> Any:
    """YAML 1.1 reads `1e-3` (no dot) as a string: take it as the number it is meant to be."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def coerce_fields(values: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """Values of the right type for each RunConfig field (`1e-3` from YAML or a command line
    becomes a float, `10.0` epochs an int), or one clear error naming the field."""
    types = {f.name: str(f.type) for f in dataclasses.fields(RunConfig)}
    out = {}
    for key, value in values.items():
        kind = types.get(key, "")
        if value is None:
            if "None" not in kind:
                raise MedMNISTLabError(f"{where}: {key} cannot be null; expected {kind}")
        elif kind.startswith("float"):
            value = as_number(value)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise MedMNISTLabError(f"{where}: {key}={value!r} is not a number")
            value = float(value)
            if not math.isfinite(value):  # NaN passes every range check written as a comparison
                raise MedMNISTLabError(f"{where}: {key}={value!r} is not a finite number")
        elif kind.startswith("int"):
            value = as_number(value)
            if isinstance(value, float) and math.isfinite(value) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise MedMNISTLabError(f"{where}: {key}={value!r} is not an integer")
        elif kind.startswith("bool") and not isinstance(value, bool):
            raise MedMNISTLabError(f"{where}: {key}={value!r} is not true/false")
        elif kind.startswith("str") and not isinstance(value, str):
            value = str(value)
        elif kind.startswith("list[float]"):
            if not isinstance(value, list | tuple):
                raise MedMNISTLabError(f"{where}: {key}={value!r} is not a list of numbers")
            value = [coerce_fields({"gamma": v}, where)["gamma"] for v in value]
        out[key] = value
    return out


@dataclass(frozen=True)
class Recipe:
    description: str
    overrides: dict[str, Any]
    # technique -> the overrides that take it out of the recipe (the rest unchanged): what
    # `benchmarks/ablation.py` removes one at a time to measure what each contributes.
    techniques: dict[str, dict[str, Any]] = field(default_factory=dict)
    # values chosen from the dataset (applied over `overrides`, under explicit ones); the resolved
    # config stores the chosen values, so a run's config.yaml stays complete on its own.
    by_dataset: Callable[[DatasetInfo], dict[str, Any]] | None = None

    def for_dataset(self, info: DatasetInfo) -> dict[str, Any]:
        """The recipe's values for one dataset: its overrides, then its dataset rule."""
        chosen = self.by_dataset(info) if self.by_dataset else {}
        check_fields(RunConfig, chosen, "recipe dataset rule")
        return {**self.overrides, **chosen}

    def __post_init__(self) -> None:
        for name, removal in self.techniques.items():
            check_fields(RunConfig, removal, f"recipe technique {name!r}")


RECIPES: Registry[Recipe] = Registry("recipe")

# The 3D datasets whose volumes are shapes (binary masks): the official 3D runs use the shape transform.
SHAPE_DATASETS = ("adrenalmnist3d", "vesselmnist3d")


def official_3d(info: DatasetInfo) -> dict[str, Any]:
    """The official 3D protocol's differences from 2D (MedMNIST/experiments, MedMNIST3D): batch 32,
    volumes scaled to [0, 1] (mean 0, std 1), and the shape transform on the shape datasets."""
    if not info.is_3d:
        return {}
    values: dict[str, Any] = {"batch_size": 32, "mean": 0.0, "std": 1.0}
    if info.flag in SHAPE_DATASETS:
        values.update(std=2.0, shape_transform=True)  # std 2: the official evaluation x0.5 (RunConfig)
    return values


# The official recipe is the RunConfig defaults (and their 3D rule): no second copy of its values to drift apart.
RECIPES.add(
    "medmnist-v2",
    Recipe(
        "the official MedMNIST v2 benchmark protocol (the RunConfig defaults): Adam lr 1e-3, batch 128, "
        "100 epochs, lr x0.1 at 50% and 75%, no augmentation, normalise mean .5 std .5, best val AUC; "
        "on 3D datasets batch 32, volumes in [0, 1], ACS convolutions, the shape transform on shape datasets",
        {},
        by_dataset=official_3d,
    ),
)
SHORT = dict(
    optimizer="adamw",
    lr=2e-3,
    batch_size=128,
    epochs=30,
    schedule="onecycle",
    weight_decay=5e-4,
    warmup=0,
    label_smoothing=0.1,
    augment="none",
    mean=0.5,
    std=0.5,
)
# `short` was called `fast` until issue 11 gave that name to the time-to-accuracy recipe; the GAN's
# feature and CAS classifiers keep using it, so their cached runs and recorded scores stay valid.
RECIPES.add(
    "short",
    Recipe(
        "a short schedule (the `fast` recipe before issue 11): AdamW lr 2e-3, weight decay 5e-4, "
        "one-cycle, 30 epochs, label smoothing .1",
        SHORT,
    ),
)

# The time-to-accuracy recipe of issue 11, chosen among the candidates of BENCHMARKS.md "Records" (how,
# and what that means for its numbers: docs/recipes.md); the techniques are what benchmarks/ablation.py
# takes out one at a time.
# `short`'s optimizer and schedule, with what the candidates changed; no batch size: the dataset rule
# below always chooses it.
FAST = {
    **{k: v for k, v in SHORT.items() if k != "batch_size"},
    **dict(model="resnet18", width=32, epochs=16, augment="trivialaugment", ema=0.9, tta=True),
}
SMALL_TRAIN_SPLIT = 1000  # training images under which `fast` and `best` use batch 64


def batch_by_train_size(info: DatasetInfo) -> dict[str, Any]:
    """Batch 64 for training splits under 1,000 images, 128 from there. The ablation of `fast`
    (BENCHMARKS.md) measured batch 64 better than 128 on BreastMNIST (546 images: 9 steps an epoch
    instead of 5) and worse, and slower on 2 cores, on RetinaMNIST (1,080 images)."""
    return {"batch_size": 64 if info.n_samples["train"] < SMALL_TRAIN_SPLIT else 128}


# `fast` on volumes (docs/recipes.md, BENCHMARKS.md "3D"): the 2D recipe's optimizer, schedule, label
# smoothing, EMA and flips, on a ResNet small enough for a 2-core CPU: width 16 and the strided stem
# (an eighth of the voxels in the first stages), 12 epochs, batch 32 and the official volume scaling.
# The `volume` augmentation was chosen over none on validation AUC (AdrenalMNIST3D, ACS, seed 0:
# .800 vs .754); width, stem and epochs were chosen by cost, to fit minutes on 2 cores.
FAST_3D = dict(width=16, stem="strided", epochs=12, augment="volume")


def fast_by_dataset(info: DatasetInfo) -> dict[str, Any]:
    if info.is_3d:
        return {**FAST_3D, **official_3d(info)}
    return batch_by_train_size(info)


FAST_TECHNIQUES: dict[str, dict[str, Any]] = {
    "TrivialAugment": {"augment": "none"},
    "weight EMA": {"ema": 0.0},
    "test-time flips": {"tta": False},
    "label smoothing": {"label_smoothing": 0.0},
    # a no-op on datasets whose rule already gives 128 (benchmarks/ablation.py skips it there)
    "batch 64 on small training splits (128 always instead)": {"batch_size": 128},
    "AdamW + one-cycle (official Adam + multistep instead)": {
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "schedule": "multistep",
    },
}
RECIPES.add(
    "fast",
    Recipe(
        "time to accuracy: ResNet-18 width 32, AdamW lr 2e-3 wd 5e-4, one-cycle, 16 epochs, "
        "batch 64 (training splits under 1,000 images) or 128, label smoothing .1, TrivialAugment, "
        "weight EMA .9, test-time flips; on volumes width 16, strided stem, 12 epochs, batch 32, volume augmentation",
        FAST,
        FAST_TECHNIQUES,
        fast_by_dataset,
    ),
)
# The quality candidate of issue 11: longer and more regularised than `fast` (mixup, AdamW weight decay
# 0.05, EMA 0.99). Chosen over 60 epochs of `fast` on validation AUC; it does not beat `fast` on test
# beyond the seed spread, nor the MedMNIST v2 table's best (BENCHMARKS.md, docs/recipes.md).
RECIPES.add(
    "best",
    Recipe(
        "quality candidate, 2.5x the time of fast: fast + mixup, AdamW weight decay .05, 40 epochs, "
        "weight EMA .99 (not better than fast on test so far: docs/recipes.md)",
        {**FAST, "epochs": 40, "augment": "trivialaugment+mixup", "weight_decay": 0.05, "ema": 0.99},
        {
            "TrivialAugment": {"augment": "mixup"},
            "mixup": {"augment": "trivialaugment"},
            "weight decay .05 (5e-4 instead)": {"weight_decay": 5e-4},
            "weight EMA": {"ema": 0.0},
            "test-time flips": {"tta": False},
            "40 epochs (16 instead)": {"epochs": 16},
        },
        batch_by_train_size,
    ),
)


def resolve_config(dataset: str, recipe: str = "medmnist-v2", **overrides: Any) -> RunConfig:
    """Defaults <- recipe <- its dataset rule <- overrides (None values in overrides are ignored);
    validated once."""
    from medmnist_lab.data.registry import get_dataset

    preset = RECIPES.get(recipe)
    given = {k: v for k, v in overrides.items() if v is not None}
    check_fields(RunConfig, given, "config")
    info = get_dataset(dataset)  # the one place a v1 alias is announced
    values = {**preset.for_dataset(info), **given}
    config = RunConfig(dataset=dataset, recipe=RECIPES.canonical(recipe), **values)
    check_applicable(config, given)
    return config


# Settings that mean something only with another one: giving them otherwise is a mistake to report,
# not a value to ignore. (field, applies?, when it applies)
APPLICABLE: tuple[tuple[str, Any, str], ...] = (
    ("momentum", lambda c: c.optimizer in ("sgd", "nesterov"), "optimizer sgd or nesterov"),
    ("milestones", lambda c: c.schedule == "multistep", "schedule multistep"),
    ("gamma", lambda c: c.schedule == "multistep", "schedule multistep"),
)


def check_applicable(config: RunConfig, given: dict[str, Any]) -> None:
    for name, applies, when in APPLICABLE:
        if name in given and not applies(config):
            what = f"optimizer {config.optimizer}" if "optimizer" in when else f"schedule {config.schedule}"
            raise MedMNISTLabError(f"{name}={given[name]!r} applies to {when} only; this run uses {what}")


# A run's identity: a hash of its resolved config (studies call it a cell's hash; the model card and
# `predict` record it). Where a run's files go is not what it computes: never part of the identity.
LOCATION_FIELDS = ("name", "out_dir", "root")
# Fields added to RunConfig after studies existed, with the value that means "as before": left out
# of the hash at that value, so the cells of existing studies keep their hashes.
LATER_FIELDS: dict[str, Any] = {"ema": 0.0, "tta": False, "precision": "auto", "conv": None, "shape_transform": False}


def cell_hash(config: dict[str, Any]) -> str:
    ident = {
        k: v for k, v in config.items() if k not in LOCATION_FIELDS and not (k in LATER_FIELDS and v == LATER_FIELDS[k])
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
