"""Time estimates for `study run --dry-run`, from speeds recorded on this machine.

A cell's wall time is modelled as

    setup + epochs x (train images x t_train + val images x t_eval) + (train + val + test) x t_score

t_train is the real training step (`engine.train.train_one_epoch` on a `Session`: the cell's recipe,
augmentation, EMA, precision and batch), t_eval one validation pass per image (with the cell's
test-time flips), t_score the final fp32 scoring, setup the data loading and model building.

The coefficients come from evidence, never from a table of guesses, in this order: finished cells
of the same study (their history and wall time), else the speed cache of this machine
(`~/.cache/medmnist-lab/speeds.json`, or `$MEDMNIST_LAB_CACHE`; keyed by CPU, threads, torch
version, device, model, width, size, channels, precision, batch, augmentation, EMA and flips),
else a measurement now: a session on a few batches of the cell's real data, timed after a warm-up
epoch, whose result is written to the cache so that the next dry run answers at once.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.studies.spec import Cell
from medmnist_lab.studies.store import ResultStore

CACHE_ENV = "MEDMNIST_LAB_CACHE"
MEASURE_BATCHES = 2  # timed training steps per measurement (after one warm-up epoch of the same size)
MAX_EVAL_IMAGES = 512  # validation images timed per measurement


@dataclass(frozen=True)
class Speed:
    """Seconds per image of a training step, a validation pass and the final fp32 scoring, and the
    fixed seconds of a cell (data loading, model building, first-step warm-up)."""

    t_train: float
    t_eval: float
    t_score: float
    setup: float
    source: str = "measured"  # measured | cache | study

    def cell_seconds(self, epochs: int, counts: dict[str, int]) -> float:
        per_epoch = counts["train"] * self.t_train + counts["val"] * self.t_eval
        return self.setup + epochs * per_epoch + sum(counts.values()) * self.t_score


def cache_path() -> Path:
    folder = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "medmnist-lab"
    return Path(folder) / "speeds.json"


def speed_key(config: Any, threads: int) -> str:
    """What a step's speed depends on; one cache entry per distinct key."""
    import torch

    from medmnist_lab.data.registry import get_dataset
    from medmnist_lab.engine.device import cpu_name, resolve_device, training_precision
    from medmnist_lab.models.resnet import default_stem

    info = get_dataset(config.dataset, warn_alias=False)
    device = resolve_device(config.device)
    fields = {
        "cpu": cpu_name(),
        "threads": threads,
        "torch": torch.__version__,
        "device": str(device),
        "model": config.model,
        "width": config.width,
        "stem": config.stem or default_stem(config.size),
        "optimizer": config.optimizer,
        "size": config.size,
        "channels": 3 if config.as_rgb else info.n_channels,
        "classes": info.n_classes,
        "precision": training_precision(device, config).name,
        "batch": config.batch_size,
        "augment": config.augment,
        "ema": config.ema > 0,
        "tta": config.tta,
        "channels_last": config.channels_last,
        "compile": config.compile,
    }
    if config.conv is not None:  # a volume's step depends on the convolution type (2D keys unchanged)
        fields["conv"] = config.conv
    return json.dumps(fields, sort_keys=True)


