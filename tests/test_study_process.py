"""Studies as processes: real Ray, kill -9 and Ctrl-C of the coordinator, concurrent workers, the lock.

Every study runs as `medmnist-lab study run` in a subprocess (no mocks) on tiny synthetic data.
Each subprocess carries a tag in its environment, inherited by everything it starts (the
forkserver, the cell workers, Ray's raylet and workers), so the tests can tell whether any process
of a study outlives its coordinator, wherever it was reparented.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import yaml

from synthetic import write_npz

pytestmark = pytest.mark.slow  # each test runs whole studies: 10-30 s on 2 busy cores

TAG = "MEDMNIST_LAB_STUDY_TEST_TAG"
SPLITS = {"train", "val", "test"}
# Every cell on one torch thread: on 2 shared cores more threads only spin-wait on each other.
COMMON = ["--threads", "1", "--no-progress"]


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """breastmnist (binary) and dermamnist (7 classes, so AUCs are not all 1.0); 120 training
    images, so an epoch lasts long enough for a signal to land between checkpoints."""
    root = tmp_path_factory.mktemp("data")
    for flag in ("breastmnist", "dermamnist"):
        write_npz(root / f"{flag}.npz", flag, 28, counts=(120, 32, 32))
    return root


def write_spec(path: Path, root: Path, epochs: int, seeds: list[int], name: str = "proc") -> Path:
    spec = {
        "name": name,
        "base": {"root": str(root), "epochs": epochs, "width": 4, "amp": False, "batch_size": 16},
        "axes": {"dataset": ["breastmnist", "dermamnist"], "seed": seeds},
    }
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def spec4(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 cells of 3 epochs: the study that is killed, interrupted and run on Ray."""
    return write_spec(tmp_path_factory.mktemp("spec") / "spec4.yaml", data_root, epochs=3, seeds=[0, 1])


def command(spec: Path, out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "medmnist_lab.cli.main", "study", "run", str(spec), "-o", str(out), *COMMON, *args]


def tagged_env(tag: str, **extra: str) -> dict[str, str]:
    return {**os.environ, TAG: tag, "PYTHONUNBUFFERED": "1", **extra}


def run(spec: Path, out: Path, *args: str, timeout: float = 150, **env: str) -> subprocess.CompletedProcess:
    tag = uuid.uuid4().hex
    proc = subprocess.run(
        command(spec, out, *args), env=tagged_env(tag, **env), capture_output=True, text=True, timeout=timeout
    )
    # Whatever the coordinator started ends with it.
    assert wait_gone(tag, 15) == [], f"processes of the study outlived it\n{proc.stderr}"
    return proc


