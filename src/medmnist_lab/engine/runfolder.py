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

The lifecycle of a run folder, decided here and only here (`RunFolder.state`, `open_for_training`,
`check_resume`) for the classifier trainer (`engine.train.fit`), the GAN trainer
(`gan.train.train_gan`), both `train` commands, the study worker and the synthetic-data cells:

    NEW          no run here: no folder, or one without config.yaml, last.pt and summary.json
                 (a process killed while starting up leaves only `.lock`)
    DIED_EARLY   config.yaml but neither a checkpoint nor summary.json: the run died before its
                 first checkpoint; nothing trained is lost by starting it again in place
    INTERRUPTED  a checkpoint (last.pt, or the one `--resume` names), no summary.json
    FINISHED     summary.json, with or without last.pt (`--keep best` drops it)

What each entry point does with a state:

    new run (no --resume)   NEW, DIED_EARLY: start (again) in place; INTERRUPTED, FINISHED:
                            refused ("already exists; pass --resume ..."); a folder holding files
                            that are not a run's is refused too (`start_fresh`)
    --resume                NEW: refused ("nothing to resume"); DIED_EARLY: started again in place;
                            INTERRUPTED: continued from its checkpoint; FINISHED: continued (with
                            --epochs above the trained ones) if its checkpoint was kept, else refused
    the checkpoint          the saved config must equal the requested one but for the fields the
                            trainer lets change (`RESUMABLE_CHANGES`); fewer epochs than trained are
                            refused; as many as trained resume only an unfinished run (it was
                            killed before summary.json: the resume writes it)
    study cell (worker)     FINISHED: its summary is read back; INTERRUPTED: resumed; DIED_EARLY,
                            NEW: trained (a died-early folder again in place)
    synthetic-data GAN      FINISHED: reused; INTERRUPTED: resumed; DIED_EARLY, NEW: trained
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml

from medmnist_lab.engine.checkpoint import atomic_save, safe_load
from medmnist_lab.errors import CheckpointError, MedMNISTLabError
from medmnist_lab.outputs import atomic_path, check_output_dir, write_text_atomic
from medmnist_lab.outputs import remove_temp_files as remove_dead_temp_files

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one process per run folder is then the user's job
    fcntl = None  # type: ignore[assignment]

Keep = Literal["best", "last", "both"]
KEEP_CHOICES: tuple[str, ...] = ("best", "last", "both")
# What a folder may hold when its run died before its first last.pt (best.pt is written just
# before it): nothing there is worth keeping, so it may be started again in place.
RESTARTABLE = {"config.yaml", "history.jsonl", ".lock", "samples", "best.pt"}


class RunFolderBusy(MedMNISTLabError):
    """Another live process holds the run folder's lock."""


class RunState(str, Enum):
    """Where a run folder is in its life (the module docstring says what each state allows)."""

    NEW = "new"
    DIED_EARLY = "died-early"
    INTERRUPTED = "interrupted"
    FINISHED = "finished"


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

    def state(self, checkpoint: str | os.PathLike[str] | None = None) -> RunState:
        """The folder's state (see the module docstring). `checkpoint`: the file a resume would
        continue from (default last.pt; `--resume RUN/best.pt` names another)."""
        ckpt = self.path / "last.pt" if checkpoint is None else Path(checkpoint)
        if (self.path / "summary.json").is_file():
            return RunState.FINISHED
        if ckpt.is_file():
            return RunState.INTERRUPTED
        if (self.path / "config.yaml").is_file():
            return RunState.DIED_EARLY
        return RunState.NEW

    def has_work(self) -> bool:
        """Trained work is here (a checkpoint or a summary): never started again over."""
        return self.state() in (RunState.INTERRUPTED, RunState.FINISHED)

    def resume_state(self, checkpoint: Path, asked: object) -> RunState:
        """What `--resume {asked}` finds here: DIED_EARLY (start it again in place), INTERRUPTED or
        FINISHED with `checkpoint` kept (continue from it). Refuses a missing folder, one that holds
        no run, and a finished run whose checkpoint was not kept. Needs no lock: it only reads."""
        if not self.path.is_dir():
            raise MedMNISTLabError(f"--resume {asked}: no such run folder; nothing to resume")
        state = self.state(checkpoint)
        if state is RunState.NEW:
            raise MedMNISTLabError(
                f"--resume {asked}: not a run folder ({checkpoint} does not exist; nothing to resume)"
            )
        if state is RunState.FINISHED and not checkpoint.is_file():
            kept = (
                " (it finished with --keep best: only its weights were kept)"
                if (self.path / "best.pt").exists()
                else ""
            )
            raise MedMNISTLabError(f"--resume {asked}: {checkpoint} does not exist{kept}; this run cannot be continued")
        return state

    def read_config(self) -> dict[str, Any]:
        """config.yaml as a mapping (for a run that died before its first checkpoint: all it left)."""
        path = self.path / "config.yaml"
        data = yaml.safe_load(path.read_text())
        if not isinstance(data, dict):
            raise MedMNISTLabError(f"{path} is not a run config (not a YAML mapping); start the run again")
        return data

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
        write_text_atomic(self.history_path, "")
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


