"""Time estimates for `study run --dry-run`: epochs x training images / measured images per second.

The speed comes from evidence, never from a table of guesses: the `images_per_s` that finished
cells of the same model, size and device recorded in their history, else a short measurement on
this machine (a few training steps of the real model at the cell's size and batch).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from medmnist_lab.experiments.spec import Cell
from medmnist_lab.experiments.store import ResultStore

EVAL_OVERHEAD = 1.15  # validation each epoch + the final scoring, measured ~10-15% at 28 px
CALIBRATION_STEPS = 3
WARMUP_STEPS = 2


def _key(config: Any) -> tuple:
    return (config.model, config.size, config.width, config.as_rgb, config.dataset, config.device, config.amp)


def recorded_speed(store: ResultStore | None) -> dict[tuple, float]:
    """Median images/s of finished cells' epochs, per (model, size, width, rgb, dataset, device, amp)."""
    if store is None:
        return {}
    from medmnist_lab.engine import RunConfig

    speeds: dict[tuple, list[float]] = {}
    for row in store.rows(statuses=["done"]):
        hist = Path(row.run_dir or "") / "history.jsonl"
        if not hist.is_file():
            continue
        values = [json.loads(line).get("images_per_s") for line in hist.read_text().splitlines() if line]
        values = [v for v in values if v]
        if values:
            speeds.setdefault(_key(RunConfig.from_dict(row.config)), []).extend(values)
    return {k: statistics.median(v) for k, v in speeds.items()}


def measure_speed(config: Any) -> float:
    """Images/s of a few real training steps (model, size, batch, precision of the cell)."""
    import torch

    from medmnist_lab.data.registry import get_dataset
    from medmnist_lab.engine.device import autocast, resolve_device, resolve_precision
    from medmnist_lab.engine.tasks import task_loss
    from medmnist_lab.engine.train import build_model

    info = get_dataset(config.dataset, warn_alias=False)
    device = resolve_device(config.device)
    precision = resolve_precision(device, config.amp)
    model = build_model(config, info).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    channels = 3 if config.as_rgb else info.n_channels
    batch = min(config.batch_size, 64)
    x = torch.randn(batch, channels, config.size, config.size, device=device)
    y = torch.zeros(batch, 1 if not info.is_multilabel else info.n_classes, dtype=torch.long, device=device)
    times = []
    for _ in range(WARMUP_STEPS + CALIBRATION_STEPS):  # warm-up steps (allocator, kernels) not counted
        t0 = time.perf_counter()
        with autocast(device, precision):
            out = model(x)
        loss = task_loss(out, y if not info.is_multilabel else y.float(), info.is_multilabel, 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times[WARMUP_STEPS:])


def train_count(config: Any) -> int:
    from medmnist_lab.data.registry import get_dataset

    n = get_dataset(config.dataset, warn_alias=False).n_samples["train"]
    if config.subset:
        n = min(n, config.subset)
    if config.synthetic_ratio:
        n += int(n * config.synthetic_ratio)
    return n


def estimate(cells: list[Cell], store: ResultStore | None = None) -> dict[str, tuple[float, str]]:
    """hash -> (estimated seconds, where the speed came from)."""
    speeds = {k: (v, "recorded") for k, v in recorded_speed(store).items()}
    out = {}
    for cell in cells:
        key = _key(cell.config)
        if key not in speeds:
            speeds[key] = (measure_speed(cell.config), "measured")
        img_s, source = speeds[key]
        out[cell.hash] = (cell.config.epochs * train_count(cell.config) / img_s * EVAL_OVERHEAD, source)
    return out
