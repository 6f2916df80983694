"""`fit(config) -> RunResult`: train with the chosen recipe, select on validation, test once.

Readable top to bottom: set-up, then per epoch train_one_epoch -> evaluate on val -> checkpoint
and log; at the end the best-validation checkpoint is scored on val, test and train, once.
The test split never influences training or model selection.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from medmnist_lab.data.arrays import SplitData
from medmnist_lab.data.registry import DatasetInfo, get_dataset
from medmnist_lab.engine.batcher import DeviceBatcher
from medmnist_lab.engine.checkpoint import RESUME_KEYS, check_compatible, check_keys, load_checkpoint, save_checkpoint
from medmnist_lab.engine.config import RunConfig
from medmnist_lab.engine.data import TrainData, load_eval_split, load_train_data
from medmnist_lab.engine.device import (
    SCORE_PRECISION,
    Precision,
    autocast,
    resolve_device,
    resolve_precision,
    to_channels_last,
    training_precision,
)
from medmnist_lab.engine.ema import EMA
from medmnist_lab.engine.inference import SplitResult, check_eval_memory, predict, score_split
from medmnist_lab.engine.runfolder import RunFolder, RunState, check_resume, open_for_training
from medmnist_lab.engine.runinfo import environment_info, run_dir_for
from medmnist_lab.engine.schedule import build_optimizer, build_scheduler
from medmnist_lab.engine.summary import RunSummary, SplitMetrics
from medmnist_lab.engine.tasks import dense_targets, task_loss
from medmnist_lab.engine.trackers import Tracker
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.models import create_model, create_volumetric_model


class TrainingError(MedMNISTLabError):
    """Training cannot go on (e.g. the loss became non-finite)."""


@dataclass
class RunResult:
    run_dir: Path
    summary: RunSummary
    best_epoch: int
    val: SplitResult
    test: SplitResult


def build_model(config: RunConfig, info: DatasetInfo) -> torch.nn.Module:
    in_ch = 3 if config.as_rgb else info.n_channels
    kw: dict[str, Any] = {"width": config.width}
    if config.stem is not None:
        kw["stem"] = config.stem
    if config.conv is not None:  # a 3D dataset: the 2D ResNet converted for volumes
        return create_volumetric_model(config.model, in_ch, info.n_classes, config.size, config.conv, **kw)
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


@dataclass
class Session:
    """What a run trains with, built from its config; its mutable part round-trips a checkpoint."""

    config: RunConfig
    info: DatasetInfo
    device: torch.device
    precision: Precision
    channels_last: bool
    model: torch.nn.Module
    step_model: torch.nn.Module  # the compiled model with --compile, else `model`
    train: TrainData
    val: SplitData
    batches: DeviceBatcher
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    shuffle_gen: torch.Generator
    augment: Any = None
    aug_generator: torch.Generator | None = None
    ema: EMA | None = None  # the averaged weights that validation selects on (config.ema > 0)
    # progress: the next epoch, the best validation score so far, seconds spent before a resume
    next_epoch: int = 0
    best_auc: float = -math.inf
    best_epoch: int = -1
    elapsed_before: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def state_dict(self, epoch: int) -> dict[str, Any]:
        """Only tensors and plain data, so the checkpoint loads with weights_only=True."""
        extra: dict[str, Any] = {}
        if self.ema is not None:  # "model" is what evaluate/predict/export use: the average
            extra = {"train_model": self.model.state_dict(), "ema_updates": self.ema.updates}
        return {
            "model": self.eval_model.state_dict(),
            **extra,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "epoch": epoch,
            "best_auc": self.best_auc,
            "best_epoch": self.best_epoch,
            "rng": {
                "shuffle": self.shuffle_gen.get_state(),
                "augment": self.aug_generator.get_state() if self.aug_generator is not None else torch.empty(0),
                "torch": torch.get_rng_state(),
            },
            "config": self.config.to_dict(),
            "dataset": dataset_meta(self.config, self.info),
            "precision": self.precision.name,
            "elapsed_seconds": self.elapsed_seconds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.ema is not None:
            self.model.load_state_dict(state["train_model"])
            self.ema.module.load_state_dict(state["model"])
            self.ema.updates = int(state["ema_updates"])
        else:
            self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.shuffle_gen.set_state(state["rng"]["shuffle"])
        if self.aug_generator is not None:
            self.aug_generator.set_state(state["rng"]["augment"])  # states are CPU byte tensors
        torch.set_rng_state(state["rng"]["torch"])
        self.next_epoch = state["epoch"] + 1
        self.best_auc, self.best_epoch = state["best_auc"], state["best_epoch"]
        self.elapsed_before = state["elapsed_seconds"]
        self.started = time.perf_counter()

    @property
    def elapsed_seconds(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def score(
        self, data: SplitData, model: torch.nn.Module | None = None, precision: Precision | None = None
    ) -> SplitResult:
        """Score `data` (default: with the training precision, as validation during training does)."""
        model = self.eval_model if model is None else model
        precision = self.precision if precision is None else precision
        logits = predict(model, data, self.config, self.device, precision, self.channels_last)
        return score_split(logits, data, self.info)


def build_session(config: RunConfig, info: DatasetInfo) -> Session:
    device = resolve_device(config.device)
    precision = training_precision(device, config)
    channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(config.seed)
    model = build_model(config, info).to(device)
    if channels_last:
        model = to_channels_last(model)
    train = load_train_data(config, info)
    val = load_eval_split(config, info, "val")
    augment, aug_generator = None, None
    if config.augment != "none":
        from medmnist_lab.augment import build_augment

        channels = int(train.images.shape[1])
        augment = build_augment(
            config.augment,
            image_size=config.size,
            channels=channels,
            dataset=info.flag,
            spatial_dims=info.spatial_dims,
            **config.augment_params,
        )
    if config.augment != "none" or config.shape_transform:
        # A CPU generator: the same seed draws the same augmentations on CPU and GPU.
        aug_generator = torch.Generator().manual_seed(config.seed + 1)
    shuffle_gen = torch.Generator().manual_seed(config.seed)
    batches = DeviceBatcher(
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
        random_scale=2.0 if config.shape_transform else None,  # x 2u: see RunConfig.shape_transform
    )
    optimizer = build_optimizer(model, config)
    return Session(
        config=config,
        info=info,
        device=device,
        precision=precision,
        channels_last=channels_last,
        model=model,
        step_model=torch.compile(model) if config.compile else model,
        train=train,
        val=val,
        batches=batches,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, config, len(batches)),
        scaler=torch.amp.GradScaler(device.type) if precision.use_scaler else None,
        shuffle_gen=shuffle_gen,
        augment=augment,
        aug_generator=aug_generator,
        ema=EMA(model, config.ema) if config.ema > 0 else None,
    )


def train_step(s: Session, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One optimisation step of `fit` on one batch from `s.batches` (normalised, augmented): the
    recipe's batch mixing, forward in the session's precision, loss, backward (through the grad
    scaler for fp16), optimizer, EMA and scheduler. Returns the batch's mean loss, detached and on
    the device (no host sync). The one training step: `fit`, the dry-run estimate and the
    benchmark scripts all run this."""
    target: torch.Tensor = y
    if s.augment is not None and s.augment.mixes:
        x, target = s.augment.mix(x, dense_targets(y, s.info.n_classes, s.info.is_multilabel), s.aug_generator)
    with autocast(s.device, s.precision):
        logits = s.step_model(x)
    loss = task_loss(logits, target, s.info.is_multilabel, s.config.label_smoothing)
    s.optimizer.zero_grad(set_to_none=True)
    if s.scaler is not None:
        s.scaler.scale(loss).backward()
        s.scaler.step(s.optimizer)
        s.scaler.update()
    else:
        loss.backward()
        s.optimizer.step()
    if s.ema is not None:
        s.ema.update(s.model)
    s.scheduler.step()
    return loss.detach()


