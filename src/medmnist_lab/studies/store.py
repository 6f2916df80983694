"""The results store: one SQLite file (WAL mode) per study, written by the coordinating process only.

Workers, local or on Ray nodes, return their results to the coordinator, which writes them here;
so no two processes ever write the file at once, and a network filesystem never sees SQLite
locking from several hosts. Rows are keyed by the cell hash: writing a cell twice updates its row,
it never adds a second one.

    runs(hash, study, config JSON, status, attempts, error, started, finished, seconds, host,
         device, versions JSON, git_commit, run_dir, search, trial)
    metrics(hash, split, auc, acc, extras JSON)
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.studies.rows import ResultRow

SCHEMA_VERSION = 1
DB_NAME = "results.db"
STATUSES = ("pending", "running", "done", "failed", "pruned")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    hash TEXT PRIMARY KEY,
    study TEXT,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    started REAL,
    finished REAL,
    seconds REAL,
    host TEXT,
    device TEXT,
    versions TEXT,
    git_commit TEXT,
    run_dir TEXT,
    search TEXT,
    trial INTEGER
);
CREATE TABLE IF NOT EXISTS metrics (
    hash TEXT NOT NULL REFERENCES runs(hash),
    split TEXT NOT NULL,
    auc REAL,
    acc REAL,
    extras TEXT,
    PRIMARY KEY (hash, split)
);
"""


def db_path(target: str | Path) -> Path:
    """A study folder (its results.db) or a database file."""
    target = Path(target)
    return target / DB_NAME if target.is_dir() or not target.suffix else target


class ResultStore:
    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = db_path(path)
        if not self.path.is_file():
            if not create:
                raise MedMNISTLabError(
                    f"no results store at {self.path}; give a study folder (`study run ... --out-dir DIR`) "
                    "or a .db file"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                self._db.commit()
            elif int(row[0]) > SCHEMA_VERSION:
                raise MedMNISTLabError(f"{self.path} has store schema {row[0]}; this code reads <= {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise MedMNISTLabError(f"{self.path} is not a medmnist-lab results store ({exc})") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._db:  # commit on success, roll back on error
            yield self._db

    # --- writes ----------------------------------------------------------------------------------

    def add_cell(
        self, h: str, config: dict[str, Any], study: str | None, search: str | None = None, trial: int | None = None
    ) -> None:
        """Register a cell as pending unless it is known already (its status is then kept)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO runs (hash, study, config, status, search, trial) VALUES (?, ?, ?, 'pending', ?, ?) "
                "ON CONFLICT(hash) DO NOTHING",
                (h, study, json.dumps(config, sort_keys=True), search, trial),
            )

    def mark_running(self, h: str, host: str | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status='running', attempts=attempts+1, started=?, error=NULL, host=? WHERE hash=?",
                (time.time(), host, h),
            )

    def mark_interrupted(self, hashes: Sequence[str]) -> None:
        """Cells stopped by Ctrl-C: pending again, their attempt not counted."""
        with self._tx() as db:
            db.executemany(
                "UPDATE runs SET status='pending', attempts=MAX(attempts-1, 0) WHERE hash=? AND status='running'",
                [(h,) for h in hashes],
            )

    def record(self, h: str, outcome: dict[str, Any]) -> None:
        """Store a worker's outcome: status, timings, environment and (when done) its metrics."""
        summary = outcome.get("summary") or {}
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status=?, error=?, finished=?, seconds=?, host=?, device=?, versions=?, "
                "git_commit=?, run_dir=? WHERE hash=?",
                (
                    outcome["status"],
                    outcome.get("error"),
                    outcome.get("finished", time.time()),
                    summary.get("wall_seconds", outcome.get("seconds")),
                    outcome.get("host"),
                    summary.get("device"),
                    json.dumps(summary.get("versions")) if summary.get("versions") else None,
                    summary.get("git_commit"),
                    outcome.get("run_dir"),
                    h,
                ),
            )
            for split, m in (summary.get("metrics") or {}).items():
                extras = {k: v for k, v in m.items() if k not in ("auc", "acc")}
                db.execute(
                    "INSERT INTO metrics (hash, split, auc, acc, extras) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(hash, split) DO UPDATE SET auc=excluded.auc, acc=excluded.acc, extras=excluded.extras",
                    (h, split, m.get("auc"), m.get("acc"), json.dumps(extras)),
                )

    # --- reads -----------------------------------------------------------------------------------

    def status(self, h: str) -> tuple[str, int] | None:
        row = self._db.execute("SELECT status, attempts FROM runs WHERE hash=?", (h,)).fetchone()
        return None if row is None else (row[0], int(row[1]))

    def counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())

    def error(self, h: str) -> str | None:
        row = self._db.execute("SELECT error FROM runs WHERE hash=?", (h,)).fetchone()
        return None if row is None else row[0]

    def rows(self, statuses: Sequence[str] | None = None, search: str | None = None) -> list[ResultRow]:
        query = "SELECT hash, config, status, run_dir, study, seconds FROM runs"
        where, args = [], []
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args += list(statuses)
        if search is not None:
            where.append("search=?")
            args.append(search)
        if where:
            query += " WHERE " + " AND ".join(where)
        metrics: dict[str, dict[str, dict[str, Any]]] = {}
        for h, split, auc, acc, extras in self._db.execute("SELECT hash, split, auc, acc, extras FROM metrics"):
            metrics.setdefault(h, {})[split] = {"auc": auc, "acc": acc, **json.loads(extras or "{}")}
        return [
            ResultRow(h, json.loads(cfg), status, metrics.get(h, {}), run_dir, study, seconds)
            for h, cfg, status, run_dir, study, seconds in self._db.execute(query + " ORDER BY rowid", args)
        ]

    def search_groups(self) -> dict[str, list[tuple[str, int | None]]]:
        """search group -> [(hash, trial)] of every trial cell."""
        out: dict[str, list[tuple[str, int | None]]] = {}
        for h, search, trial in self._db.execute("SELECT hash, search, trial FROM runs WHERE search IS NOT NULL"):
            out.setdefault(search, []).append((h, trial))
        return out

    def trial_info(self, h: str) -> tuple[str | None, int | None]:
        row = self._db.execute("SELECT search, trial FROM runs WHERE hash=?", (h,)).fetchone()
        return (None, None) if row is None else (row[0], row[1])
