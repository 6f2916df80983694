"""What runs in a worker process: one cell = one `fit(config)`, its output in the cell's log file.

The worker never touches the results store: it returns a plain-dict outcome to the coordinator
(picklable for a process pool, serialisable for Ray). It decides how to start from the state of
the cell's run folder alone (`RunFolder.state`, the engine's one run folder lifecycle), so any
backend on any node does the same thing:

- FINISHED: the cell finished but its result was never recorded: read it back (an unreadable
  summary: the folder is removed and the cell trained again);
- INTERRUPTED: resume from its last checkpoint;
- DIED_EARLY (died before its first checkpoint): `fit` starts it again in place;
- NEW: a new cell.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Pruned(Exception):
    """Raised from the epoch callback when a search trial falls below the median curve."""


@dataclass(frozen=True)
class CellTask:
    hash: str
    config: dict[str, Any]  # RunConfig.to_dict()
    log_path: str
    study_dir: str = "."
    keep: str = "best"
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    # Median pruning: prune after epoch e (e >= prune_after) when the val AUC is below median[e].
    median_curve: list[float] = field(default_factory=list)
    prune_after: int = 0
    trust: dict[str, Any] | None = None  # the spec's trust steps (studies.trust), run after training
    # A finished cell's folder as the store records it (a run imported from elsewhere lives outside
    # the study): its trust steps run there, instead of training the cell again in the study.
    run_dir: str | None = None


@contextlib.contextmanager
def _output_to(log_path: str):
    """Send this process's stdout/stderr (file descriptors too: tqdm, C libraries) to the log."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            # Python-level streams too: they may not be fds 1/2 (an embedding app, pytest).
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield log
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_cell(task: CellTask) -> dict[str, Any]:
    """Run one cell to completion (or failure) and return its outcome as plain data.

    Ending with the coordinator is the backend's business (local: a watcher thread in each pool
    worker; Ray: the job's lifetime), not the cell's."""
    started = time.time()
    outcome: dict[str, Any] = {"hash": task.hash, "host": socket.gethostname(), "started": started}
    with _output_to(task.log_path):
        print(f"--- cell {task.hash} on {outcome['host']} (pid {os.getpid()}) at {time.ctime(started)}", flush=True)
        try:
            outcome.update(_run(task))
        except Pruned as exc:
            outcome.update(status="pruned", error=str(exc))
        except KeyboardInterrupt:
            outcome.update(status="interrupted", error="interrupted")
        except Exception as exc:  # a failed cell is a result to record, not a crash of the study
            from medmnist_lab.errors import MedMNISTLabError

            traceback.print_exc()
            # A user error (bad data, bad setting) fails the same way every time: not retried now;
            # a rerun of the study tries it again (the user may have fixed the cause).
            outcome.update(
                status="failed", error=f"{type(exc).__name__}: {exc}", retry=not isinstance(exc, MedMNISTLabError)
            )
        outcome["finished"] = time.time()
        outcome["seconds"] = outcome["finished"] - started
        print(f"--- {outcome['status']} after {outcome['seconds']:.1f}s {outcome.get('error') or ''}", flush=True)
    return outcome


def _run(task: CellTask) -> dict[str, Any]:
    import torch

    from medmnist_lab.data.registry import get_dataset
    from medmnist_lab.deploy.card import write_model_card
    from medmnist_lab.engine import RunConfig, fit
    from medmnist_lab.engine.runfolder import RunFolder, RunState
    from medmnist_lab.engine.runinfo import run_path
    from medmnist_lab.engine.summary import RunSummary, SummaryError

    if task.threads:
        torch.set_num_threads(task.threads)
    from medmnist_lab.studies import synthetic

    config = synthetic.resolve(RunConfig.from_dict(task.config), Path(task.study_dir))
    run_dir = run_path(config, get_dataset(config.dataset, warn_alias=False), str(config.name))
    if task.run_dir is not None and RunFolder(Path(task.run_dir)).state() is RunState.FINISHED:
        run_dir = Path(task.run_dir)
    state = RunFolder(run_dir).state()
    if state is RunState.FINISHED:
        try:
            summary = RunSummary.read(run_dir)
            print(f"already finished: {run_dir}", flush=True)
            return _with_trust({"status": "done", "summary": summary.to_dict(), "run_dir": str(run_dir)}, task, config)
        except SummaryError as exc:
            print(f"unusable summary ({exc}); running the cell again", flush=True)
            shutil.rmtree(run_dir)
    resume = None
    if state is RunState.INTERRUPTED:
        resume = run_dir
        print(f"resuming {run_dir}", flush=True)
    elif state is RunState.DIED_EARLY:
        print(f"{run_dir} has no checkpoint (died before its first epoch): starting it again", flush=True)

    def prune_check(epoch: int, record: dict[str, Any]) -> None:
        if epoch < task.prune_after or epoch >= len(task.median_curve):
            return
        value, median = record["val_auc"], task.median_curve[epoch]
        if not math.isfinite(value) or value < median:
            raise Pruned(f"pruned at epoch {epoch}: val AUC {value:.4f} below the median {median:.4f}")

    try:
        result = fit(
            config,
            resume=resume,
            progress=False,
            keep=task.keep,
            on_epoch_end=prune_check if task.median_curve else None,
            on_finish=write_model_card,
        )
    except Pruned:
        RunFolder(run_dir).apply_retention(task.keep)  # a pruned trial is final: no resume state kept
        raise
    return _with_trust(
        {"status": "done", "summary": result.summary.to_dict(), "run_dir": str(result.run_dir)}, task, config
    )


def _with_trust(outcome: dict[str, Any], task: CellTask, config: Any) -> dict[str, Any]:
    """Run the spec's trust steps on the cell's best checkpoint; their numbers join its test metrics
    (the store keeps them with the cell; summary.json is left as training wrote it)."""
    if not task.trust:
        return outcome
    from medmnist_lab.studies.trust import run_trust

    run_dir = Path(outcome["run_dir"])
    checkpoint = run_dir / "best.pt" if (run_dir / "best.pt").is_file() else run_dir / "last.pt"  # --keep last
    started = time.time()
    extra = run_trust(checkpoint, task.trust, config.root, config.device)
    print(f"trust steps done in {time.time() - started:.1f}s", flush=True)
    metrics = outcome["summary"].setdefault("metrics", {})
    metrics["test"] = {**(metrics.get("test") or {}), **extra}
    return outcome