def train_one_epoch(s: Session, progress: bool) -> float:
    """One pass over the training batches; returns the mean training loss (may be non-finite)."""
    s.step_model.train()
    loss_sum = torch.zeros((), device=s.device)
    seen = 0
    for x, y in tqdm(s.batches, desc="  train", leave=False, disable=not progress, unit="batch"):
        loss = train_step(s, x, y)
        # Accumulated on the device: no host sync per step.
        loss_sum += loss * x.shape[0]
        seen += x.shape[0]
    return float(loss_sum) / max(seen, 1)


# Fields a resumed run may change: more epochs (extends a finished or interrupted run), where the
# data lives, the device. Any other difference would make it another experiment.
RESUMABLE_CHANGES = ("epochs", "root", "device")


def open_run(
    config: RunConfig, info: DatasetInfo, resume: str | Path | None
) -> tuple[RunFolder, dict[str, Any] | None]:
    """The run folder, claimed (locked) for this process, and the state to continue from when
    resuming. The run folder lifecycle (new, died early, interrupted, finished) is
    `engine.runfolder`'s; this adds the classifier's checkpoint checks."""
    new_run = run_dir_for(config, info) if resume is None else None  # once: a default name has the time
    hint = f"pass --resume {new_run} to continue it, or another --name"
    folder, checkpoint = open_for_training(new_run, resume, config.to_dict(), hint)
    if checkpoint is None:
        return folder, None
    try:
        return folder, _start_state(folder, checkpoint, config, info)
    except BaseException:
        folder.release()
        raise


