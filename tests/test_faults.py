"""Fault injection on real processes (issue 12, point 7 b-d).

(b) kill -9 at many moments of a tiny run, then `train --resume`: the final summary equals the
    uninterrupted run's and history.jsonl holds each epoch exactly once;
(c) concurrent processes on one run folder (the folder's flock);
(d) a full disk during a checkpoint write (RLIMIT_FSIZE) leaves the previous checkpoint intact.
Concurrent downloads of one file are tested in test_download.py (one transfer, both get the file).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real processes trained, killed and resumed: 20-450 s a test on 2 busy cores
DRIVER = Path(__file__).with_name("fault_driver.py")
EPOCHS = 3
STEPS_PER_EPOCH = 3  # 40 synthetic training images, batch 16


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def train_args(root: Path, out: Path, name: str, epochs: int = EPOCHS) -> list[str]:
    return [
        "train", "breastmnist", "--root", str(root), "--out-dir", str(out), "--name", name,
        "--width", "4", "--epochs", str(epochs), "--batch-size", "16", "--precision", "fp32", "--no-progress",
    ]  # fmt: skip


def run(fault: str, args: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DRIVER), fault, *args], capture_output=True, text=True, env=env(), timeout=300, **kw
    )


def run_dir(out: Path, name: str) -> Path:
    return out / "breastmnist_28" / "resnet18" / name


def outcome(folder: Path) -> dict:
    summary = json.loads((folder / "summary.json").read_text())
    return {"metrics": summary["metrics"], "best_epoch": summary["best_epoch"], "epochs": summary["epochs"]}


def history_epochs(folder: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (folder / "history.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("reference")
    done = run("none", train_args(synthetic_root, out, "ref"))
    assert done.returncode == 0, done.stderr
    return outcome(run_dir(out, "ref"))


# Ten fixed moments (before the first checkpoint, inside checkpoint writes, between best.pt and
# last.pt, between a history line and its checkpoints, before summary.json) and three random ones.
MOMENTS = [
    "step:1",  # first optimizer step: nothing but config.yaml exists
    f"step:{STEPS_PER_EPOCH - 1}",  # mid epoch 0
    "history:1",  # epoch 0's history line written, no checkpoint yet
    "save-mid:1",  # epoch 0's best.pt half written
    "save-before-replace:2",  # epoch 0's last.pt written to its temp name, not renamed
    "replace-after:1",  # epoch 0's best.pt in place, last.pt not yet
    "history:2",  # epoch 1's line, checkpoints of epoch 0 only
    "save-mid:4",  # a checkpoint of epoch 1 half written
    "replace-after:3",  # epoch 1's first checkpoint in place
    f"step:{2 * STEPS_PER_EPOCH + 2}",  # mid epoch 2
    "finish",  # every epoch done, summary.json not written
] + [f"timer:{random.Random(seed).uniform(2.0, 8.0):.2f}" for seed in range(3)]


def kill_then_resume(moment: str, root: Path, out: Path) -> tuple[str, dict | str, list[int]]:
    name = moment.replace(":", "-").replace(".", "_")
    killed = run(moment, train_args(root, out, name))
    folder = run_dir(out, name)
    # (a timer may fire after a tiny run has finished)
    if not moment.startswith("timer") and killed.returncode != -signal.SIGKILL:
        return moment, f"not killed: rc {killed.returncode} {killed.stderr[-500:]}", []
    for _ in range(3):
        if (folder / "summary.json").is_file():
            break
        if not (folder / "config.yaml").is_file():  # killed while starting up: rerun the same command
            resumed = run("none", train_args(root, out, name))
        else:
            resumed = run("none", ["train", "--resume", str(folder), "--no-progress"])
        if resumed.returncode != 0:
            return moment, f"resume failed: {resumed.stderr[-800:]}", []
    leftovers = sorted(p.name for p in folder.glob(".*.tmp"))
    if leftovers:
        return moment, f"temp files left: {leftovers}", []
    return moment, outcome(folder), history_epochs(folder)


def test_kill_9_at_many_moments_then_resume_equals_uninterrupted(
    reference: dict, synthetic_root: Path, tmp_path: Path
) -> None:
    with ThreadPoolExecutor(2) as pool:  # two processes at a time: the machine has two cores
        results = list(pool.map(lambda m: kill_then_resume(m, synthetic_root, tmp_path), MOMENTS))
    problems = []
    for moment, result, epochs in results:
        if result != reference:
            problems.append(f"{moment}: {result if isinstance(result, str) else 'metrics differ: ' + str(result)}")
        elif epochs != list(range(EPOCHS)):
            problems.append(f"{moment}: history epochs {epochs}")
    assert not problems, "\n".join(problems)
    assert len(MOMENTS) >= 10


def wait_for(predicate, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_a_second_process_on_a_run_folder_is_refused_and_a_killed_holder_frees_it(
    synthetic_root: Path, tmp_path: Path
) -> None:
    folder = run_dir(tmp_path, "busy")
    holder = subprocess.Popen(  # trains 2 epochs, then sleeps holding the folder
        [sys.executable, str(DRIVER), "hang:2", *train_args(synthetic_root, tmp_path, "busy")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert holder.stdout is not None
        assert any(line.strip() == "hanging" for line in iter(holder.stdout.readline, "")), "the holder ended"
        second = run("none", ["train", "--resume", str(folder), "--no-progress"])
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "in use by another process" in lines[0] and f"pid {holder.pid}" in lines[0]
        same_name = run("none", train_args(synthetic_root, tmp_path, "busy"))
        assert same_name.returncode == 2 and "in use by another process" in same_name.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The kernel dropped the dead holder's lock: the run goes on, each epoch once in its history.
    resumed = run("none", ["train", "--resume", str(folder), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr
    assert history_epochs(folder) == list(range(EPOCHS))


def test_two_runs_started_with_one_name_at_once(synthetic_root: Path, tmp_path: Path) -> None:
    args = train_args(synthetic_root, tmp_path, "twin", epochs=2)
    procs = [
        subprocess.Popen(
            [sys.executable, str(DRIVER), "none", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    loser = next(err for rc, err in results if rc == 2).strip().splitlines()
    assert len(loser) == 1 and ("in use by another process" in loser[0] or "already exists" in loser[0])
    assert "Traceback" not in "".join(err for _, err in results)
    assert history_epochs(run_dir(tmp_path, "twin")) == [0, 1]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_full_disk_during_a_checkpoint_write_keeps_the_previous_one(synthetic_root: Path, tmp_path: Path) -> None:
    first = run("none", train_args(synthetic_root, tmp_path, "full", epochs=1))
    assert first.returncode == 0, first.stderr
    folder = run_dir(tmp_path, "full")
    before = {name: sha(folder / name) for name in ("last.pt", "best.pt")}
    limit = (folder / "last.pt").stat().st_size // 2  # config and history fit; a checkpoint does not

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    full = run("none", ["train", "--resume", str(folder), "--epochs", "2", "--no-progress"], preexec_fn=small_files)
    assert full.returncode == 2, full.stderr
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1 and "File too large" in lines[0] and "is unchanged" in lines[0], lines
    assert {name: sha(folder / name) for name in before} == before
    assert not list(folder.glob(".*.tmp"))
    # With room again the run goes on from the intact checkpoint, each epoch once.
    again = run("none", ["train", "--resume", str(folder), "--epochs", "2", "--no-progress"])
    assert again.returncode == 0, again.stderr
    assert history_epochs(folder) == [0, 1]
