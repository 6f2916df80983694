"""GAN training: `train_gan(GANConfig) -> GANRunResult`, resumable, one run folder per GAN.

Run folder:
    config.json              the resolved config and the nets' spec
    last.pt                  checkpoint (atomic, weights_only-loadable), every --checkpoint-every
    history.jsonl            one line per epoch: losses, mean D(x), mean D(G(z)), seconds
    samples/epoch_XXXX.png   grid from fixed noise, one row per class, every --sample-every

The recipe is the DCGAN paper's: Adam lr 2e-4, beta1 0.5, batch 64 (the paper used 128 on far
larger sets), images scaled to [-1, 1] for the tanh output, BCE (non-saturating) loss.
Every random draw (shuffling, z) comes from one seeded generator whose state is checkpointed,
so a resumed run continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from medmnist_lab.data.arrays import load_split
from medmnist_lab.data.montage import grid_image, save_image
from medmnist_lab.data.registry import get_dataset
from medmnist_lab.errors import CheckpointError, MedMNISTLabError
from medmnist_lab.gan.checkpoint import FORMAT, VERSION, atomic_save, load_checkpoint
from medmnist_lab.gan.modes import LOSSES, MODES, GANLoss, GANSpec, build_nets, make_spec

GRID_COLUMNS = 8


@dataclass
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
    resume: bool = False
    progress: bool = True


# Fields that may change when a run is resumed (more epochs, another folder name, another device);
# all others must match the checkpoint, or the resumed run would be a different experiment.
RESUMABLE_CHANGES = ("epochs", "sample_every", "checkpoint_every", "out", "root", "device", "resume", "progress")


@dataclass
class GANRunResult:
    run_dir: Path
    checkpoint: Path
    epochs_done: int
    history: list[dict] = field(default_factory=list)
    grids: list[Path] = field(default_factory=list)


def default_run_dir(cfg: GANConfig) -> Path:
    return Path("runs") / "gan" / f"{cfg.dataset}-{cfg.size}px-{cfg.mode}-seed{cfg.seed}"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MedMNISTLabError(f"unknown device '{name}'; choose auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MedMNISTLabError(f"device '{name}' requested but CUDA is not available; use --device cpu")
    return device


def _check_config(cfg: GANConfig) -> None:
    for name in ("epochs", "batch_size", "sample_every", "checkpoint_every"):
        if getattr(cfg, name) <= 0:
            raise MedMNISTLabError(f"{name} must be a positive integer, got {getattr(cfg, name)}")
    if not cfg.lr > 0:
        raise MedMNISTLabError(f"lr must be positive, got {cfg.lr}")
    for name in ("beta1", "beta2"):
        if not 0 <= getattr(cfg, name) < 1:
            raise MedMNISTLabError(f"{name} must be in [0, 1), got {getattr(cfg, name)}")


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range of the generator's tanh."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded."""
    return ((x + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


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


def train_one_epoch(
    g: nn.Module,
    d: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    loss: GANLoss,
    x: torch.Tensor,
    y: torch.Tensor,
    batches: list[torch.Tensor],
    nz: int,
    gen: torch.Generator,
) -> dict[str, float]:
    g.train()
    d.train()
    sums = torch.zeros(4, device=x.device)  # loss_d, loss_g, D(x), D(G(z)), weighted by batch size
    for idx in batches:
        real, labels = x[idx], y[idx]
        z = torch.randn(len(idx), nz, generator=gen, device=x.device)
        fake = g(z, labels)
        # Real and fake go through D in separate batches, as in the DCGAN code: mixing them
        # would let batch norm statistics leak which half is real.
        d_real, d_fake = d(real, labels), d(fake.detach(), labels)
        loss_d = loss.d(d_real, d_fake)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        loss_g = loss.g(d(fake, labels))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

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


def _write_history(run_dir: Path, history: list[dict]) -> None:
    # Rewritten from the checkpoint's copy, so after a crash and --resume it never lists epochs
    # that the checkpoint does not contain.
    tmp = run_dir / ".history.jsonl.tmp"
    tmp.write_text("".join(json.dumps(h) + "\n" for h in history))
    tmp.replace(run_dir / "history.jsonl")


def _check_resumable(cfg: GANConfig, saved: dict, path: Path) -> None:
    diffs = [
        f"{f.name}={saved.get(f.name)!r} in the checkpoint vs {getattr(cfg, f.name)!r} now"
        for f in fields(cfg)
        if f.name not in RESUMABLE_CHANGES and saved.get(f.name) != getattr(cfg, f.name)
    ]
    if diffs:
        raise CheckpointError(f"cannot resume {path}: settings differ ({'; '.join(diffs)})")


def train_gan(cfg: GANConfig) -> GANRunResult:
    _check_config(cfg)
    info = get_dataset(cfg.dataset)
    cfg.dataset, cfg.mode = info.flag, MODES.canonical(cfg.mode)
    spec = make_spec(info, cfg.mode, cfg.size, cfg.nz, cfg.width)
    mode, loss = MODES.get(spec.mode), LOSSES.get(cfg.loss)
    cfg.loss = loss.name
    device = resolve_device(cfg.device)
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    ckpt_path = run_dir / "last.pt"
    if ckpt_path.exists() and not cfg.resume:
        raise MedMNISTLabError(f"{ckpt_path} exists; pass --resume to continue it, or choose another --out")
    if cfg.resume and not ckpt_path.exists():
        raise MedMNISTLabError(f"--resume given but {ckpt_path} does not exist; nothing to resume")

    data = load_split(info, "train", cfg.size, cfg.root)
    x = to_unit(data.images.to(device))  # (N, C, H, W) in [-1, 1], the whole split on the device
    y = data.labels[:, 0].to(device)
    counts = torch.bincount(data.labels[:, 0], minlength=spec.n_classes).tolist()
    empty = [spec.class_names[k] for k, n in enumerate(counts) if n == 0]
    if empty:
        raise MedMNISTLabError(
            f"{data.source} has no training images of class(es) {', '.join(empty)}; cannot learn them"
        )

    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        g, d = build_nets(spec)
    g, d = g.to(device), d.to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    fixed_labels = torch.arange(spec.n_classes, device=device).repeat_interleave(GRID_COLUMNS)
    # The same z in every row: in conditional mode a column shows what the label alone changes.
    fixed_noise = torch.randn(GRID_COLUMNS, spec.nz, generator=gen, device=device).repeat(spec.n_classes, 1)
    start, history = 0, []

    if cfg.resume:
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        _check_resumable(cfg, ckpt["config"], ckpt_path)
        g.load_state_dict(ckpt["generator"])
        d.load_state_dict(ckpt["discriminator"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        fixed_noise = ckpt["fixed_noise"].to(device)
        start, history = int(ckpt["epoch"]), list(ckpt["history"])
        if ckpt.get("rng_device") == device.type:
            gen.set_state(ckpt["rng"])
        else:  # a CUDA generator's state means nothing to a CPU one
            print(
                f"note: resumed on {device.type}, trained on {ckpt.get('rng_device')}: random stream reseeded",
                file=sys.stderr,
            )
            gen.manual_seed(cfg.seed + start)
        if start >= cfg.epochs:
            raise MedMNISTLabError(f"{ckpt_path} already has {start} epochs; pass --epochs above {start} to train on")

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({"config": asdict(cfg), "spec": spec.to_dict()}, indent=2))

    def checkpoint(epoch: int) -> None:
        atomic_save(
            {
                "format": FORMAT,
                "version": VERSION,
                "spec": spec.to_dict(),
                "config": asdict(cfg),
                "epoch": epoch,
                "class_counts": counts,  # real train counts: what --balance and --ratio refer to
                "generator": g.state_dict(),
                "discriminator": d.state_dict(),
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "rng": gen.get_state(),
                "rng_device": device.type,
                "fixed_noise": fixed_noise,
                "history": history,
            },
            ckpt_path,
        )
        _write_history(run_dir, history)

    grids: list[Path] = []
    bar = tqdm(
        range(start + 1, cfg.epochs + 1),
        desc=f"gan {spec.dataset} {spec.mode}",
        unit="epoch",
        disable=not cfg.progress,
        initial=start,
        total=cfg.epochs,
        dynamic_ncols=True,
    )
    for epoch in bar:
        t0 = time.perf_counter()
        batches = epoch_batches(y, spec.n_classes, cfg.batch_size, mode.class_pure_batches, gen)
        stats = train_one_epoch(g, d, opt_g, opt_d, loss, x, y, batches, spec.nz, gen)
        stats = {"epoch": epoch, **stats, "seconds": time.perf_counter() - t0}
        history.append(stats)
        bar.set_postfix(
            d=f"{stats['loss_d']:.3f}",
            g=f"{stats['loss_g']:.3f}",
            Dx=f"{stats['d_real']:.2f}",
            DGz=f"{stats['d_fake']:.2f}",
            s_ep=f"{stats['seconds']:.1f}",
        )
        if epoch % cfg.sample_every == 0 or epoch == cfg.epochs:
            grids.append(save_grid(g, spec, fixed_noise, fixed_labels, run_dir / "samples" / f"epoch_{epoch:04d}.png"))
        if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
            checkpoint(epoch)
    bar.close()
    return GANRunResult(run_dir, ckpt_path, cfg.epochs, history, grids)
