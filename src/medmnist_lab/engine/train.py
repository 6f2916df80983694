"""`fit(config) -> RunResult`: train with the chosen recipe, select on validation, test once.

Readable top to bottom: set-up, then per epoch train_one_epoch -> evaluate on val -> checkpoint
and log; at the end the best-validation checkpoint is scored on val, test and train, once.
The test split never influences training or model selection.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from medmnist_lab.data.registry import DatasetInfo, get_dataset
from medmnist_lab.engine.batcher import DeviceBatcher
from medmnist_lab.engine.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from medmnist_lab.engine.config import RunConfig
from medmnist_lab.engine.data import load_eval_split, load_train_data
from medmnist_lab.engine.device import Precision, autocast, resolve_device, resolve_precision
from medmnist_lab.engine.evaluation import SplitResult, predict, score_split
from medmnist_lab.engine.runinfo import environment_info, run_dir_for
from medmnist_lab.engine.schedule import build_optimizer, build_scheduler
from medmnist_lab.engine.tasks import dense_targets, task_loss
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.models import create_model


class TrainingError(MedMNISTLabError):
    """Training cannot go on (e.g. the loss became non-finite)."""


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    best_epoch: int
    val: SplitResult
    test: SplitResult


def build_model(config: RunConfig, info: DatasetInfo) -> torch.nn.Module:
    in_ch = 3 if config.as_rgb else info.n_channels
    kw: dict[str, Any] = {"width": config.width}
    if config.stem is not None:
        kw["stem"] = config.stem
    return create_model(config.model, in_ch, info.n_classes, config.size, **kw)


def dataset_meta(config: RunConfig, info: DatasetInfo) -> dict[str, Any]:
    """Stored in every checkpoint: enough to refuse a mismatch and to label predictions."""
    return {
        "flag": info.flag,
        "size": config.size,
        "task": info.task,
        "n_classes": info.n_classes,
        "n_channels": 3 if config.as_rgb else info.n_channels,
        "label_names": list(info.label_names),
        "mean": config.mean,
        "std": config.std,
    }


def train_one_epoch(
    model: torch.nn.Module,
    batches: DeviceBatcher,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    device: torch.device,
    precision: Precision,
    info: DatasetInfo,
    config: RunConfig,
    augment: Any,
    aug_generator: torch.Generator | None,
    progress: bool,
) -> float:
    """One pass over the training batches; returns the mean training loss (may be non-finite)."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    seen = 0
    for x, y in tqdm(batches, desc="  train", leave=False, disable=not progress, unit="batch"):
        target: torch.Tensor = y
        if augment is not None and augment.mixes:
            x, target = augment.mix(x, dense_targets(y, info.n_classes, info.is_multilabel), aug_generator)
        with autocast(device, precision):
            logits = model(x)
        loss = task_loss(logits, target, info.is_multilabel, config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        # Accumulated on the device: no host sync per step.
        loss_sum += loss.detach() * x.shape[0]
        seen += x.shape[0]
    return float(loss_sum) / max(seen, 1)


def fit(
    config: RunConfig,
    *,
    resume: str | Path | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> RunResult:
    """Train a classifier as `config` says and return its final metrics.

    `resume`: a run folder (or its last.pt) of an interrupted run, continued so that on CPU with a
    fixed seed it ends with exactly the metrics of an uninterrupted run. `on_epoch_end(epoch,
    record)` is called after each epoch's checkpoint is written (tests use it to interrupt).
    """
    config.validate()
    info = get_dataset(config.dataset)
    config.dataset = info.flag
    info.check_size(config.size)
    device = resolve_device(config.device)
    precision = resolve_precision(device, config.amp)
    channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    state = None
    if resume is not None:
        last = Path(resume) / "last.pt" if Path(resume).is_dir() else Path(resume)
        state = load_checkpoint(last)
        check_compatible(state, info.flag, config.size, info.n_classes, f"checkpoint {last}")
        saved = RunConfig.from_dict(state["config"])
        if saved != config:
            diff = {k: (v, getattr(config, k)) for k, v in saved.to_dict().items() if getattr(config, k) != v}
            raise MedMNISTLabError(
                f"--resume: the run's config differs from this one: {diff}; resume with the saved config"
            )
        run_dir = last.parent
    else:
        run_dir = run_dir_for(config, info)

    torch.manual_seed(config.seed)
    model = build_model(config, info).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    train = load_train_data(config, info)
    val = load_eval_split(config, info, "val")
    augment = None
    aug_generator = None
    if config.augment != "none":
        from medmnist_lab.augment import build_augment

        augment = build_augment(
            config.augment, image_size=config.size, channels=int(train.images.shape[1]), **config.augment_params
        )
        # A CPU generator: the same seed draws the same augmentations on CPU and GPU.
        aug_generator = torch.Generator().manual_seed(config.seed + 1)
    shuffle_gen = torch.Generator().manual_seed(config.seed)
    train_batches = DeviceBatcher(
        train.images,
        train.labels,
        config.batch_size,
        device,
        shuffle=True,
        generator=shuffle_gen,
        mean=config.mean,
        std=config.std,
        augment=augment,
        aug_generator=aug_generator,
        channels_last=channels_last,
        memory_mapped=train.memory_mapped,
    )
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, len(train_batches))
    scaler = torch.amp.GradScaler(device.type) if precision.use_scaler else None
    step_model = torch.compile(model) if config.compile else model

    start_epoch, best_auc, best_epoch, elapsed_before = 0, -math.inf, -1, 0.0
    meta = dataset_meta(config, info)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        shuffle_gen.set_state(state["rng"]["shuffle"])
        if aug_generator is not None:
            aug_generator.set_state(state["rng"]["augment"])  # states are CPU byte tensors
        torch.set_rng_state(state["rng"]["torch"])
        start_epoch, best_auc, best_epoch = (
            state["epoch"] + 1,
            state["best_auc"],
            state["best_epoch"],
        )
        elapsed_before = state["elapsed_seconds"]
    else:
        run_dir.mkdir(parents=True, exist_ok=False)
        config.to_yaml(run_dir / "config.yaml")
        (run_dir / "history.jsonl").write_text("")

    def snapshot(epoch: int) -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "epoch": epoch,
            "best_auc": best_auc,
            "best_epoch": best_epoch,
            "rng": {
                "shuffle": shuffle_gen.get_state(),
                "augment": aug_generator.get_state() if aug_generator is not None else torch.empty(0),
                "torch": torch.get_rng_state(),
            },
            "config": config.to_dict(),
            "dataset": meta,
            "precision": precision.name,
            "elapsed_seconds": elapsed_before + time.perf_counter() - t_start,
        }

    t_start = time.perf_counter()
    bar = tqdm(
        range(start_epoch, config.epochs),
        desc=f"{info.flag}_{config.size} {config.model}",
        initial=start_epoch,
        total=config.epochs,
        disable=not progress,
        unit="epoch",
    )
    for epoch in bar:
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train_loss = train_one_epoch(
            step_model,
            train_batches,
            optimizer,
            scheduler,
            scaler,
            device,
            precision,
            info,
            config,
            augment,
            aug_generator,
            progress,
        )
        if not math.isfinite(train_loss):
            raise TrainingError(
                f"the training loss became {train_loss} in epoch {epoch}; stopped. The last good "
                f"checkpoint is kept at {run_dir / 'last.pt'} (best: {run_dir / 'best.pt'}); "
                "try a lower --lr or --amp off"
            )
        train_seconds = time.perf_counter() - t0
        val_result = score_split(predict(model, val, config, device, precision, channels_last), val, info)
        seconds = time.perf_counter() - t0
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_auc": val_result.metrics.auc,
            "val_acc": val_result.metrics.acc,
            "lr": lr,
            "seconds": seconds,
            "images_per_s": len(train.labels) / train_seconds,
        }
        # A NaN AUC (a class absent from val) counts as the worst score, never as a winner.
        score = val_result.metrics.auc if math.isfinite(val_result.metrics.auc) else -math.inf
        if score > best_auc or best_epoch < 0:
            best_auc, best_epoch = score, epoch
            save_checkpoint(snapshot(epoch), run_dir / "best.pt")
        save_checkpoint(snapshot(epoch), run_dir / "last.pt")
        with open(run_dir / "history.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        bar.set_postfix(
            loss=f"{train_loss:.4f}",
            val_auc=f"{record['val_auc']:.4f}",
            best=f"{best_auc:.4f}@{best_epoch}",
            img_s=f"{record['images_per_s']:.0f}",
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
    bar.close()
    wall = time.perf_counter() - t_start

    # Final scoring with the best-validation checkpoint; the test split is scored here, once.
    best = load_checkpoint(run_dir / "best.pt", map_location=device)
    model.load_state_dict(best["model"])
    results: dict[str, SplitResult] = {}
    for split in ("val", "test", "train"):
        data = val if split == "val" else load_eval_split(config, info, split)
        results[split] = score_split(predict(model, data, config, device, precision, channels_last), data, info)
    run_name = run_dir.name
    for split in ("val", "test"):
        results[split].write_predictions(run_dir, info.flag, config.size, split, run_name)

    summary = {
        "run": run_name,
        "dataset": info.flag,
        "size": config.size,
        "model": config.model,
        "recipe": config.recipe,
        "seed": config.seed,
        "best_epoch": best["epoch"],
        "epochs": config.epochs,
        "metrics": {s: r.to_dict() for s, r in results.items()},
        "wall_seconds": elapsed_before + wall,
        "resumed_from_epoch": start_epoch if state is not None else None,
        "data": train.provenance,
        "augment": augment.describe() if augment is not None else "none",
        "device": str(device),
        "precision": precision.name,
        "channels_last": channels_last,
        **environment_info(),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return RunResult(run_dir, summary, best["epoch"], results["val"], results["test"])
