"""Peak memory of training at 224 px on a dataset larger than half the RAM (issue 11, point 5).

Writes a synthetic BreastMNIST-layout file at 224 px (grayscale, 50 KB per image) whose training
split is larger than half of this machine's RAM, in constant memory. Then, in a fresh process:
  1. the model's own: the engine's ResNet-18 (width --width) and its optimizer after one training
     step on a random batch of --batch-size 224 px images (weights, gradients, Adam state,
     activations) -> RSS baseline;
  2. the engine's real data path: `build_session` (load_split memory-maps the split through the
     .npy cache; DeviceBatcher streams shuffled batches from it) and --steps training steps of
     `fit`'s step, then a validation pass;
and samples the process's memory every 50 ms from /proc/self/status: RssAnon (memory the process
owns) and RssFile (pages of the memory-mapped file that are resident: page cache, which the
kernel reclaims under pressure and which other processes share). Reports the peaks above the
baseline. Deletes the file and its cache at the end.

    MEDMNIST_ROOT= python benchmarks/memory.py --out bench_out/memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

SIZE = 224


def meminfo(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def write_file(path: Path, n_train: int) -> int:
    """A breastmnist-layout npz (stored, not compressed) written in constant memory; its bytes."""
    from medmnist_lab.data.arrays import META_KEY

    image = SIZE * SIZE
    rng = np.random.default_rng(0)
    block = rng.integers(0, 256, 64 << 20, dtype=np.uint8).tobytes()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for split, n in (("train", n_train), ("val", 256), ("test", 256)):
            with zf.open(f"{split}_images.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(
                    f, {"descr": "|u1", "fortran_order": False, "shape": (n, SIZE, SIZE)}
                )
                left = n * image
                while left:
                    f.write(block[: min(left, len(block))])
                    left -= min(left, len(block))
            with zf.open(f"{split}_labels.npy", "w") as f:
                np.lib.format.write_array(f, (np.arange(n) % 2).astype(np.uint8)[:, None])
        with zf.open(f"{META_KEY}.npy", "w") as f:
            np.lib.format.write_array(f, np.array(json.dumps({"origin": "memory-benchmark"})))
    return n_train * image


def status() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) * 1024
    return out


def child(root: str, width: int, batch: int, steps: int) -> None:
    import torch

    from medmnist_lab.data.registry import get_dataset
    from medmnist_lab.engine.config import resolve_config
    from medmnist_lab.engine.inference import predict
    from medmnist_lab.engine.schedule import build_optimizer
    from medmnist_lab.engine.tasks import task_loss
    from medmnist_lab.engine.train import build_model, build_session, train_step

    info = get_dataset("breastmnist")
    config = resolve_config("breastmnist", size=SIZE, root=root, width=width, batch_size=batch, amp=False)
    # 1. the model's own: weights, gradients and optimizer state of one bare step, no data loaded
    # (the baseline that part 2's data path is measured against; not a `fit` step on purpose)
    model = build_model(config, info)
    opt = build_optimizer(model, config)
    x = torch.randn(batch, 1, SIZE, SIZE)
    task_loss(model(x), torch.zeros(batch, 1, dtype=torch.long), False).backward()
    opt.step()
    del x
    base = status()
    peaks = dict(base)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for k, v in status().items():
                peaks[k] = max(peaks[k], v)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # 2. the engine's data path: memory-mapped split, streamed batches, fit's step
    t0 = time.perf_counter()
    s = build_session(config, info)
    s.step_model.train()
    done = 0
    for xb, yb in s.batches:
        train_step(s, xb, yb)
        done += 1
        if done == steps:
            break
    predict(s.model, s.val, config, s.device, s.precision, False)
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    print(json.dumps({
        "baseline": base, "peak": peaks, "steps": done, "batch": batch, "width": width, "seconds": seconds,
        "memory_mapped": s.train.memory_mapped, "train_images": int(s.train.images.shape[0]),
    }))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--fraction-of-ram", type=float, default=0.55)
    ap.add_argument("--work", type=Path, default=None, help="folder for the file (default: a temp folder)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--child", nargs=4, metavar=("ROOT", "WIDTH", "BATCH", "STEPS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        root, width, batch, steps = args.child
        child(root, int(width), int(batch), int(steps))
        return
    total = meminfo("MemTotal")
    n_train = int(total * args.fraction_of_ram) // (SIZE * SIZE) + 1
    work = Path(tempfile.mkdtemp(prefix="memory-", dir=args.work))
    try:
        t0 = time.perf_counter()
        nbytes = write_file(work / "breastmnist_224.npz", n_train)
        took = time.perf_counter() - t0
        print(
            f"wrote {nbytes / 2**30:.1f} GiB ({n_train} images) in {took:.0f}s; RAM {total / 2**30:.1f} GiB", flush=True
        )
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        cmd = [sys.executable, __file__, "--child", str(work), str(args.width), str(args.batch_size), str(args.steps)]
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        r = json.loads(run.stdout.strip().splitlines()[-1])
        gib = 2**30
        result = {
            "ram_gib": total / gib,
            "dataset_gib": nbytes / gib,
            "dataset_over_half_ram": nbytes > total / 2,
            **r,
            "anon_above_model_gib": (r["peak"]["RssAnon"] - r["baseline"]["RssAnon"]) / gib,
            "rss_above_model_gib": (r["peak"]["VmRSS"] - r["baseline"]["VmRSS"]) / gib,
            "file_pages_peak_gib": r["peak"]["RssFile"] / gib,
        }
        print(json.dumps(result, indent=2))
        if args.out:
            args.out.write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