def _start_state(folder: RunFolder, last: Path, config: RunConfig, info: DatasetInfo) -> dict[str, Any]:
    """Under the folder's lock: the checkpoint `last` to resume, if the run can go on from it with `config`."""
    state = load_checkpoint(last)
    check_keys(state, RESUME_KEYS, last, "a weights-only checkpoint can be evaluated, not resumed")
    check_compatible(state, info.flag, config.size, info.n_classes, f"checkpoint {last}")
    check_resume(
        RunConfig.from_dict(state["config"]).to_dict(),
        config.to_dict(),
        RESUMABLE_CHANGES,
        last,
        done=int(state["epoch"]) + 1,
        finished=folder.state(last) is RunState.FINISHED,
    )
    return state


def fit(
    config: RunConfig,
    *,
    resume: str | Path | None = None,
    progress: bool = True,
    keep: str = "both",
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    trackers: Sequence[Tracker] = (),
    on_finish: Callable[[Path], None] | None = None,
) -> RunResult:
    """Train a classifier as `config` says and return its final metrics.

    `resume`: a run folder (or its last.pt) of an interrupted run, continued so that on CPU with a
    fixed seed it ends with exactly the metrics of an uninterrupted run. `keep`: which checkpoints
    stay once the run is finished (see `RunFolder.apply_retention`). `on_epoch_end(epoch, record)`
    is called after each epoch's checkpoint and history line are written (tests use it to
    interrupt; studies use it to prune). `on_finish(run_dir)` runs once the run is scored and
    saved, before the trackers log its files: the CLI and studies write the model card there
    (`deploy.card.write_model_card`; the engine does not know about deployment).
    """
    info = get_dataset(config.dataset, warn_alias=False)  # config is validated: dataset is a flag
    check_eval_memory(config, resolve_device(config.device))
    # The session (model, data) first: a bad data file or subset fails before a run folder exists.
    s = build_session(config, info)
    folder, state = open_run(config, info, resume)
    try:
        for t in trackers:
            t.start(folder.path, config.to_dict())
        return _fit_claimed(s, folder, state, progress, keep, on_epoch_end, trackers, on_finish)
    finally:
        for t in trackers:
            t.close()
        folder.release()


