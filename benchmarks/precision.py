"""fp32 vs bf16 autocast, with and without channels_last: `engine.train_step` (the step `fit` runs)
on one batch each, the variants interleaved in every repetition so drifting load hits them alike;
medians. Each variant is a Session of the `medmnist-v2` recipe over synthetic RetinaMNIST-shaped
images (3 channels, 5 classes; benchmarks/_session.py).

    python benchmarks/precision.py --model resnet18 --size 28 --reps 4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _session import endless_batches, sync, synthetic_session

from medmnist_lab.engine import Session, train_step

VARIANTS = {  # name: (RunConfig.precision, channels_last)
    "fp32": ("fp32", False),
    "fp32+channels_last": ("fp32", True),
    "bf16": ("bf16", False),
    "bf16+channels_last": ("bf16", True),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--width", type=int, default=None, help="model width (default: the model's; tests use a tiny one)")
    args = p.parse_args()
    tmp = tempfile.TemporaryDirectory()
    sessions: dict[str, Session] = {}
    batches: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, (precision, cl) in VARIANTS.items():
        s = synthetic_session(
            Path(tmp.name), "retinamnist", args.size, args.batch_size, model=args.model,
            batch_size=args.batch_size, device=args.device, precision=precision, channels_last=cl,
            **({} if args.width is None else {"width": args.width}),
        )  # fmt: skip
        s.step_model.train()
        sessions[name], batches[name] = s, next(endless_batches(s))

    def step(name: str) -> float:
        s = sessions[name]
        sync(s.device)
        t = time.perf_counter()
        train_step(s, *batches[name])
        sync(s.device)
        return time.perf_counter() - t

    for name in sessions:  # warm-up: oneDNN builds its kernels on first use
        step(name)
        step(name)
    times: dict[str, list[float]] = {n: [] for n in sessions}
    for _ in range(args.reps):
        for name in sessions:
            times[name].append(step(name))
    tmp.cleanup()
    base = statistics.median(times["fp32"])
    print(
        f"{args.model}, {args.size} px, batch {args.batch_size}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {args.reps} interleaved reps, medians\n"
    )
    print("| variant | s/step | img/s | speed vs fp32 |\n|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.3f} | {args.batch_size / med:.0f} | {base / med:.2f}x |")


if __name__ == "__main__":
    main()
