"""GAN training: `train_gan(GANConfig, resume=..., progress=...) -> GANRunResult`, one run folder per GAN.

Run folder (written through the engine's `RunFolder`, like a classifier run's):
    config.yaml              the resolved GANConfig (enough to rerun the run)
    history.jsonl            one line per epoch (0-based `epoch`): losses, mean D(x), mean D(G(z)),
                             seconds; a line is written after the checkpoint that holds its epoch
    last.pt                  checkpoint (atomic, weights_only-loadable), every `checkpoint_every`
                             epochs and after the last; its "epoch" is the last finished epoch's index
    samples/epoch_XXXX.png   grid from fixed noise, one row per class, every `sample_every` epochs
                             (XXXX: the 0-based index of the epoch just finished, as in the history)
    summary.json             `GANRunSummary`, written last: its presence means "finished"

The recipe is the DCGAN paper's: Adam lr 2e-4, beta1 0.5, batch 64 (the paper used 128 on far
larger sets), images scaled to [-1, 1] for the tanh output, BCE (non-saturating) loss.
Every random draw (shuffling, z) comes from one seeded generator whose state is checkpointed,
so a resumed run continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from medmnist_lab.data.arrays import load_split
from medmnist_lab.data.montage import grid_image, save_image
from medmnist_lab.engine.device import Precision, autocast, resolve_device, resolve_precision
from medmnist_lab.engine.runfolder import RunFolder, RunState, check_resume, open_for_training
from medmnist_lab.engine.runinfo import environment_info
from medmnist_lab.errors import CheckpointError, MedMNISTLabError
from medmnist_lab.gan.checkpoint import FORMAT, VERSION, load_checkpoint
from medmnist_lab.gan.config import RESUMABLE_CHANGES, GANConfig, default_run_dir
from medmnist_lab.gan.modes import LOSSES, MODES, GANLoss, GANMode, GANSpec, build_nets
from medmnist_lab.gan.summaries import GANEpochStats, GANRunSummary

__all__ = [
    "RESUMABLE_CHANGES",
    "GANConfig",
    "GANRunResult",
    "default_run_dir",
    "generate",
    "to_uint8",
    "to_unit",
    "train_gan",
]

GRID_COLUMNS = 8


@dataclass
class GANRunResult:
    run_dir: Path
    checkpoint: Path
    epochs_done: int
    summary: GANRunSummary
    history: list[GANEpochStats] = field(default_factory=list)
    grids: list[Path] = field(default_factory=list)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range of the generator's tanh."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded."""
    return ((x.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


@torch.no_grad()
def generate(g: nn.Module, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] from the generator in eval mode: batch norm uses its running statistics,
    so a sample does not depend on which other samples share its batch."""
    was_training = g.training
    g.eval()
    try:
        return g(z, y)
    finally:
        g.train(was_training)


def epoch_batches(
    y: torch.Tensor, n_classes: int, batch_size: int, class_pure: bool, gen: torch.Generator
) -> list[torch.Tensor]:
    """Index batches for one epoch. Each pool is split into ceil(n / B) near-equal batches, so no
    tiny last batch gives batch norm a noisy estimate."""
    pools = (
        [torch.nonzero(y == k).flatten() for k in range(n_classes)]
        if class_pure
        else [torch.arange(len(y), device=y.device)]
    )
    batches: list[torch.Tensor] = []
    for pool in pools:
        if len(pool) == 0:
            continue
        pool = pool[torch.randperm(len(pool), generator=gen, device=pool.device)]
        batches += list(torch.tensor_split(pool, math.ceil(len(pool) / batch_size)))
    return batches


@dataclass
class GANState:
    """What a GAN run trains; `state_dict`/`load_state_dict` round-trip it through last.pt."""

    g: nn.Module
    d: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None  # fp16 only
    gen: torch.Generator  # every random draw: shuffling and z
    fixed_noise: torch.Tensor  # (n_classes x GRID_COLUMNS, nz): the sample grids' z

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.g.state_dict(),
            "discriminator": self.d.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "rng": self.gen.get_state(),
            "rng_device": self.gen.device.type,
            "fixed_noise": self.fixed_noise,
        }

    def load_state_dict(self, ckpt: dict[str, Any], reseed: int) -> None:
        self.g.load_state_dict(ckpt["generator"])
        self.d.load_state_dict(ckpt["discriminator"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.fixed_noise = ckpt["fixed_noise"].to(self.fixed_noise.device)
        if ckpt.get("rng_device") == self.gen.device.type:
            self.gen.set_state(ckpt["rng"].cpu())  # map_location may have moved it; states live on the CPU
        else:  # a CUDA generator's state means nothing to a CPU one
            print(
                f"note: resumed on {self.gen.device.type}, trained on {ckpt.get('rng_device')}: random stream reseeded",
                file=sys.stderr,
            )
            self.gen.manual_seed(reseed)


def build_state(cfg: GANConfig, spec: GANSpec, device: torch.device, precision: Precision) -> GANState:
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        g, d = build_nets(spec)
    g, d = g.to(device), d.to(device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    # The same z in every row: in conditional mode a column shows what the label alone changes.
    fixed_noise = torch.randn(GRID_COLUMNS, spec.nz, generator=gen, device=device).repeat(spec.n_classes, 1)
    return GANState(
        g=g,
        d=d,
        opt_g=torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2)),
        opt_d=torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2)),
        scaler=torch.amp.GradScaler(device.type) if precision.use_scaler else None,
        gen=gen,
        fixed_noise=fixed_noise,
    )


def _step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)


def train_one_epoch(
    s: GANState,
    loss: GANLoss,
    x: torch.Tensor,
    y: torch.Tensor,
    batches: list[torch.Tensor],
    nz: int,
    precision: Precision,
) -> dict[str, float]:
    s.g.train()
    s.d.train()
    device = x.device
    sums = torch.zeros(4, device=device)  # loss_d, loss_g, D(x), D(G(z)), weighted by batch size
    for idx in batches:
        real, labels = x[idx], y[idx]
        z = torch.randn(len(idx), nz, generator=s.gen, device=device)
        # Real and fake go through D in separate batches, as in the DCGAN code: mixing them
        # would let batch norm statistics leak which half is real.
        with autocast(device, precision):
            fake = s.g(z, labels)
            d_real, d_fake = s.d(real, labels), s.d(fake.detach(), labels)
        d_real, d_fake = d_real.float(), d_fake.float()  # losses in fp32 (a no-op in fp32)
        loss_d = loss.d(d_real, d_fake)
        _step(loss_d, s.opt_d, s.scaler)

        with autocast(device, precision):
            d_gen = s.d(fake, labels)
        loss_g = loss.g(d_gen.float())
        _step(loss_g, s.opt_g, s.scaler)
        if s.scaler is not None:
            s.scaler.update()  # once per iteration, after both optimizers stepped

        with torch.no_grad():
            step = torch.stack([loss_d, loss_g, d_real.sigmoid().mean(), d_fake.sigmoid().mean()])
            sums += step * len(idx)
    means = (sums / sum(len(i) for i in batches)).tolist()
    return dict(zip(("loss_d", "loss_g", "d_real", "d_fake"), means, strict=True))


def save_grid(g: nn.Module, spec: GANSpec, noise: torch.Tensor, labels: torch.Tensor, path: Path) -> Path:
    images = to_uint8(generate(g, noise, labels)).cpu()
    rows = [list(images[labels.cpu() == k]) for k in range(spec.n_classes)]
    names = [f"{k}: {name}" for k, name in enumerate(spec.class_names)]
    return save_image(grid_image(rows, names, cell=max(2 * spec.size, 56)), path)


@dataclass
class GANSession:
    """What a GAN run trains with, built from its config (as the engine's `Session` is for a
    classifier): the nets and their optimizers (`state`), the whole train split on the device,
    and the run's progress, which a resume restores from last.pt."""

    cfg: GANConfig
    spec: GANSpec
    mode: GANMode
    loss: GANLoss
    device: torch.device
    precision: Precision
    x: torch.Tensor  # (N, C, H, W) in [-1, 1], the whole split on the device
    y: torch.Tensor  # (N,) class indices
    counts: list[int]  # real train images per class: what --balance and --ratio refer to
    state: GANState
    fixed_labels: torch.Tensor  # the sample grids' labels: one row per class
    history: list[GANEpochStats] = field(default_factory=list)
    pending: list[GANEpochStats] = field(default_factory=list)  # lines waiting for the checkpoint holding them
    grids: list[Path] = field(default_factory=list)
    next_epoch: int = 0
    elapsed_before: float = 0.0  # seconds trained before a resume
    started: float = field(default_factory=time.perf_counter)

    @property
    def elapsed_seconds(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def checkpoint(self, epoch: int) -> dict[str, Any]:
        """last.pt's content after `epoch` (weights_only-loadable: tensors and plain data)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "spec": self.spec.to_dict(),
            "config": self.cfg.to_dict(),
            "epoch": epoch,
            "class_counts": self.counts,
            "precision": self.precision.name,
            "elapsed_seconds": self.elapsed_seconds,
            "history": [h.to_dict() for h in self.history],
            **self.state.state_dict(),
        }

    def load_checkpoint(self, ckpt: dict[str, Any]) -> None:
        """Continue after the checkpoint's epoch, exactly as the uninterrupted run would have."""
        self.next_epoch = int(ckpt["epoch"]) + 1
        self.state.load_state_dict(ckpt, reseed=self.cfg.seed + self.next_epoch)
        self.history = [GANEpochStats.from_dict(h) for h in ckpt["history"]]
        self.elapsed_before = float(ckpt["elapsed_seconds"])


def build_gan_session(cfg: GANConfig) -> GANSession:
    """The nets, optimizers and data of `cfg`; a bad data file fails here, before a run folder exists."""
    spec = cfg.spec()
    device = resolve_device(cfg.device)
    # The engine resolves the precision, as for classifiers, but cfg.precision defaults to fp32
    # rather than the classifiers' auto: mixed precision has not been measured on these small nets
    # (neither speed nor sample quality), every GAN number in docs/gan.md and BENCHMARKS.md is
    # fp32, and the adversarial balance of D and G is what a reduced mantissa could tip.
    # auto/bf16/fp16 opt in; the checkpoint and summary record the choice.
    precision = resolve_precision(device, cfg.amp, cfg.precision)
    data = load_split(spec.dataset, "train", cfg.size, cfg.root)
    counts = torch.bincount(data.labels[:, 0], minlength=spec.n_classes).tolist()
    empty = [spec.class_names[k] for k, n in enumerate(counts) if n == 0]
    if empty:
        raise MedMNISTLabError(
            f"{data.source} has no training images of class(es) {', '.join(empty)}; cannot learn them"
        )
    return GANSession(
        cfg=cfg,
        spec=spec,
        mode=MODES.get(spec.mode),
        loss=LOSSES.get(cfg.loss),
        device=device,
        precision=precision,
        x=to_unit(data.images.to(device)),
        y=data.labels[:, 0].to(device),
        counts=counts,
        state=build_state(cfg, spec, device, precision),
        fixed_labels=torch.arange(spec.n_classes, device=device).repeat_interleave(GRID_COLUMNS),
    )


def open_gan_run(
    cfg: GANConfig, resume: bool | str | os.PathLike[str] | None, device: torch.device
) -> tuple[RunFolder, dict[str, Any] | None]:
    """The run folder, claimed (locked), and the checkpoint to continue from when resuming (its
    settings must match). Whether the folder is new, died early, interrupted or finished is the
    engine's run folder lifecycle (`open_for_training`); this adds the GAN checkpoint's checks.

    `resume`: False (a new run in `cfg.out`), True (continue `cfg.out`), or the path of a run
    folder or its last.pt (continue that run, wherever `cfg.out` points)."""
    new_run = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    target = None if resume is False or resume is None else new_run if resume is True else Path(resume)
    hint = f"pass --resume {new_run} to continue it, or choose another --name"
    folder, last = open_for_training(new_run, target, cfg.to_dict(), hint)
    if last is None:
        return folder, None
    try:
        return folder, _resumable(cfg, last, device, finished=folder.state(last) is RunState.FINISHED)
    except BaseException:
        folder.release()
        raise


def _resumable(cfg: GANConfig, last: Path, device: torch.device, finished: bool) -> dict[str, Any]:
    """The checkpoint `last`, if the run can go on from it with `cfg`."""
    ckpt = load_checkpoint(last, map_location=device)
    if ckpt.get("upgraded_from") is not None:
        raise CheckpointError(
            f"{last} was written by an older medmnist-lab (GAN checkpoint version {ckpt['upgraded_from']}, "
            "epochs counted from 1): it can be sampled and evaluated, but not resumed; start a new run"
        )
    saved = GANConfig.from_dict(ckpt["config"]).to_dict()
    check_resume(saved, cfg.to_dict(), RESUMABLE_CHANGES, last, done=int(ckpt["epoch"]) + 1, finished=finished)
    return ckpt


def continue_run(s: GANSession, folder: RunFolder, ckpt: dict[str, Any]) -> None:
    """Set a resumed run up from its checkpoint: state, history.jsonl, config.yaml; unfinished again."""
    s.load_checkpoint(ckpt)
    folder.remove_temp_files()
    # Rewritten from the checkpoint's copy rather than truncated: with checkpoint_every > 1
    # several lines follow one checkpoint, and a kill while appending them would leave a gap
    # that truncation cannot fill.
    folder.write_history(h.to_dict() for h in s.history)
    folder.write_config(s.cfg.to_dict())  # more epochs, another device: config.yaml stays the run's config
    (folder.path / "summary.json").unlink(missing_ok=True)  # unfinished again until the end


def run_epoch(s: GANSession, folder: RunFolder, epoch: int) -> GANEpochStats:
    """One epoch: train, then the sample grid and the checkpoint when due. History lines are
    written after the checkpoint that holds their epoch, so history.jsonl never runs ahead of it."""
    t0 = time.perf_counter()
    batches = epoch_batches(s.y, s.spec.n_classes, s.cfg.batch_size, s.mode.class_pure_batches, s.state.gen)
    stats = train_one_epoch(s.state, s.loss, s.x, s.y, batches, s.spec.nz, s.precision)
    record = GANEpochStats(epoch=epoch, **stats, seconds=time.perf_counter() - t0)
    s.history.append(record)
    s.pending.append(record)
    last = epoch == s.cfg.epochs - 1
    if (epoch + 1) % s.cfg.sample_every == 0 or last:
        path = folder.path / "samples" / f"epoch_{epoch:04d}.png"
        s.grids.append(save_grid(s.state.g, s.spec, s.state.fixed_noise, s.fixed_labels, path))
    if (epoch + 1) % s.cfg.checkpoint_every == 0 or last:
        folder.save_checkpoint("last.pt", s.checkpoint(epoch))
        for r in s.pending:
            folder.append_history(r.to_dict())
        s.pending.clear()
    return record


def finish(s: GANSession, folder: RunFolder, resumed_from: int | None) -> GANRunResult:
    """summary.json (written last: the run has finished) and the run's result."""
    summary = write_summary(
        folder, s.cfg, s.spec, s.device, s.precision, s.counts, s.history, s.elapsed_seconds, resumed_from
    )
    return GANRunResult(folder.path, folder.path / "last.pt", s.cfg.epochs, summary, s.history, s.grids)


def train_gan(
    cfg: GANConfig,
    *,
    resume: bool | str | os.PathLike[str] | None = False,
    progress: bool = True,
    on_epoch_end: Callable[[int, GANEpochStats], None] | None = None,
) -> GANRunResult:
    """Train a GAN as `cfg` says; returns the run's folder, checkpoint, history and summary.

    Split as the engine's `fit` is: `build_gan_session` (nets, data), `open_gan_run` (the run
    folder through the engine's lifecycle), `continue_run` when resuming, `run_epoch` per epoch,
    `finish` (summary.json).

    `resume`: True continues the run in `cfg.out` (or its default folder), a path continues that
    run folder (or last.pt), and the recorded `out` becomes that folder; settings other than
    `RESUMABLE_CHANGES` must match the checkpoint. A run that died before its first checkpoint is
    started again in place. On the CPU a resumed run ends bit-identical to an uninterrupted one.
    `progress`: a tqdm bar. `on_epoch_end(epoch, stats)` is called after every epoch, once that
    epoch's checkpoint and history line are written if it was a checkpoint epoch (tests use it
    to interrupt a run).
    """
    s = build_gan_session(cfg)
    folder, ckpt = open_gan_run(cfg, resume, s.device)
    try:
        if resume is not False and resume is not None:
            s.cfg = replace(s.cfg, out=str(folder.path))  # the folder the run lives in, wherever --resume pointed
            if ckpt is None:  # started again in place: its config.yaml names the folder, as a resumed one's
                folder.write_config(s.cfg.to_dict())
        if ckpt is not None:
            continue_run(s, folder, ckpt)
        s.started = time.perf_counter()
        bar = tqdm(
            range(s.next_epoch, s.cfg.epochs),
            desc=f"gan {s.spec.dataset} {s.spec.mode}",
            unit="epoch",
            disable=not progress,
            initial=s.next_epoch,
            total=s.cfg.epochs,
            dynamic_ncols=True,
        )
        for epoch in bar:
            record = run_epoch(s, folder, epoch)
            bar.set_postfix(
                d=f"{record.loss_d:.3f}",
                g=f"{record.loss_g:.3f}",
                Dx=f"{record.d_real:.2f}",
                DGz=f"{record.d_fake:.2f}",
                s_ep=f"{record.seconds:.1f}",
            )
            if on_epoch_end is not None:
                on_epoch_end(epoch, record)
        bar.close()
        return finish(s, folder, None if ckpt is None else int(ckpt["epoch"]) + 1)
    finally:
        folder.release()  # the run folder's lock


def write_summary(
    folder: RunFolder,
    cfg: GANConfig,
    spec: GANSpec,
    device: torch.device,
    precision: Precision,
    counts: list[int],
    history: list[GANEpochStats],
    wall_seconds: float,
    resumed_from: int | None,
) -> GANRunSummary:
    """summary.json, written last: its presence says the run finished."""
    env = environment_info()
    summary = GANRunSummary(
        run=folder.path.name,
        dataset=spec.dataset,
        size=spec.size,
        mode=spec.mode,
        loss=cfg.loss,
        seed=cfg.seed,
        epochs=cfg.epochs,
        final=history[-1],
        wall_seconds=wall_seconds,
        class_counts=counts,
        device=str(device),
        precision=precision.name,
        spec=spec.to_dict(),
        config=cfg.to_dict(),
        resumed_from_epoch=resumed_from,
        versions=env["versions"],
        machine=env["machine"],
        git_commit=env["git_commit"],
    )
    summary.write(folder.path / "summary.json")
    return summary
