"""Images/s of the full training step next to the bare model step, side by side in one run.

full step = the Session's DeviceBatcher (shuffle, gather, uint8 -> normalised float) +
`engine.train_step` (forward, loss, backward, optimizer, scheduler), exactly as `fit` runs it;
bare step = `engine.train_step` on a batch already in place. The ratio full/bare shows what the data
path costs. Synthetic uint8 data of the right shape is used (throughput does not depend on pixel
values; benchmarks/_session.py).

    python benchmarks/throughput.py --models resnet18 resnet50 --sizes 28 64 128 224
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _session import endless_batches, sync, synthetic_session

from medmnist_lab.engine import train_step
from medmnist_lab.engine.device import resolve_device, resolve_precision


def measure(
    model_name: str,
    size: int,
    batch: int,
    steps: int,
    warmup: int,
    device: str,
    precision: str,
    channels_last: bool,
    reps: int,
    compile_model: bool = False,
) -> tuple[float, float, str]:
    """(bare img/s, full img/s, the precision the session resolved to)."""
    tmp = tempfile.TemporaryDirectory()  # kept until the end: 128/224 px splits are memory-mapped from it
    s = synthetic_session(
        Path(tmp.name), "pathmnist", size, batch * (steps + warmup), model=model_name, batch_size=batch,
        device=device, precision=precision, channels_last=channels_last, compile=compile_model,
    )  # fmt: skip
    s.step_model.train()
    batches = endless_batches(s)
    x0, y0 = next(batches)

    def bare() -> float:  # the step on a batch already in place
        for _ in range(warmup):
            train_step(s, x0, y0)
        sync(s.device)
        t = time.perf_counter()
        for _ in range(steps):
            train_step(s, x0, y0)
        sync(s.device)
        return steps * batch / (time.perf_counter() - t)

    def full() -> float:  # the same step with the batcher's shuffle, gather and normalisation
        for _ in range(warmup):
            train_step(s, *next(batches))
        sync(s.device)
        t = time.perf_counter()
        for _ in range(steps):
            train_step(s, *next(batches))
        sync(s.device)
        return steps * batch / (time.perf_counter() - t)

    # Interleaved repetitions, so drift on a shared machine hits both alike.
    bares, fulls = [], []
    for _ in range(reps):
        bares.append(bare())
        fulls.append(full())
    tmp.cleanup()
    return statistics.median(bares), statistics.median(fulls), s.precision.name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    p.add_argument("--sizes", nargs="+", type=int, default=[28, 64, 128, 224])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto", help="as `train --precision`"
    )
    p.add_argument("--channels-last", choices=["on", "off", "auto"], default="auto")
    p.add_argument("--compile", nargs="+", choices=["on", "off"], default=["off"], help="torch.compile the model")
    args = p.parse_args()
    device = resolve_device(args.device)
    precision = resolve_precision(device, precision=args.precision)
    cl = {"on": True, "off": False, "auto": device.type == "cuda"}[args.channels_last]
    print(
        f"device={device} precision={precision.name} channels_last={cl} torch={torch.__version__} "
        f"threads={torch.get_num_threads()} cpu={platform.processor() or platform.machine()}"
    )
    print(f"batch={args.batch_size} steps={args.steps} warmup={args.warmup} reps={args.reps} (medians)\n")
    print("| model | size | compile | bare img/s | full img/s | full / bare |")
    print("|---|---|---|---|---|---|")
    for name, size, comp in ((n, s, c) for n in args.models for s in args.sizes for c in args.compile):
        # Large inputs on a CPU: smaller batches, or one step takes minutes.
        small = max(8, int(args.batch_size * min(1, (28 / size) ** 2 * 4)))
        batch = args.batch_size if device.type != "cpu" else small
        bare, full, _ = measure(
            name, size, batch, args.steps, args.warmup, str(device), args.precision, cl, args.reps, comp == "on"
        )
        print(f"| {name} | {size} | {comp} | {bare:.1f} | {full:.1f} | {full / bare:.3f} |", flush=True)


if __name__ == "__main__":
    main()