class Started:
    """A coordinator running in the background, in its own session (its own process group)."""

    def __init__(self, spec: Path, out: Path, logs: Path, *args: str, **env: str) -> None:
        self.tag = uuid.uuid4().hex
        logs.mkdir(parents=True, exist_ok=True)
        self.stdout, self.stderr = logs / "stdout.txt", logs / "stderr.txt"
        with open(self.stdout, "w") as o, open(self.stderr, "w") as e:
            self.proc = subprocess.Popen(
                command(spec, out, *args),
                env=tagged_env(self.tag, **env),
                stdout=o,
                stderr=e,
                start_new_session=True,
                # Ctrl-C's default action, whatever this test inherited: a shell without job control
                # starts `cmd &` with SIGINT ignored, a disposition every child would keep (and Python
                # then installs no KeyboardInterrupt handler).
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )

    def output(self) -> str:
        return f"stdout:\n{self.stdout.read_text()}\nstderr:\n{self.stderr.read_text()}"

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float = 150) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.proc.poll() is not None:
                pytest.fail(f"the study ended (rc {self.proc.returncode}) before: {what}\n{self.output()}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"timed out waiting for: {what}\n{self.output()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """Test clean-up: the coordinator and whatever of it is left (all started by this test)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for p in study_processes(self.tag):
            p.kill()


def is_alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def study_processes(tag: str) -> list[psutil.Process]:
    """Live (not zombie) processes whose environment carries this tag."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.status() != psutil.STATUS_ZOMBIE and p.environ().get(TAG) == tag:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def wait_gone(tag: str, timeout: float, also: list[psutil.Process] = ()) -> list[str]:
    """Processes of the study (and `also`) still alive after `timeout` seconds, else []. (A process
    on its way out may no longer show its environment: hence `also`, known processes.)"""
    deadline = time.monotonic() + timeout
    while True:
        alive = study_processes(tag)
        alive += [p for p in also if is_alive(p) and p.pid not in {q.pid for q in alive}]
        if not alive or time.monotonic() > deadline:
            out = []
            for p in alive:
                try:
                    out.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
                    p.kill()  # ours: do not leave it running whatever the test says
                except psutil.NoSuchProcess:
                    pass
            return out
        time.sleep(0.2)


def run_dirs(out: Path) -> dict[str, Path]:
    """Run folder name (hash[:12]) -> folder."""
    return {d.name: d for d in (out / "runs").glob("*/*/*") if d.is_dir()}


def finished(out: Path) -> list[Path]:
    return [d for d in run_dirs(out).values() if (d / "summary.json").is_file()]


def mid_training(out: Path, epochs: int = 10**9) -> list[Path]:
    """Cells with at least one epoch done (and checkpointed), no summary yet, and fewer than
    `epochs` epochs done (so a signal sent now lands before the cell's end)."""
    found = []
    for d in run_dirs(out).values():
        history = d / "history.jsonl"
        done = len(history.read_text().splitlines()) if history.is_file() else 0
        # last.pt too: the history line of an epoch is written just before its checkpoint
        if not (d / "summary.json").is_file() and (d / "last.pt").is_file() and 1 <= done < epochs:
            found.append(d)
    return found


def store(out: Path) -> tuple[list[tuple], list[tuple]]:
    with sqlite3.connect(out / "results.db") as db:
        runs = db.execute("SELECT hash, status, attempts, started, finished FROM runs").fetchall()
        metrics = db.execute("SELECT hash, split, auc, acc, extras FROM metrics").fetchall()
    return runs, metrics


def metric_values(out: Path) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(hash, split) -> (AUC, ACC, ECE): the ECE depends on every predicted probability."""
    return {(h, s): (auc, acc, json.loads(extras)["ece"]) for h, s, auc, acc, extras in store(out)[1]}


def assert_complete(out: Path, cells: int, epochs: int) -> None:
    """Every cell done, once in the store, once on disk, each epoch trained once."""
    runs, metrics = store(out)
    assert len(runs) == cells and len({r[0] for r in runs}) == cells
    assert {r[1] for r in runs} == {"done"}, runs
    assert len(metrics) == 3 * cells and len({(h, s) for h, s, *_ in metrics}) == 3 * cells
    by_hash: dict[str, set[str]] = {}
    for h, split, auc, acc, _ in metrics:
        assert auc is not None and acc is not None and 0 <= auc <= 1 and 0 <= acc <= 1
        by_hash.setdefault(h, set()).add(split)
    assert set(by_hash) == {r[0] for r in runs} and all(s == SPLITS for s in by_hash.values())
    folders = run_dirs(out)
    assert sorted(folders) == sorted(r[0][:12] for r in runs), "one run folder per cell, no others"
    for d in folders.values():
        lines = (d / "history.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == list(range(epochs)), d


@pytest.fixture(scope="module")
def reference(spec4: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """spec4 run without interruption on the local backend: the numbers every other run must give."""
    out = tmp_path_factory.mktemp("reference") / "study"
    proc = run(spec4, out, "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert_complete(out, 4, 3)
    values = metric_values(out)
    assert len({v[0] for (h, s), v in values.items() if s == "test"}) > 1, "AUCs should not all be equal"
    return values


# --- tests ---------------------------------------------------------------------------------------


def test_ray_backend_records_every_cell_with_the_local_numbers(spec4, reference, tmp_path):
    out = tmp_path / "study"
    # Ray's own temporary folder, to read the raylet's log and leave nothing behind (short: Ray's
    # socket paths must fit in 107 bytes).
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    started = Started(spec4, out, tmp_path / "logs", "--backend", "ray", "--workers", "2", RAY_TMPDIR=str(ray_tmp))
    nice: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 150
        while started.proc.poll() is None and time.monotonic() < deadline:
            for p in study_processes(started.tag):  # Ray's worker processes while the study runs
                try:
                    if p.cmdline()[:1] in (["ray::IDLE"], ["ray::_ray_cell"]):
                        nice[p.pid] = p.nice()
                except (psutil.NoSuchProcess, IndexError):
                    pass
            time.sleep(0.3)
        assert started.proc.poll() == 0, started.output()
        assert wait_gone(started.tag, 15) == [], "Ray processes outlived the study: no ray.shutdown?"
        raylet_logs = list(ray_tmp.glob("**/raylet.out"))
        assert raylet_logs, f"no Ray session under {ray_tmp}"
        assert "node_manager address: 127.0.0.1:" in raylet_logs[0].read_text(), "Ray is not on the loopback"
    finally:
        started.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert_complete(out, 4, 3)
    assert metric_values(out) == reference, "Ray and the local backend should give the same numbers"
    # Ray's workers run at the local backend's priority, not at Ray's default nice 15 (starved
    # beside any other load: 150 s for a 9 s cell).
    assert nice and set(nice.values()) == {0}, nice


def interrupt_midway(started: Started, out: Path, cells: int, epochs: int) -> list[Path]:
    """Wait until at least one cell is finished and another is part-trained (a checkpoint written,
    an epoch still to go); those part-trained cells."""
    started.wait_until(
        "a finished cell and a part-trained one",
        lambda: 1 <= len(finished(out)) < cells and bool(mid_training(out, epochs)),
    )
    return mid_training(out, epochs)


def test_kill_9_of_the_coordinator_leaves_no_worker_and_the_rerun_completes(spec4, reference, tmp_path):
    out = tmp_path / "study"
    started = Started(spec4, out, tmp_path / "logs", "--workers", "2")
    try:
        training = interrupt_midway(started, out, 4, 3)
        coordinator = psutil.Process(started.proc.pid)  # quick: a cell is training now
        forkserver = [p for p in coordinator.children() if "forkserver" in " ".join(p.cmdline())]
        workers = forkserver[0].children() if len(forkserver) == 1 else []
        children = coordinator.children(recursive=True)
        os.kill(started.proc.pid, signal.SIGKILL)
        started.proc.wait(10)
        # The workers (the forkserver's children, not the coordinator's) watch the coordinator and
        # die with it; the forkserver and the resource tracker then see it gone and exit.
        assert len(workers) == 2, children
        assert wait_gone(started.tag, 5, also=children) == [], "workers outlived a coordinator killed with -9"
    finally:
        started.kill()
    # No orphaned worker trained on to the end of its cell (a rerun would run it a second time).
    assert all(not (d / "summary.json").exists() for d in training), "cells finished after the kill"
    done_before = {d.name: (d / "summary.json").stat().st_mtime_ns for d in finished(out)}
    part_trained = [d.name for d in mid_training(out)]
    assert done_before and part_trained and len(done_before) < 4

    proc = run(spec4, out, "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert_complete(out, 4, 3)
    folders = run_dirs(out)
    for name, mtime in done_before.items():  # finished cells are not run again
        assert (folders[name] / "summary.json").stat().st_mtime_ns == mtime, name
    logs = {p.stem[:12]: p.read_text() for p in (out / "logs").glob("*.log")}
    for name in part_trained:  # part-trained cells continue from their checkpoint
        assert "resuming" in logs[name], logs[name]
    assert metric_values(out) == reference, "a killed and resumed study should end with the same numbers"


def test_ctrl_c_exits_130_asks_for_a_rerun_and_the_rerun_completes(spec4, reference, tmp_path):
    out = tmp_path / "study"
    started = Started(spec4, out, tmp_path / "logs", "--workers", "2")
    try:
        # Freeze the coordinator (so it starts no cell) and its workers at a moment when a cell is
        # part-trained, so that the SIGINT lands then: on a fast CPU the remaining cells could
        # otherwise finish between the check and the signal, and on a loaded one a cell can finish
        # between the wait and the freeze (then let it run on and try again).
        for _ in range(10):
            interrupt_midway(started, out, 4, 3)
            coordinator = psutil.Process(started.proc.pid)
            coordinator.suspend()
            frozen = [coordinator, *coordinator.children(recursive=True)]
            for p in frozen[1:]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.suspend()
            if 1 <= len(finished(out)) < 4 and mid_training(out, 3):
                break
            for p in reversed(frozen):
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.resume()
        else:
            pytest.fail("never caught the study with a finished cell and a part-trained one")
        os.killpg(started.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        for p in reversed(frozen):  # workers first, then the coordinator
            with contextlib.suppress(psutil.NoSuchProcess):
                p.resume()  # the pending SIGINT is handled first thing
        rc = started.proc.wait(60)
        assert rc == 130, started.output()
        assert "rerun the same command" in started.stderr.read_text(), started.output()
        assert wait_gone(started.tag, 10) == [], "workers outlived an interrupted study"
    finally:
        started.kill()
    runs, _ = store(out)
    # Interrupted cells are pending again, their attempt not counted; nothing is left "running".
    assert {r[1] for r in runs} <= {"done", "pending"}, runs
    assert all(r[2] == 0 for r in runs if r[1] == "pending"), runs
    done_before = {d.name: (d / "summary.json").stat().st_mtime_ns for d in finished(out)}

    proc = run(spec4, out, "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert_complete(out, 4, 3)
    folders = run_dirs(out)
    assert all((folders[n] / "summary.json").stat().st_mtime_ns == m for n, m in done_before.items())
    assert {r[2] for r in store(out)[0]} == {1}, "each cell counted one attempt"
    assert metric_values(out) == reference


def test_a_worker_killed_midway_is_retried_and_the_study_completes(spec4, reference, tmp_path):
    """The OOM killer or a segfault in one cell: recorded as a failed attempt and retried, not a crash."""
    out = tmp_path / "study"
    started = Started(spec4, out, tmp_path / "logs", "--workers", "2")
    try:
        started.wait_until("a cell training", lambda: bool(mid_training(out, 3)))
        name = mid_training(out, 3)[0].name
        log = next((out / "logs").glob(f"{name}*.log"))
        pid = int(log.read_text().split("(pid ")[-1].split(")")[0])  # "--- cell HASH on HOST (pid N) ..."
        assert pid in [p.pid for p in psutil.Process(started.proc.pid).children(recursive=True)]
        os.kill(pid, signal.SIGKILL)
        rc = started.proc.wait(150)
    finally:
        started.kill()
    assert rc == 0, started.output()
    assert "worker process died" in started.stderr.read_text()
    assert_complete(out, 4, 3)
    attempts = {h[:12]: n for h, _, n, *_ in store(out)[0]}
    assert attempts[name] == 2, "the killed cell should have been retried once"
    assert "resuming" in log.read_text(), "from its checkpoint"
    assert metric_values(out) == reference


def test_four_concurrent_workers_lose_no_result(data_root, tmp_path):
    spec = write_spec(tmp_path / "spec8.yaml", data_root, epochs=2, seeds=[0, 1, 2, 3])
    out = tmp_path / "study"
    proc = run(spec, out, "--workers", "4")
    assert proc.returncode == 0, proc.stderr
    assert "8 done now" in proc.stdout
    assert_complete(out, 8, 2)
    runs, metrics = store(out)
    assert len(runs) == 8 and len(metrics) == 24
    # Four cells ran at once, never more: the most intervals (submitted -> finished) that overlap.
    events = sorted([(r[3], 1) for r in runs] + [(r[4], -1) for r in runs])
    level, peak = 0, 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    assert peak == 4


def test_a_second_coordinator_on_the_same_folder_is_refused(data_root, tmp_path):
    spec = tmp_path / "spec2.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "lock",
                # long enough to outlast the second command's start-up (~10 s of imports here)
                "base": {"root": str(data_root), "epochs": 8, "width": 4, "amp": False, "batch_size": 4},
                "axes": {"dataset": ["breastmnist"], "seed": [0, 1, 2]},
            }
        )
    )
    out = tmp_path / "study"
    first = Started(spec, out, tmp_path / "logs", "--workers", "1")
    try:
        lock = out / ".lock"  # the coordinator writes its pid there once it holds the lock
        first.wait_until("the lock taken", lambda: lock.is_file() and lock.read_text() != "")
        second = run(spec, out, "--workers", "1", timeout=60)
        assert first.proc.poll() is None, "the first study should still be running"
        assert second.returncode == 2, second.stderr
        assert f"another `study run` (pid {first.proc.pid}) is using" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        assert first.proc.wait(120) == 0, first.output()
    finally:
        first.kill()
    assert_complete(out, 3, 8)
    assert len(list((out / "specs").iterdir())) == 1, "the refused run wrote nothing"
    assert "error" not in first.stderr.read_text().lower(), first.output()