def resume_target(path: str | os.PathLike[str]) -> tuple[RunFolder, Path]:
    """`--resume PATH`: the run folder and the checkpoint to continue from. PATH is a run folder
    (its last.pt) or a checkpoint file in one; a missing PATH names a folder unless it ends in .pt."""
    path = Path(path)
    if path.is_file() or (not path.exists() and path.suffix == ".pt"):
        return RunFolder(path.parent), path
    return RunFolder(path), path / "last.pt"


def open_for_training(
    new_run: str | os.PathLike[str] | None,
    resume: str | os.PathLike[str] | None,
    config: dict[str, Any],
    hint: str,
) -> tuple[RunFolder, Path | None]:
    """The one way a trainer opens its run folder: claimed (locked) for this process, and the
    checkpoint to continue from, or None when the run starts here (new, or again in place after
    dying before its first checkpoint; `config` is then written as its config.yaml).

    `resume` None: a new run in `new_run`, refused if that folder holds trained work (`hint` says
    what to do). Else the folder or checkpoint `--resume` names (`resume_target`, `resume_state`).
    The caller loads the checkpoint and checks it with `check_resume`, releasing the folder if that
    fails."""
    if resume is None:
        if new_run is None:
            raise ValueError("open_for_training: a new run needs its folder (new_run)")
        folder, checkpoint = RunFolder(new_run), None
    else:
        folder, checkpoint = resume_target(resume)
        folder.resume_state(checkpoint, resume)  # before claim(), which would create the folder
    folder.claim()
    try:
        if checkpoint is None:
            folder.start_fresh(config, hint)
            return folder, None
        # Decided again under the lock: another process may have moved the run on meanwhile.
        if folder.resume_state(checkpoint, resume) is RunState.DIED_EARLY:
            folder.start_fresh(config, "")  # nothing trained is lost by starting it again here
            return folder, None
        return folder, checkpoint
    except BaseException:
        folder.release()
        raise


def check_resume(
    saved: Mapping[str, Any],
    requested: Mapping[str, Any],
    may_change: Sequence[str],
    checkpoint: Path,
    *,
    done: int,
    finished: bool,
) -> None:
    """The one resumability check of a checkpoint's config (`saved`, canonical as the trainer's
    config class makes it) against the requested one: every field but `may_change` must be equal
    (else it would be another experiment), `requested["epochs"]` must not be fewer than the `done`
    epochs, and as many only continue an unfinished run (killed before its summary was written)."""
    diff = [
        f"{k}={v!r} in the checkpoint vs {requested.get(k)!r} now"
        for k, v in saved.items()
        if k not in may_change and requested.get(k) != v
    ]
    if diff:
        raise CheckpointError(
            f"cannot resume {checkpoint}: settings differ ({'; '.join(diff)}); only {', '.join(may_change)} may change"
        )
    epochs = int(requested["epochs"])
    if epochs < done:
        raise MedMNISTLabError(f"--epochs {epochs} is fewer than the {done} epochs {checkpoint} has already trained")
    if epochs == done and finished:
        raise MedMNISTLabError(
            f"{checkpoint.parent} has finished: {checkpoint} already has {done} epochs; "
            f"pass --epochs above {done} to train it further"
        )
