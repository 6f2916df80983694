"""Extra cost of each augmentation policy per training step, as a ratio to `none`.

One full training step of ResNet-18 (augment -> normalise -> mix -> forward -> loss -> backward
-> SGD step) on a batch of uint8 images, for every policy, interleaved in one run: each round
times every policy once, in a fresh random order, so drifting load on a shared machine hits all
of them alike. Reports medians over the rounds (warm-up rounds excluded) and the augmentation
time alone. Images are random smooth uint8 images (augmentation cost does not depend on
content); the model comes from `medmnist_lab.models.create_model("resnet18")`, else from
torchvision's resnet18 with the CIFAR stem (3x3 stride-1 conv, no max-pool).

    python benchmarks/augment_cost.py --steps 10            # markdown table on stdout
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F

from medmnist_lab.augment import POLICIES, build_augment
from medmnist_lab.engine.device import autocast, cpu_name, resolve_precision


def make_model(channels: int, classes: int, size: int) -> tuple[torch.nn.Module, str]:
    try:
        from medmnist_lab.models import create_model
    except ImportError:
        import torchvision

        model = torchvision.models.resnet18(num_classes=classes)
        model.conv1 = torch.nn.Conv2d(channels, 64, 3, 1, 1, bias=False)
        model.maxpool = torch.nn.Identity()
        return model, "torchvision resnet18, CIFAR stem"
    return create_model("resnet18", channels, classes, size), "medmnist_lab create_model('resnet18')"


def main() -> None:
    default_policies = [n for n in POLICIES if POLICIES.get(n).kind == "image"] + ["mixup", "cutmix"]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10, help="timed rounds (each times every policy once)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--channels", type=int, choices=(1, 3), default=3)
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--policies", nargs="+", default=default_policies)
    ap.add_argument(
        "--amp",
        choices=["on", "off", "auto"],
        default="auto",
        help="mixed precision as in `train` (auto: bf16 where safe)",
    )
    args = ap.parse_args()
    if "none" not in args.policies:
        args.policies.insert(0, "none")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    # The same precision choice as the training engine, so the step is the one `train` runs.
    precision = resolve_precision(device, {"on": True, "off": False, "auto": None}[args.amp])

    torch.manual_seed(0)
    model, model_source = make_model(args.channels, args.classes, args.size)
    model = model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    raw = torch.randint(0, 256, (args.batch_size, args.channels, args.size, args.size)).float()
    images = F.avg_pool2d(raw, 3, 1, 1).round().to(torch.uint8).to(device)
    labels = torch.randint(0, args.classes, (args.batch_size,), device=device)
    targets = F.one_hot(labels, args.classes).float()
    augs = {p: build_augment(p, args.size, args.channels) for p in args.policies}
    gen = torch.Generator(device=device).manual_seed(0)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(name: str) -> tuple[float, float]:
        aug = augs[name]
        sync()
        t0 = time.perf_counter()
        x = aug.images(images, gen).float().div_(127.5).sub_(1)
        y = targets
        if aug.mixes:
            x, y = aug.mix(x, y, gen)
        sync()
        t1 = time.perf_counter()
        with autocast(device, precision):
            logits = model(x)
        loss = torch.sum(-y * F.log_softmax(logits.float(), 1), 1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
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

    base = statistics.median(t for t, _ in times["none"])
    print(
        f"ResNet-18 training step, batch {args.batch_size}, {args.size} px, {args.channels} channel(s), "
        f"{args.device}, precision {precision.name}; model: {model_source}\n"
        f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.steps} timed rounds (+{args.warmup} warm-up), medians; policies interleaved in "
        "random order each round\n"
    )
    print("| policy | step ms | ratio to none | augment+normalise ms | share of step |")
    print("|---|---:|---:|---:|---:|")
    for name in args.policies:
        step_ms = statistics.median(t for t, _ in times[name]) * 1000
        aug_ms = statistics.median(a for _, a in times[name]) * 1000
        print(f"| {name} | {step_ms:.0f} | {step_ms / (base * 1000):.3f} | {aug_ms:.1f} | {aug_ms / step_ms:.1%} |")


if __name__ == "__main__":
    main()
