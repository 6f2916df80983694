"""One training epoch of every registry dataset at its real split sizes, to project the time of all 12.

For each MedMNIST 2D dataset: synthetic uint8 images of its real train-split size, channels and
classes (TissueMNIST: 165,466 train images) at --size px in a Session of the recipe
(benchmarks/_session.py), one epoch of `fit`'s training loop (`engine.train_step` over every batch)
and `fit`'s validation pass. Pixel values do not change the cost, so the timing
projects a real run: epochs x (train epoch + val pass) + one test pass. Writes JSON.

    python benchmarks/epoch_projection.py --device cuda --out $OUT/projection.json
    python benchmarks/epoch_projection.py --device cpu --fraction 0.01   # a quick CPU check
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from _session import sync, synthetic_session

from medmnist_lab.data.registry import list_datasets
from medmnist_lab.engine.train import train_one_epoch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--recipe", default="fast")
    ap.add_argument("--fraction", type=float, default=1.0, help="of each split (1.0: the real sizes)")
    ap.add_argument("--datasets", nargs="+", default=None, help="default: every 2D dataset")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    device, precision = None, None
    for info in (i for i in list_datasets() if not i.is_3d):  # 2D only: the session builds images
        if args.datasets and info.flag not in args.datasets:
            continue
        n_train = max(1, int(info.n_samples["train"] * args.fraction))
        n_val = max(1, int(info.n_samples["val"] * args.fraction))
        n_test = max(1, int(info.n_samples["test"] * args.fraction))
        with tempfile.TemporaryDirectory() as tmp:
            s = synthetic_session(
                Path(tmp), info.flag, args.size, n_train, n_val, recipe=args.recipe, device=args.device
            )
            device, precision = s.device, s.precision
            sync(device)
            t0 = time.perf_counter()
            train_one_epoch(s, progress=False)  # fit's epoch: engine.train_step over every batch
            sync(device)
            train_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            s.score(s.val)  # fit's validation pass
            sync(device)
            val_s = time.perf_counter() - t0
            epochs = s.config.epochs
            del s
        test_s = val_s * n_test / n_val
        projected = epochs * (train_s + val_s) + test_s  # val every epoch, test once
        rows.append({"dataset": info.flag, "n_train": n_train, "train_epoch_s": train_s, "val_s": val_s,
                     "test_s": test_s, "epochs": epochs, "projected_run_s": projected})  # fmt: skip
        print(
            f"{info.flag:<15} n={n_train:>7} epoch {train_s:7.2f}s val {val_s:6.2f}s -> {projected:8.1f}s", flush=True
        )
    total = sum(r["projected_run_s"] for r in rows)
    result = {
        "device": str(device),
        "precision": precision.name if precision else None,
        "size": args.size,
        "recipe": args.recipe,
        "fraction": args.fraction,
        "datasets": rows,
        "projected_total_s": total,
    }
    if device is not None and device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name()
    print(f"all {len(rows)} datasets, one run each ({args.recipe}): {total:.0f}s projected")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
