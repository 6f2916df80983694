"""fp32 vs bf16 autocast, with and without channels_last: one full ResNet training step each,
the variants interleaved in every repetition so drifting load hits them alike; medians.

    python benchmarks/precision.py --model resnet18 --size 28 --reps 4
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from medmnist_lab.models import create_model

VARIANTS = {  # name: (autocast dtype or None, channels_last)
    "fp32": (None, False),
    "fp32+channels_last": (None, True),
    "bf16": (torch.bfloat16, False),
    "bf16+channels_last": (torch.bfloat16, True),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--reps", type=int, default=4)
    args = p.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.size, args.size)
    y = torch.randint(0, 5, (args.batch_size,))
    setups = {}
    for name, (dtype, cl) in VARIANTS.items():
        model = create_model(args.model, 3, 5, args.size)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        setups[name] = (model, torch.optim.Adam(model.parameters()), dtype, cl)

    def step(name: str) -> float:
        model, opt, dtype, cl = setups[name]
        xx = x.contiguous(memory_format=torch.channels_last) if cl else x
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            out = model(xx)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - t

    for name in setups:  # warm-up: oneDNN builds its kernels on first use
        step(name)
        step(name)
    times: dict[str, list[float]] = {n: [] for n in setups}
    for _ in range(args.reps):
        for name in setups:
            times[name].append(step(name))
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
