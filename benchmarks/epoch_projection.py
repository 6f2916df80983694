"""One training epoch of every registry dataset at its real split sizes, to project the time of all 12.

For each MedMNIST 2D dataset: synthetic uint8 images of its real train-split size, channels and
classes (TissueMNIST: 165,466 train images) at --size px, one epoch of the `fast` recipe's training
step (DeviceBatcher + ResNet-18 forward/backward/AdamW, as `fit` runs it) and one pass over a
validation-sized split in inference mode. Pixel values do not change the cost, so the timing
projects a real run: epochs x (train epoch + val pass) + one test pass. Writes JSON.

    python benchmarks/epoch_projection.py --device cuda --out $OUT/projection.json
    python benchmarks/epoch_projection.py --device cpu --fraction 0.01   # a quick CPU check
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from medmnist_lab.data.registry import list_datasets
from medmnist_lab.engine.batcher import DeviceBatcher
from medmnist_lab.engine.config import resolve_config
from medmnist_lab.engine.device import autocast, resolve_device, resolve_precision
from medmnist_lab.engine.schedule import build_optimizer, build_scheduler
from medmnist_lab.engine.tasks import task_loss
from medmnist_lab.models import create_model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--recipe", default="fast")
    ap.add_argument("--fraction", type=float, default=1.0, help="of each split (1.0: the real sizes)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = resolve_device(args.device)
    precision = resolve_precision(device, None)
    rows = []
    for info in list_datasets():
        config = resolve_config(info.flag, args.recipe, size=args.size)
        n_train = max(config.batch_size, int(info.n_samples["train"] * args.fraction))
        n_eval = max(1, int((info.n_samples["val"] + info.n_samples["test"]) * args.fraction))
        shape = (info.n_channels, args.size, args.size)
        labels = (
            torch.randint(0, 2, (n_train, info.n_classes))
            if info.is_multilabel
            else torch.randint(0, info.n_classes, (n_train, 1))
        )
        images = torch.randint(0, 256, (n_train, *shape), dtype=torch.uint8)
        model = create_model(config.model, info.n_channels, info.n_classes, args.size).to(device)
        opt = build_optimizer(model, config)
        batches = DeviceBatcher(images, labels, config.batch_size, device, shuffle=True,
                                generator=torch.Generator().manual_seed(0))  # fmt: skip
        sched = build_scheduler(opt, config, len(batches))
        model.train()
        sync(device)
        t0 = time.perf_counter()
        for x, y in batches:
            with autocast(device, precision):
                loss = task_loss(model(x), y, info.is_multilabel, config.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        sync(device)
        train_s = time.perf_counter() - t0
        model.eval()
        evals = DeviceBatcher(
            images[:n_eval] if n_eval <= n_train else images, labels[: min(n_eval, n_train)], 1024, device
        )
        t0 = time.perf_counter()
        with torch.inference_mode():
            for x, _ in evals:
                with autocast(device, precision):
                    model(x)
        sync(device)
        eval_s = (time.perf_counter() - t0) * n_eval / max(len(evals.labels), 1)
        projected = config.epochs * (train_s + eval_s / 2) + eval_s / 2  # val every epoch, test once
        rows.append({"dataset": info.flag, "n_train": n_train, "train_epoch_s": train_s, "eval_s": eval_s,
                     "epochs": config.epochs, "projected_run_s": projected})  # fmt: skip
        print(
            f"{info.flag:<15} n={n_train:>7} epoch {train_s:7.2f}s eval {eval_s:6.2f}s -> {projected:8.1f}s", flush=True
        )
        del images, labels, model, opt
    total = sum(r["projected_run_s"] for r in rows)
    result = {"device": str(device), "precision": precision.name, "size": args.size, "recipe": args.recipe,
              "fraction": args.fraction, "datasets": rows, "projected_total_s": total}  # fmt: skip
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name()
    print(f"all {len(rows)} datasets, one run each ({args.recipe}): {total:.0f}s projected")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
