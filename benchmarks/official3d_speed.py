"""Time per epoch of the official MedMNIST 3D script and of `--recipe fast`, side by side, one invocation.

The official side is `../shared/peers/medmnist-experiments/3d/train_and_eval_pytorch.py` (read its README):
its own `train()` function, model (ResNet-18 converted with acsconv's ACSConverter, like `--conv ACSConv`),
data classes, shape transform and DataLoaders, imported and run for a FIXED number of steps, because one
of its epochs takes longer than a benchmark should on a 2-core CPU. An official epoch is one pass of
`train()` over the training split plus a forward pass over train, val and test (it scores all three
every epoch), so its time per epoch is EXTRAPOLATED: train steps x (median seconds per step) + eval
batches x (median seconds per eval batch); 100 epochs = 100 x that. The report says so.

acsconv 0.1.1 (the script's dependency) fails on torch >= 2.6 when it converts BatchNorm layers (it
passes the layer's bias tensor as BatchNorm3d's new `bias` flag): as the peers README says, a copy of
the installed package with 'bias' dropped from that argument list is put first on the path of the
official side only; the converted network is the same.

Our side: `engine.build_session` of `--recipe fast` (or --recipe R) for the same dataset, one full
epoch of the real training step (`train_one_epoch`) plus the validation scoring `fit` does every
epoch, timed; the fast recipe's whole runs are timed end to end elsewhere (BENCHMARKS.md).

    MEDMNIST_ROOT=../shared/data/medmnist OMP_NUM_THREADS=1 python benchmarks/official3d_speed.py \
        --dataset adrenalmnist3d --steps 3 --out bench_out/official3d_speed.json

Needs `medmnist`, `tensorboardX` and `ACSConv` (pip install tensorboardX ACSConv), and the dataset file in
~/.medmnist (linked there from MEDMNIST_ROOT if missing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PEER3D = Path(__file__).resolve().parents[1] / ".." / "shared" / "peers" / "medmnist-experiments" / "3d"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_to_accuracy import cpu_facts, link_data  # noqa: E402

OFFICIAL = r"""
import itertools, json, math, statistics, sys, time
import numpy as np, torch, torch.nn as nn, torch.utils.data as data
import medmnist
from medmnist import INFO
from acsconv.converters import ACSConverter
from models import ResNet18
from utils import Transform3D, model_to_syncbn
import train_and_eval_pytorch as official

flag, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
info = INFO[flag]
shape = flag in ("adrenalmnist3d", "vesselmnist3d")  # the official runs' --shape_transform datasets
DataClass = getattr(medmnist, info["python_class"])
train_set = DataClass(split="train", transform=Transform3D(mul="random" if shape else None), size=28)
eval_sets = [DataClass(split=s, transform=Transform3D(mul="0.5" if shape else None), size=28)
             for s in ("train", "val", "test")]
model = model_to_syncbn(ACSConverter(ResNet18(in_channels=info["n_channels"], num_classes=len(info["label"]))))
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

class Writer:  # the script logs every step to tensorboard; its cost is not what is measured here
    def add_scalar(self, *a, **k): pass

loader = data.DataLoader(train_set, batch_size=32, shuffle=True)
official.iteration = 0  # the step counter its main() sets as a global before calling train()
times = []
for i in range(steps + 1):  # the script's own train() over one batch at a time; the first warms up
    one = list(itertools.islice(iter(loader), 1))
    t0 = time.perf_counter()
    official.train(model, one, criterion, optimizer, torch.device("cpu"), Writer())
    times.append(time.perf_counter() - t0)
model.eval()
eval_times = []
with torch.no_grad():
    for i, (x, _) in enumerate(data.DataLoader(eval_sets[2], batch_size=32)):
        t0 = time.perf_counter()
        model(x)
        eval_times.append(time.perf_counter() - t0)
        if i >= steps:
            break
train_batches = math.ceil(len(train_set) / 32)
eval_batches = sum(math.ceil(len(s) / 32) for s in eval_sets)
step, ev = statistics.median(times[1:]), statistics.median(eval_times[1:])
print(json.dumps(dict(step_s=step, eval_batch_s=ev, train_batches=train_batches, eval_batches=eval_batches,
                      epoch_s=train_batches * step + eval_batches * ev, measured_steps=steps, warmup_s=times[0])))
"""


def patched_acsconv(folder: Path) -> Path:
    """A copy of the installed acsconv with 'bias' dropped from the norm-layer argument list."""
    import acsconv

    src = Path(acsconv.__file__).parent
    dst = folder / "acsconv"
    shutil.copytree(src, dst)
    conv = dst / "converters" / "base_converter.py"
    text = conv.read_text()
    old = "arguments = [a for a in arguments if a not in ['device', 'dtype', 'factory_kwargs']]"
    if old not in text:
        raise SystemExit(f"acsconv's converter has changed ({conv}); patch it by hand")
    conv.write_text(text.replace(old, old.replace("'factory_kwargs'", "'factory_kwargs', 'bias'")))
    return folder


def ours(dataset: str, recipe: str, threads: int, conv: str) -> dict[str, float]:
    import torch

    from medmnist_lab.data.registry import get_dataset
    from medmnist_lab.engine import resolve_config
    from medmnist_lab.engine.train import build_session, train_one_epoch

    torch.set_num_threads(threads)
    config = resolve_config(dataset, recipe, conv=conv, seed=0)
    s = build_session(config, get_dataset(dataset))
    t0 = time.perf_counter()
    train_one_epoch(s, progress=False)
    s.score(s.val)
    epoch = time.perf_counter() - t0
    return {"epoch_s": epoch, "epochs": config.epochs, "run_s_extrapolated": epoch * config.epochs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="adrenalmnist3d")
    ap.add_argument("--recipe", default="fast")
    ap.add_argument("--conv", default="acs")
    ap.add_argument("--steps", type=int, default=3, help="official training steps timed (after one warm-up)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    link_data(args.dataset, 28)
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=f"{patched_acsconv(Path(tmp))}:{PEER3D.resolve()}")
        done = subprocess.run(
            [sys.executable, "-c", OFFICIAL, args.dataset, str(args.steps), str(threads)],
            env=env, cwd=PEER3D, capture_output=True, text=True,
        )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"official side failed:\n{done.stderr[-3000:]}")
    official = json.loads(done.stdout.strip().splitlines()[-1])
    official["run_100_epochs_s_extrapolated"] = 100 * official["epoch_s"]
    mine = ours(args.dataset, args.recipe, threads, args.conv)
    import torch

    result = {
        "machine": {**cpu_facts(), "threads": threads, "torch": torch.__version__},
        "dataset": args.dataset,
        "official_resnet18_acs": official,
        f"ours_{args.recipe}_{args.conv}": mine,
        "epoch_ratio": official["epoch_s"] / mine["epoch_s"],
        "run_ratio": official["run_100_epochs_s_extrapolated"] / mine["run_s_extrapolated"],
        "note": "official epochs extrapolated from fixed steps (see the module docstring); ours measured",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
