"""Images/s of the full training step next to the bare model step, side by side in one run.

full step = DeviceBatcher (shuffle, gather, uint8 -> normalised float) + forward + loss +
backward + optimizer + scheduler, exactly as `fit` runs it; bare step = the same model step on a
batch already in place as float. The ratio full/bare shows what the data path costs.
Synthetic uint8 data of the right shape is used (throughput does not depend on pixel values).

    python benchmarks/throughput.py --models resnet18 resnet50 --sizes 28 64 128 224
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from medmnist_lab.engine.batcher import DeviceBatcher
from medmnist_lab.engine.config import resolve_config
from medmnist_lab.engine.device import autocast, resolve_device, resolve_precision
from medmnist_lab.engine.schedule import build_optimizer, build_scheduler
from medmnist_lab.engine.tasks import task_loss
from medmnist_lab.models import create_model


def step(model, x, y, opt, sched, device, precision) -> None:
    with autocast(device, precision):
        logits = model(x)
    loss = task_loss(logits, y, multilabel=False)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()


def measure(
    model_name: str,
    size: int,
    batch: int,
    steps: int,
    warmup: int,
    device,
    precision,
    channels_last: bool,
    reps: int,
    compile_model: bool = False,
):
    torch.manual_seed(0)
    n = batch * (steps + warmup)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)
    labels = torch.randint(0, 9, (n, 1))
    config = resolve_config("pathmnist", size=size, batch_size=batch)
    model = create_model(model_name, 3, 9, size).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = build_optimizer(model, config)
    if compile_model:  # the optimizer holds the parameters; the compiled wrapper shares them
        model = torch.compile(model)
    sched = build_scheduler(opt, config, steps + warmup)
    batcher = DeviceBatcher(
        images,
        labels,
        batch,
        device,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
        channels_last=channels_last,
    )
    x0, y0 = next(iter(batcher))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def bare() -> float:
        for _ in range(warmup):
            step(model, x0, y0, opt, sched, device, precision)
        sync()
        t = time.perf_counter()
        for _ in range(steps):
            step(model, x0, y0, opt, sched, device, precision)
        sync()
        return steps * batch / (time.perf_counter() - t)

    def full() -> float:
        it = iter(batcher)
        for _ in range(warmup):
            x, y = next(it)
            step(model, x, y, opt, sched, device, precision)
        sync()
        t = time.perf_counter()
        for _ in range(steps):
            x, y = next(it)
            step(model, x, y, opt, sched, device, precision)
        sync()
        return steps * batch / (time.perf_counter() - t)

    # Interleaved repetitions, so drift on a shared machine hits both alike.
    bares, fulls = [], []
    for _ in range(reps):
        bares.append(bare())
        fulls.append(full())
    return statistics.median(bares), statistics.median(fulls)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    p.add_argument("--sizes", nargs="+", type=int, default=[28, 64, 128, 224])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", choices=["on", "off", "auto"], default="auto")
    p.add_argument("--channels-last", choices=["on", "off", "auto"], default="auto")
    p.add_argument("--compile", nargs="+", choices=["on", "off"], default=["off"], help="torch.compile the model")
    args = p.parse_args()
    device = resolve_device(args.device)
    precision = resolve_precision(device, {"on": True, "off": False, "auto": None}[args.amp])
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
        bare, full = measure(name, size, batch, args.steps, args.warmup, device, precision, cl, args.reps, comp == "on")
        print(f"| {name} | {size} | {comp} | {bare:.1f} | {full:.1f} | {full / bare:.3f} |", flush=True)


if __name__ == "__main__":
    main()
