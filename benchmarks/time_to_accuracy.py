"""Time to accuracy: N seeds of a recipe end to end, against the official MedMNIST script, side by side.

Our side: `medmnist-lab train DATASET --recipe R --seed S ...` as a fresh process per seed, timed from
process start to its exit (summary.json written, test scored); the test metrics are read back from
summary.json. The official side: `../shared/peers/medmnist-experiments/train_and_eval_pytorch.py`
(read its README), also whole processes, on the same machine, interleaved with ours (ours seed 0,
official, ours seed 1, official, ...), so that machine noise hits both alike.

The official script's per-epoch cost is constant (every epoch trains once and evaluates all three
splits; no schedule changes the work), so its 100-epoch time is EXTRAPOLATED from short runs: it
is run for --official-epochs A and B (default 5 and 10) alternately; with medians t_A and t_B,
per-epoch = (t_B - t_A) / (B - A), start-up = t_A - A x per-epoch, and 100 epochs = start-up +
100 x per-epoch. The report says so. Both sides use the same torch thread count.

    MEDMNIST_ROOT=../shared/data/medmnist OMP_NUM_THREADS=2 python benchmarks/time_to_accuracy.py \
        --dataset breastmnist --recipe fast --seeds 0 1 2 --out bench_out/tta_breast_fast.json

Needs `medmnist` (a project dependency) and `tensorboardX` (pip install tensorboardX) for the official
script, and the dataset file in ~/.medmnist (linked there from MEDMNIST_ROOT if missing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PEER = Path(__file__).resolve().parents[1] / ".." / "shared" / "peers" / "medmnist-experiments"


def cpu_facts() -> dict[str, object]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next(
        (ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), platform.processor()
    )
    return {"cpu": model, "avx512_bf16": "avx512_bf16" in text, "cores": os.cpu_count()}


def timed(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return seconds


def link_data(dataset: str, size: int) -> None:
    """The official script reads ~/.medmnist: link the file there from MEDMNIST_ROOT if missing."""
    name = f"{dataset}.npz" if size == 28 else f"{dataset}_{size}.npz"
    home = Path.home() / ".medmnist"
    source = Path(os.environ.get("MEDMNIST_ROOT", "")) / name
    if not (home / name).exists() and source.is_file():
        home.mkdir(exist_ok=True)
        (home / name).symlink_to(source.resolve())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="breastmnist")
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--recipe", default="fast")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train-args", default="", help="extra `train` options, e.g. '--width 32 --epochs 20'")
    ap.add_argument("--official-epochs", type=int, nargs=2, default=[5, 10], metavar=("A", "B"))
    ap.add_argument("--official-runs", type=int, default=2, help="runs of each official length")
    ap.add_argument("--no-official", action="store_true", help="ours only (no ratio)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    work = Path(tempfile.mkdtemp(prefix="tta-"))
    link_data(args.dataset, args.size)
    official_plan = [] if args.no_official else [args.official_epochs[i % 2] for i in range(2 * args.official_runs)]
    ours: list[dict[str, object]] = []
    official: dict[int, list[float]] = {a: [] for a in args.official_epochs}
    for i in range(max(len(args.seeds), len(official_plan))):
        if i < len(args.seeds):
            seed = args.seeds[i]
            cmd = [sys.executable, "-m", "medmnist_lab.cli.main", "train", args.dataset, "--size", str(args.size),
                   "--recipe", args.recipe, "--seed", str(seed), "--out-dir", str(work / "ours"), "--name", f"s{seed}",
                   "--no-progress", *args.train_args.split()]  # fmt: skip
            wall = timed(cmd, env)
            summary = json.loads(
                next((work / "ours" / f"{args.dataset}_{args.size}").glob(f"*/s{seed}/summary.json")).read_text()
            )
            test = summary["metrics"]["test"]
            ours.append({"seed": seed, "wall_s": wall, "auc": test["auc"], "acc": test["acc"],
                         "precision": summary["precision"], "best_epoch": summary["best_epoch"]})  # fmt: skip
            print(f"ours seed {seed}: {wall:.1f}s AUC {test['auc']:.4f} ACC {test['acc']:.4f}", flush=True)
        if i < len(official_plan):
            epochs = official_plan[i]
            cmd = [sys.executable, "train_and_eval_pytorch.py", "--data_flag", args.dataset, "--output_root",
                   str(work / "official"), "--num_epochs", str(epochs), "--size", str(args.size),
                   "--model_flag", "resnet18", "--run", f"peer{i}", "--gpu_ids=-1"]  # fmt: skip
            wall = timed(cmd, env, cwd=PEER)
            official[epochs].append(wall)
            print(f"official {epochs} epochs: {wall:.1f}s", flush=True)
    result: dict[str, object] = {**cpu_facts(), "threads": args.threads, "dataset": args.dataset, "size": args.size}
    result.update(recipe=args.recipe, train_args=args.train_args, ours=ours)
    aucs, accs, walls = ([float(r[k]) for r in ours] for k in ("auc", "acc", "wall_s"))
    result["ours_summary"] = {
        "auc_mean": statistics.mean(aucs), "auc_std": statistics.stdev(aucs) if len(aucs) > 1 else float("nan"),
        "acc_mean": statistics.mean(accs), "acc_std": statistics.stdev(accs) if len(accs) > 1 else float("nan"),
        "wall_median_s": statistics.median(walls),
    }  # fmt: skip
    if official_plan:
        a, b = args.official_epochs
        ta, tb = statistics.median(official[a]), statistics.median(official[b])
        per_epoch = (tb - ta) / (b - a)
        startup = ta - a * per_epoch
        t100 = startup + 100 * per_epoch
        result["official"] = {
            "runs": {str(k): v for k, v in official.items()},
            "per_epoch_s": per_epoch,
            "startup_s": startup,
            "extrapolated_100_epochs_s": t100,
            "method": f"extrapolated from whole-process runs of {a} and {b} epochs (medians)",
        }
        result["speedup"] = t100 / statistics.median(walls)
        print(f"official 100 epochs (extrapolated): {t100:.0f}s; ours {statistics.median(walls):.1f}s; "
              f"ratio {result['speedup']:.1f}x", flush=True)  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
