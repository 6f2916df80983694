"""`predict` throughput on a folder of PNG files, and ONNX Runtime vs PyTorch latency (issue 13).

1. Throughput: the real BreastMNIST images (all splits, 780) written as 28 px PNG files, predicted
   end to end by `predict_files` (file reading, conversion, batches of 256, the model) with a
   ResNet-18 and a ResNet-50 checkpoint and their ONNX exports: images/s, median of --reps.
2. Latency: the model alone on batches of 1 and 64, PyTorch (the engine's predict path) vs ONNX
   Runtime (CPUExecutionProvider), both with the same thread count: median ms per batch over
   --iters calls after warm-up, interleaved so machine noise hits both alike.
The checkpoints are full-width (64) models trained for one epoch on 64 images: latency does not
depend on the weights.

    MEDMNIST_ROOT=../shared/data/medmnist python benchmarks/predict_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from PIL import Image

from medmnist_lab.data import load_split
from medmnist_lab.deploy.export import export_model
from medmnist_lab.deploy.predict import predict_files
from medmnist_lab.deploy.predictor import Predictor
from medmnist_lab.engine import fit, resolve_config
from medmnist_lab.engine.device import cpu_name


def median_ms(fn, iters: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="predict-speed-"))
    pngs = work / "pngs"
    pngs.mkdir()
    n = 0
    for split in ("train", "val", "test"):
        for image in load_split("breastmnist", split, 28).images:
            Image.fromarray(image[0].numpy()).save(pngs / f"{n:05d}.png")
            n += 1
    results: dict = {
        "cpu": cpu_name(),
        "threads": args.threads,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "images": n,
        "models": {},
    }
    for name in args.models:
        cfg = resolve_config(
            "breastmnist", model=name, epochs=1, subset=64, amp=False, out_dir=str(work), name=name, seed=0
        )
        ckpt = fit(cfg, progress=False).run_dir / "best.pt"
        onnx_path, _ = export_model(ckpt, "onnx", work / f"{name}.onnx")
        torch_p, onnx_p = Predictor.load(ckpt), Predictor.load(onnx_path)
        onnx_p.session = onnxruntime.InferenceSession(
            str(onnx_path), _options(args.threads), providers=["CPUExecutionProvider"]
        )
        row: dict = {}
        for label, p in (("pytorch", torch_p), ("onnx", onnx_p)):
            walls = []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                report = predict_files(p, [pngs])
                walls.append(time.perf_counter() - t0)
                assert len(report.predictions) == n and not report.failed
            row[f"{label}_images_per_s"] = n / statistics.median(walls)
        x = load_split("breastmnist", "test", 28).images.numpy()
        for batch in (1, 64):
            xb = np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:])))
            t_torch, t_onnx = [], []
            for _ in range(3):  # interleaved rounds
                t_torch.append(median_ms(partial(torch_p.probabilities, xb, batch_size=batch), args.iters))
                t_onnx.append(median_ms(partial(onnx_p.probabilities, xb, batch_size=batch), args.iters))
            row[f"batch{batch}_pytorch_ms"] = statistics.median(t_torch)
            row[f"batch{batch}_onnx_ms"] = statistics.median(t_onnx)
        results["models"][name] = row
        print(name, json.dumps(row, indent=1), flush=True)
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


def _options(threads: int) -> onnxruntime.SessionOptions:
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return opts


if __name__ == "__main__":
    main()
