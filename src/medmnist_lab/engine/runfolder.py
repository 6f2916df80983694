"""The run folder writer shared by the classifier engine and the GAN trainer.

    {run_dir}/config.yaml      the resolved config (enough to rerun the run)
    {run_dir}/history.jsonl    one JSON line per finished epoch, never ahead of last.pt
    {run_dir}/last.pt, best.pt checkpoints, written atomically
    {run_dir}/summary.json     the typed summary, written last: its presence means "finished"

The classifier engine writes an epoch's history line first, then its checkpoints; on resume the
history is cut back to the checkpoint's epoch. So a crash between the two never leaves a line the
checkpoint does not contain, nor loses one it does.

A training process holds an exclusive `flock` on `{run_dir}/.lock` for as long as it writes the
folder (`claim`): a second process that starts or resumes the same run is refused with a clear
message instead of both writing every epoch. The kernel drops the lock when the process dies, so
a kill -9 never leaves a stale lock behind.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml

from medmnist_lab.engine.checkpoint import atomic_save, safe_load
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.outputs import atomic_path, check_output_dir
from medmnist_lab.outputs import remove_temp_files as remove_dead_temp_files

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one process per run folder is then the user's job
    fcntl = None  # type: ignore[assignment]

Keep = Literal["best", "last", "both"]
KEEP_CHOICES: tuple[str, ...] = ("best", "last", "both")
# A run that can go on (last.pt) or has finished (summary.json): never started again over.
WORK_FILES = ("last.pt", "summary.json")
# What a folder may hold when its run died before its first last.pt (best.pt is written just
# before it): nothing there is worth keeping, so it may be started again in place.
RESTARTABLE = {"config.yaml", "history.jsonl", ".lock", "samples", "best.pt"}


class RunFolderBusy(MedMNISTLabError):
    """Another live process holds the run folder's lock."""


# What a best.pt keeps under --keep best: enough to evaluate, predict and export, not to resume.
WEIGHTS_ONLY_KEYS = ("format", "model", "config", "dataset", "epoch", "best_auc", "best_epoch", "precision")


class RunFolder:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock: Any = None

    def claim(self) -> None:
        """Create the folder if needed and take its lock for this process; refuses a folder in use."""
        if self._lock is not None:
            return
        check_output_dir(self.path, what="run folder")
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / ".lock", "a+")  # noqa: SIM115 - held open while the run lives
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                handle.close()
                raise RunFolderBusy(
                    f"run folder {self.path} is in use by another process (pid {holder}); wait for it to "
                    "finish or stop it, then run this again"
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file drops the flock
            self._lock = None

    def has_work(self) -> bool:
        return any((self.path / name).exists() for name in WORK_FILES)

    def start_fresh(self, config: dict[str, Any], hint: str) -> bool:
        """Under the lock: a new run here, or a restart of one that died before its first checkpoint
        (its config.yaml, history and sample grids are replaced). Refuses a folder holding trained
        work (`hint` says what to do) or files that are not a run's. Returns True for a restart."""
        if self.has_work():
            raise MedMNISTLabError(f"run folder {self.path} already exists; {hint}")
        entries = {p.name for p in self.path.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp"))}
        foreign = sorted(entries - RESTARTABLE)
        if foreign:
            raise MedMNISTLabError(
                f"{self.path} exists and holds files that are not a run's ({', '.join(foreign[:5])}); "
                "choose another name or folder"
            )
        restart = bool(entries - {".lock"})
        self.remove_temp_files()
        (self.path / "best.pt").unlink(missing_ok=True)
        if (self.path / "samples").is_dir():
            shutil.rmtree(self.path / "samples")
        self.write_config(config)
        self.history_path.write_text("")
        return restart

    @property
    def history_path(self) -> Path:
        return self.path / "history.jsonl"

    def write_config(self, config: dict[str, Any]) -> None:
        """config.yaml, atomically (a resumed run may rewrite it, e.g. with more epochs)."""
        with atomic_path(self.path / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(config, sort_keys=False))

    def remove_temp_files(self) -> list[Path]:
        """Temporary files of writes killed midway (`.NAME.PID.tmp`), removed at the next start."""
        return remove_dead_temp_files(self.path)

    def save_checkpoint(self, name: str, state: dict[str, Any]) -> Path:
        return atomic_save(state, self.path / name)

    def append_history(self, record: dict[str, Any]) -> None:
        with open(self.history_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read_history(self) -> list[dict[str, Any]]:
        if not self.history_path.is_file():
            return []
        out = []
        for line in self.history_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by a kill: everything after it is not trustworthy
        return out

    def write_history(self, records: Iterable[dict[str, Any]]) -> None:
        with atomic_path(self.history_path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in records))

    def truncate_history(self, last_epoch: int, key: str = "epoch") -> None:
        """Drop lines of epochs after `last_epoch` (written after the checkpoint a resume starts from)."""
        self.write_history(r for r in self.read_history() if r.get(key, -1) <= last_epoch)

    def apply_retention(self, keep: str) -> None:
        """After a run finished: `both` keeps best.pt and last.pt as they are; `best` keeps only
        best.pt's weights (no optimizer state: ~1/3 of the size); `last` keeps only last.pt."""
        if keep not in KEEP_CHOICES:
            raise MedMNISTLabError(f"invalid keep {keep!r}; choose one of: {', '.join(KEEP_CHOICES)}")
        best, last = self.path / "best.pt", self.path / "last.pt"
        if keep == "best":
            if best.is_file():
                state = safe_load(best)
                atomic_save({k: state[k] for k in WEIGHTS_ONLY_KEYS if k in state}, best)
            last.unlink(missing_ok=True)
        elif keep == "last":
            best.unlink(missing_ok=True)
