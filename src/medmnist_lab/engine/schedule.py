"""Optimizers and per-step learning-rate schedules built from a RunConfig."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from medmnist_lab.registry import Registry

if TYPE_CHECKING:  # (the config validates its names against these registries at run time)
    from medmnist_lab.engine.config import RunConfig

OptimizerFactory = Callable[[list[torch.nn.Parameter], "RunConfig"], torch.optim.Optimizer]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")
OPTIMIZERS.add(
    "sgd",
    lambda p, c: torch.optim.SGD(p, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay),
)
OPTIMIZERS.add(
    "nesterov",
    lambda p, c: torch.optim.SGD(p, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, nesterov=True),
)
OPTIMIZERS.add("adam", lambda p, c: torch.optim.Adam(p, lr=c.lr, weight_decay=c.weight_decay))
OPTIMIZERS.add("adamw", lambda p, c: torch.optim.AdamW(p, lr=c.lr, weight_decay=c.weight_decay))


def build_optimizer(model: torch.nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(config.optimizer)(list(model.parameters()), config)


# Each schedule maps progress to an lr factor: (step, steps_per_epoch, config) -> factor.
Factor = Callable[[int, int, "RunConfig"], float]
SCHEDULES: Registry[Factor] = Registry("schedule")


def milestone_epochs(c: RunConfig) -> list[int]:
    """The epochs where a multistep schedule decays: int(fraction * epochs), as torch's MultiStepLR
    with the official recipe's epochs 50 and 75 of 100, but never epoch 0: with 1 epoch both
    official milestones would fall there and the whole run would train at lr x gamma^2 (1e-5)."""
    return [max(1, int(m * c.epochs)) for m in c.milestones]


def short_run_note(c: RunConfig) -> str | None:
    """One line for a run too short for its milestones: where they fall, and that none is epoch 0."""
    if c.schedule != "multistep" or all(int(m * c.epochs) >= 1 for m in c.milestones):
        return None
    epochs = milestone_epochs(c)
    where = ", ".join(f"{m:g} of {c.epochs} -> epoch {e}" for m, e in zip(c.milestones, epochs, strict=True))
    effect = (
        f"the whole run trains at the base rate {c.lr:g}"
        if all(e >= c.epochs for e in epochs)
        else f"the first epoch trains at the base rate {c.lr:g}"
    )
    return f"note: multistep milestones {where} (never epoch 0): {effect}"


@SCHEDULES.register("multistep")
def _multistep(step: int, per_epoch: int, c: RunConfig) -> float:
    epoch = step // per_epoch
    return c.gamma ** sum(epoch >= e for e in milestone_epochs(c))


@SCHEDULES.register("cosine")
def _cosine(step: int, per_epoch: int, c: RunConfig) -> float:
    start, total = c.warmup * per_epoch, c.epochs * per_epoch
    t = min(max(step - start, 0) / max(total - start, 1), 1.0)
    return 0.5 * (1 + math.cos(math.pi * t))


@SCHEDULES.register("onecycle")
def _onecycle(step: int, per_epoch: int, c: RunConfig) -> float:
    # 30% linear ramp from 1/25 of the peak, then cosine down to ~0 (torch OneCycleLR's shape).
    total = c.epochs * per_epoch
    peak = max(int(0.3 * total), 1)
    if step < peak:
        return 1 / 25 + (1 - 1 / 25) * step / peak
    t = min((step - peak) / max(total - peak, 1), 1.0)
    return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * t))


@SCHEDULES.register("constant")
def _constant(step: int, per_epoch: int, c: RunConfig) -> float:
    return 1.0


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: RunConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR: the schedule's factor, times a linear warm-up over `warmup` epochs."""
    factor = SCHEDULES.get(config.schedule)
    warm_steps = config.warmup * steps_per_epoch

    def lr_lambda(step: int) -> float:
        warm = min(1.0, (step + 1) / warm_steps) if warm_steps else 1.0
        return warm * factor(step, steps_per_epoch, config)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
