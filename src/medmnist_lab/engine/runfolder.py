"""The run folder writer shared by the classifier engine and the GAN trainer.

    {run_dir}/config.yaml      the resolved config (enough to rerun the run)
    {run_dir}/history.jsonl    one JSON line per finished epoch, never ahead of last.pt
    {run_dir}/last.pt, best.pt checkpoints, written atomically
    {run_dir}/summary.json     the typed summary, written last: its presence means "finished"

The classifier engine writes an epoch's history line first, then its checkpoints; on resume the
history is cut back to the checkpoint's epoch. So a crash between the two never leaves a line the
checkpoint does not contain, nor loses one it does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml

from medmnist_lab.engine.checkpoint import atomic_save, safe_load
from medmnist_lab.errors import MedMNISTLabError

Keep = Literal["best", "last", "both"]
KEEP_CHOICES: tuple[str, ...] = ("best", "last", "both")
# What a best.pt keeps under --keep best: enough to evaluate, predict and export, not to resume.
WEIGHTS_ONLY_KEYS = ("format", "model", "config", "dataset", "epoch", "best_auc", "best_epoch", "precision")


class RunFolder:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def history_path(self) -> Path:
        return self.path / "history.jsonl"

    def create(self, config: dict[str, Any]) -> None:
        """A new folder with its config.yaml and an empty history; refuses an existing folder."""
        self.path.mkdir(parents=True, exist_ok=False)
        self.write_config(config)
        self.history_path.write_text("")

    def write_config(self, config: dict[str, Any]) -> None:
        """config.yaml, atomically (a resumed run may rewrite it, e.g. with more epochs)."""
        tmp = self.path / f".config.yaml.{os.getpid()}.tmp"
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        os.replace(tmp, self.path / "config.yaml")

    def remove_temp_files(self) -> None:
        """Temporary files of writes killed midway (`.NAME.PID.tmp`)."""
        for tmp in self.path.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)

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
        tmp = self.path / f".history.jsonl.{os.getpid()}.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
        os.replace(tmp, self.history_path)

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