def _labels(path: Path, split: str) -> np.ndarray | None:
    """The labels of one split of an npz file (a few kB, read without its images), or None."""
    try:
        with np.load(path) as arrays:
            return np.asarray(arrays[f"{split}_labels"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None  # no local file (yet): the registry's counts stand in


def image_counts(config: Any) -> dict[str, int]:
    """Images per split that a cell trains and scores on: the files' own counts where they are
    here (a `train_npz`, a subset, synthetic samples added), else the registry's."""
    from medmnist_lab.data.paths import data_path
    from medmnist_lab.data.registry import SPLITS, get_dataset
    from medmnist_lab.studies import synthetic

    info = get_dataset(config.dataset, warn_alias=False)
    official = data_path(info, config.size, config.root)
    counts = dict(info.n_samples)
    labels = {}
    for split in SPLITS:
        path = Path(config.train_npz) if split == "train" and config.train_npz else official
        labels[split] = _labels(path, split)
        if labels[split] is not None:
            counts[split] = len(labels[split])
    n = counts["train"] = min(counts["train"], config.subset or counts["train"])
    if synthetic.is_named(config.synthetic):  # class-balancing samples: up to the largest class
        train = labels["train"]
        if train is not None and not info.is_multilabel:
            per_class = np.bincount(train[:n, 0], minlength=info.n_classes)
            counts["train"] += int(per_class.max() * info.n_classes - n)
    elif config.synthetic and config.synthetic_ratio:
        counts["train"] += round(config.synthetic_ratio * n)
    elif config.synthetic:
        extra = _labels(Path(config.synthetic), "train")
        counts["train"] += 0 if extra is None else len(extra)
    return counts


def read_cache() -> dict[str, dict[str, float]]:
    path = cache_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # no cache yet, or an unreadable one: measure again (and rewrite it)
    return data if isinstance(data, dict) else {}


def write_cache(entries: dict[str, dict[str, float]]) -> None:
    from medmnist_lab.outputs import atomic_path

    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
    except OSError as exc:  # a read-only home: the estimate still stands, it is only not remembered
        print(f"note: could not write the speed cache {path} ({exc})", file=sys.stderr)


def measure(config: Any, threads: int) -> Speed:
    """Time the real training step and evaluation of `config` on a few batches of its data."""
    import torch

    # What a study worker has loaded before its cell starts (the forkserver preloads it): without it
    # the first build would time torch._dynamo's import (~4 s) as part of every cell's setup.
    import medmnist_lab.studies.preload  # noqa: F401
    from medmnist_lab.data.registry import get_dataset
    from medmnist_lab.engine.device import SCORE_PRECISION, resolve_precision
    from medmnist_lab.engine.train import build_session, train_one_epoch
    from medmnist_lab.studies import synthetic

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        info = get_dataset(config.dataset, warn_alias=False)
        if synthetic.is_named(config.synthetic):  # a GAN the study trains first: time real images
            config = replace(config, synthetic=None, synthetic_ratio=None)
        real = image_counts(replace(config, subset=None, synthetic=None, synthetic_ratio=None))["train"]
        n = min(real, config.subset or real, config.batch_size * MEASURE_BATCHES)
        t0 = time.perf_counter()
        s = build_session(replace(config, subset=n, epochs=max(config.epochs, 2)), info)
        setup = time.perf_counter() - t0
        t0 = time.perf_counter()
        train_one_epoch(s, progress=False)  # warm-up: allocator, kernels, first-touch of the data
        warmup = time.perf_counter() - t0
        t0 = time.perf_counter()
        train_one_epoch(s, progress=False)
        trained = len(s.train.labels)  # n real images, plus synthetic ones where the cell adds them
        t_train = (time.perf_counter() - t0) / trained
        val = s.val
        if len(val) > MAX_EVAL_IMAGES:
            val = replace(val, images=val.images[:MAX_EVAL_IMAGES], labels=val.labels[:MAX_EVAL_IMAGES])
        s.score(val)  # warm-up of the evaluation path
        t0 = time.perf_counter()
        s.score(val)
        t_eval = (time.perf_counter() - t0) / len(val)
        t0 = time.perf_counter()
        s.score(val, s.model, resolve_precision(s.device, precision=SCORE_PRECISION))
        t_score = (time.perf_counter() - t0) / len(val)
    finally:
        torch.set_num_threads(before)
    # The warm-up epoch's extra time is paid once per cell, like loading the data.
    return Speed(t_train, t_eval, t_score, setup + max(0.0, warmup - t_train * trained))


def from_study(store: ResultStore | None, threads: int) -> dict[str, Speed]:
    """Speeds of finished cells of this study: the training and validation parts of each epoch from
    its history, the rest of the cell's wall time as setup (with the final scoring)."""
    if store is None:
        return {}
    from medmnist_lab.engine import RunConfig

    found: dict[str, list[tuple[float, float, float]]] = {}
    for row in store.rows(statuses=["done"]):
        hist = Path(row.run_dir or "") / "history.jsonl"
        if not hist.is_file() or not row.seconds:
            continue
        config = RunConfig.from_dict(row.config)
        try:
            key = speed_key(config, threads)
        except MedMNISTLabError:
            continue  # e.g. a cell that ran on CUDA, read on a CPU-only machine: not this machine's speed
        counts = image_counts(config)
        epochs = [json.loads(line) for line in hist.read_text().splitlines() if line]
        epochs = [e for e in epochs if e.get("images_per_s") and e.get("seconds")]
        if not epochs:
            continue
        t_train = statistics.median(1 / e["images_per_s"] for e in epochs)
        t_eval = statistics.median(max(0.0, e["seconds"] - counts["train"] * t_train) for e in epochs) / counts["val"]
        rest = max(0.0, row.seconds - sum(e["seconds"] for e in epochs))
        found.setdefault(key, []).append((t_train, t_eval, rest))
    out = {}
    for key, values in found.items():
        t_train, t_eval, rest = (statistics.median(v[i] for v in values) for i in range(3))
        out[key] = Speed(t_train, t_eval, 0.0, rest, "study")  # final scoring is inside `rest`
    return out


def estimate(
    cells: list[Cell],
    store: ResultStore | None = None,
    *,
    threads: int | None = None,
    on_measure: Callable[[int, int, Any], None] | None = None,
) -> dict[str, tuple[float, str]]:
    """hash -> (estimated seconds of the cell, where its speed came from: study | cache | measured).
    `on_measure(i, n, config)` is called before each of the n measurements this needs."""
    import torch

    threads = threads or torch.get_num_threads()
    speeds = from_study(store, threads)
    cache = read_cache()
    for key, entry in cache.items():
        if key not in speeds:
            try:
                speeds[key] = Speed(**{**entry, "source": "cache"})
            except TypeError:
                continue  # an entry of another format: measured again below
    keys = {cell.hash: speed_key(cell.config, threads) for cell in cells}
    missing: dict[str, Any] = {}
    for cell in cells:
        if keys[cell.hash] not in speeds:
            missing.setdefault(keys[cell.hash], cell.config)
    for i, (key, config) in enumerate(missing.items()):
        if on_measure is not None:
            on_measure(i, len(missing), config)
        speeds[key] = measure(config, threads)
        cache[key] = {k: v for k, v in asdict(speeds[key]).items() if k != "source"}
    if missing:
        write_cache(cache)
    out = {}
    for cell in cells:
        speed = speeds[keys[cell.hash]]
        out[cell.hash] = (speed.cell_seconds(cell.config.epochs, image_counts(cell.config)), speed.source)
    return out