def _fit_claimed(
    s: Session,
    folder: RunFolder,
    state: dict[str, Any] | None,
    progress: bool,
    keep: str,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
    trackers: Sequence[Tracker] = (),
    on_finish: Callable[[Path], None] | None = None,
) -> RunResult:
    run_dir, config, info = folder.path, s.config, s.info
    if state is not None:
        s.load_state_dict(state)
        folder.remove_temp_files()
        folder.truncate_history(state["epoch"])
        if config.to_dict() != state["config"]:
            folder.write_config(config.to_dict())  # more epochs, another root/device: the run's config now
        (run_dir / "summary.json").unlink(missing_ok=True)  # unfinished again until the end

    bar = tqdm(
        range(s.next_epoch, config.epochs),
        desc=f"{info.flag}_{config.size} {config.model}",
        initial=s.next_epoch,
        total=config.epochs,
        disable=not progress,
        unit="epoch",
    )
    for epoch in bar:
        t0 = time.perf_counter()
        lr = s.optimizer.param_groups[0]["lr"]
        train_loss = train_one_epoch(s, progress)
        if not math.isfinite(train_loss):
            kept = (
                f"the last good checkpoint is kept at {run_dir / 'last.pt'} (epoch {epoch - 1}; best: "
                f"{run_dir / 'best.pt'})"
                if (run_dir / "last.pt").is_file()
                else "no checkpoint was written (it failed in the first epoch)"
            )
            raise TrainingError(
                f"the training loss became {train_loss} in epoch {epoch}; stopped: {kept}; "
                "try a lower --lr or --precision fp32"
            )
        train_seconds = time.perf_counter() - t0
        val = s.score(s.val).metrics
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_auc": val.auc,
            "val_acc": val.acc,
            "lr": lr,
            "seconds": time.perf_counter() - t0,
            "images_per_s": len(s.train.labels) / train_seconds,
        }
        # A NaN AUC (a class absent from val) counts as the worst score, never as a winner.
        score = val.auc if math.isfinite(val.auc) else -math.inf
        # History line first, checkpoints after: a kill in between leaves a line past last.pt's
        # epoch, which a resume cuts off; the other order could lose the line for good.
        folder.append_history(record)
        if score > s.best_auc or s.best_epoch < 0:
            s.best_auc, s.best_epoch = score, epoch
            save_checkpoint(s.state_dict(epoch), run_dir / "best.pt")
        save_checkpoint(s.state_dict(epoch), run_dir / "last.pt")
        bar.set_postfix(
            loss=f"{train_loss:.4f}",
            val_auc=f"{val.auc:.4f}",
            best=f"{s.best_auc:.4f}@{s.best_epoch}",
            img_s=f"{record['images_per_s']:.0f}",
        )
        for t in trackers:
            t.epoch(epoch, record)
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
    bar.close()
    result = finish(s, run_dir, resumed_from=None if state is None else state["epoch"] + 1)
    folder.apply_retention(keep)
    if on_finish is not None:
        on_finish(run_dir)
    for t in trackers:
        t.finish(result.summary)
    return result


def finish(s: Session, run_dir: Path, resumed_from: int | None) -> RunResult:
    """Score the best-validation checkpoint on val, test and train (the test split only here,
    once), write the official prediction files and summary.json."""
    wall = s.elapsed_seconds
    best = load_checkpoint(run_dir / "best.pt", map_location=s.device)
    s.model.load_state_dict(best["model"])  # the evaluated weights (the average, with EMA)
    # The final scores in fp32, as `evaluate` gives them: the same on every CPU, bf16 or not.
    scoring = resolve_precision(s.device, precision=SCORE_PRECISION)
    results = {
        split: s.score(s.val if split == "val" else load_eval_split(s.config, s.info, split), s.model, scoring)
        for split in ("val", "test", "train")
    }
    for split in ("val", "test"):
        results[split].write_predictions(run_dir, s.info.flag, s.config.size, split, run_dir.name)
    c = s.config
    env = environment_info()
    summary = RunSummary(
        run=run_dir.name,
        dataset=s.info.flag,
        size=c.size,
        model=c.model,
        recipe=c.recipe,
        seed=c.seed,
        best_epoch=best["epoch"],
        epochs=c.epochs,
        metrics={split: SplitMetrics(r.metrics.auc, r.metrics.acc, r.extras) for split, r in results.items()},
        wall_seconds=wall,
        resumed_from_epoch=resumed_from,
        data=s.train.provenance,
        augment=s.augment.describe() if s.augment is not None else "none",
        device=str(s.device),
        precision=s.precision.name,
        score_precision=scoring.name,
        channels_last=s.channels_last,
        versions=env["versions"],
        machine=env["machine"],
        git_commit=env["git_commit"],
        config=c.to_dict(),
    )
    summary.write(run_dir / "summary.json")
    return RunResult(run_dir, summary, best["epoch"], results["val"], results["test"])
