"""Extra cost of each augmentation policy per training step, as a ratio to `none`.

For every policy, a Session of the `medmnist-v2` recipe with that `--augment` (benchmarks/_session.py:
synthetic uint8 images of the dataset's shape; augmentation cost does not depend on content), and
one full training step: the session's batcher (gather, augment, normalise on the device) then
`engine.train_step` (mix, forward, loss, backward, optimizer), exactly as `fit` runs them. The
policies are interleaved: each round times every policy once, in a fresh random order, so drifting
load on a shared machine hits all of them alike. Reports medians over the rounds (warm-up rounds
excluded) and the batch time alone (gather + augment + normalise).

    python benchmarks/augment_cost.py --steps 10            # markdown table on stdout
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _session import endless_batches, sync, synthetic_session

from medmnist_lab.augment import POLICIES
from medmnist_lab.engine import train_step
from medmnist_lab.engine.device import cpu_name


def main() -> None:
    default_policies = [n for n in POLICIES if POLICIES.get(n).kind == "image"] + ["mixup", "cutmix"]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10, help="timed rounds (each times every policy once)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--dataset", default="retinamnist", help="whose image shape and classes (3 channels, 5 classes)")
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--policies", nargs="+", default=default_policies)
    ap.add_argument(
        "--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto", help="as `train --precision`"
    )
    args = ap.parse_args()
    if "none" not in args.policies:
        args.policies.insert(0, "none")
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    sessions = {
        p: synthetic_session(
            Path(tmp.name),
            args.dataset,
            args.size,
            args.batch_size,
            model=args.model,
            batch_size=args.batch_size,
            device=args.device,
            precision=args.precision,
            augment=p,
        )
        for p in args.policies
    }
    batches = {p: endless_batches(s) for p, s in sessions.items()}
    for s in sessions.values():
        s.step_model.train()

    def step(name: str) -> tuple[float, float]:
        s = sessions[name]
        sync(s.device)
        t0 = time.perf_counter()
        x, y = next(batches[name])  # gather, augment, normalise
        sync(s.device)
        t1 = time.perf_counter()
        train_step(s, x, y)
        sync(s.device)
        return time.perf_counter() - t0, t1 - t0

    order = list(args.policies)
    rng = random.Random(0)
    times: dict[str, list[tuple[float, float]]] = {p: [] for p in order}
    for r in range(args.warmup + args.steps):
        rng.shuffle(order)
        for name in order:
            t = step(name)
            if r >= args.warmup:
                times[name].append(t)
    tmp.cleanup()

    any_session = sessions["none"]
    base = statistics.median(t for t, _ in times["none"])
    print(
        f"{args.model} training step (engine.train_step), batch {args.batch_size}, {args.size} px, "
        f"{args.dataset}'s shape, {any_session.device}, precision {any_session.precision.name}\n"
        f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.steps} timed rounds (+{args.warmup} warm-up), medians; policies interleaved in "
        "random order each round\n"
    )
    print("| policy | step ms | ratio to none | batch (augment+normalise) ms | share of step |")
    print("|---|---:|---:|---:|---:|")
    for name in args.policies:
        step_ms = statistics.median(t for t, _ in times[name]) * 1000
        aug_ms = statistics.median(a for _, a in times[name]) * 1000
        print(f"| {name} | {step_ms:.0f} | {step_ms / (base * 1000):.3f} | {aug_ms:.1f} | {aug_ms / step_ms:.1%} |")


if __name__ == "__main__":
    main()
