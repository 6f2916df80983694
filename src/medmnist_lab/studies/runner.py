"""The study coordinator: expand the spec, skip finished cells, run the rest on a backend, record.

Only this process writes the results store. Rerunning a study is always safe: finished cells are
skipped, failed ones retried (up to `max_attempts` in all), interrupted ones resumed from their
last checkpoint; the study folder's lock keeps two coordinators apart.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from medmnist_lab.engine.runfolder import KEEP_CHOICES
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.outputs import write_text_atomic
from medmnist_lab.studies.backends import BackendOptions, create_backend
from medmnist_lab.studies.spec import Cell, StudySpec, expand, missing_data_files
from medmnist_lab.studies.store import ResultStore
from medmnist_lab.studies.trust import check_cells as check_trust
from medmnist_lab.studies.trust import has_trust_metrics
from medmnist_lab.studies.worker import CellTask

POLL_SECONDS = 0.5


@dataclass
class StudyReport:
    study_dir: Path
    cells: int
    done: int = 0
    failed: int = 0
    pruned: int = 0
    skipped: int = 0  # finished before this run
    given_up: list[str] = field(default_factory=list)  # failed max_attempts times: not retried any more
    still_failed: list[str] = field(default_factory=list)  # failed at the end of this run
    interrupted: bool = False
    chosen: dict[str, str] = field(default_factory=dict)  # search group -> chosen trial hash


@contextmanager
def study_lock(study_dir: Path) -> Iterator[None]:
    """One coordinator per study folder (flock: released by the kernel if the process dies)."""
    study_dir.mkdir(parents=True, exist_ok=True)
    with open(study_dir / ".lock", "a+") as f:  # not "w": a refused run must not erase the holder's pid
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            raise MedMNISTLabError(
                f"another `study run` (pid {holder}) is using {study_dir}; wait for it, or stop it (Ctrl-C) and rerun"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield


def check_data(cells: list[Cell]) -> None:
    missing = missing_data_files(cells)
    if missing:
        raise MedMNISTLabError(
            f"data files missing for this study: {', '.join(missing)}; download them "
            "(`medmnist-lab datasets download NAME --size N`) or restrict the study (--datasets ...)"
        )


def plan(spec: StudySpec, study_dir: Path) -> tuple[list[Cell], list[Any]]:
    """(grid cells, searches), every cell checked (fields, values, data files) before any work
    starts; a search is checked through its template cell (the ranges' lower ends)."""
    if spec.is_search:
        from medmnist_lab.studies.search import plan_searches

        searches = plan_searches(spec, study_dir)
        check_data([s.template for s in searches])
        check_trust(spec.trust, [s.template.config.dataset for s in searches], spec.source)
        return [], searches
    cells = expand(spec, study_dir)
    check_data(cells)
    check_trust(spec.trust, [c.config.dataset for c in cells], spec.source)
    return cells, []


def save_spec(spec: StudySpec, study_dir: Path) -> Path:
    """Every invocation's resolved spec is kept (specs/TIMESTAMP.yaml): nothing is overwritten."""
    path = study_dir / "specs" / f"{datetime.now():%Y%m%d-%H%M%S-%f}.yaml"
    return write_text_atomic(path, yaml.safe_dump(spec.to_dict(), sort_keys=False))


class _Queue:
    """The cells still to run: the grid's, then (for searches) trials proposed one at a time."""

    def __init__(self, cells: list[Cell], searches: list[Any]) -> None:
        self.cells = list(cells)
        self.searches = searches

    def next(self) -> Cell | None:
        if self.cells:
            return self.cells.pop(0)
        for s in self.searches:
            cell = s.ask()
            if cell is not None:
                return cell
        return None

    def tell(self, h: str, outcome: dict[str, Any]) -> None:
        for s in self.searches:
            s.tell(h, outcome)


def run_study(
    spec: StudySpec,
    study_dir: str | Path,
    *,
    backend: str = "local",
    options: BackendOptions | None = None,
    keep: str = "best",
    max_attempts: int = 3,
    progress: bool = True,
) -> StudyReport:
    study_dir = Path(study_dir).resolve()  # workers (and Ray nodes) get absolute paths
    if max_attempts <= 0:
        raise MedMNISTLabError(f"--max-attempts must be a positive integer, got {max_attempts}")
    if keep not in KEEP_CHOICES:
        raise MedMNISTLabError(f"invalid keep {keep!r}; choose one of: {', '.join(KEEP_CHOICES)}")
    grid, searches = plan(spec, study_dir)
    with study_lock(study_dir), ResultStore(study_dir) as store:
        save_spec(spec, study_dir)
        report = StudyReport(study_dir, len(grid) + sum(s.trials for s in searches))
        todo: list[Cell] = []
        lacking = _lacking_trust(store, spec.trust)
        finished_dirs: dict[str, str | None] = {}  # done cells needing trust steps -> their run folder
        for cell in grid:
            store.add_cell(cell.hash, cell.config.to_dict(), spec.name)
            status, attempts = store.status(cell.hash) or ("pending", 0)
            if status == "done" and cell.hash in lacking:  # trained: its worker runs the trust steps only
                todo.append(cell)
                finished_dirs[cell.hash] = lacking[cell.hash]
            elif status in ("done", "pruned"):
                report.skipped += 1
            elif status == "failed" and attempts >= max_attempts:
                report.given_up.append(cell.hash)
            else:
                todo.append(cell)
        for s in searches:
            s.attach(store, spec.name, max_attempts)
            report.skipped += s.finished
            report.given_up += s.given_up
        queue = _Queue(todo, searches)
        opts = options or BackendOptions()
        _run_queue(
            queue, store, study_dir, backend, opts, keep, max_attempts, report, progress, spec.trust, finished_dirs
        )
        mine = {c.hash for c in grid} | {h for s in searches for h in s.hashes()}
        report.still_failed = [r.hash for r in store.rows(statuses=["failed"]) if r.hash in mine]
        for s in searches:
            chosen = s.chosen()
            if chosen is not None:
                report.chosen[s.key] = chosen
    return report


def _run_queue(
    queue: _Queue,
    store: ResultStore,
    study_dir: Path,
    backend_name: str,
    options: BackendOptions,
    keep: str,
    max_attempts: int,
    report: StudyReport,
    progress: bool,
    trust: dict[str, Any] | None = None,
    finished_dirs: dict[str, str | None] | None = None,
) -> None:
    first = queue.next()
    if first is None:
        return
    be = create_backend(backend_name, options)
    running: dict[str, Cell] = {}
    bar = tqdm(
        total=report.cells,
        initial=report.skipped + len(report.given_up),
        desc=f"study {study_dir.name}",
        unit="cell",
        disable=not progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )

    def submit(cell: Cell) -> None:
        store.mark_running(cell.hash)
        running[cell.hash] = cell
        be.submit(_task(cell, study_dir, keep, queue, trust, (finished_dirs or {}).get(cell.hash)))

    shown: list[tuple[int, ...]] = []

    def refresh() -> None:
        counts = (report.done + report.skipped, len(running), report.failed)
        if not shown or shown[-1] != counts:  # redraw on change only: logs stay readable
            shown.append(counts)
            bar.set_postfix(done=counts[0], running=counts[1], failed=counts[2])

    try:
        pending: Cell | None = first
        while pending is not None or running:
            while pending is not None and len(running) < be.slots:
                if _finished_meanwhile(store, pending, finished_dirs):
                    report.skipped += 1
                    bar.update(1)
                else:
                    submit(pending)
                pending = queue.next()
            refresh()
            for h, outcome in be.wait(POLL_SECONDS):
                status = outcome["status"]
                if status == "interrupted":  # a worker got Ctrl-C before the coordinator did
                    raise KeyboardInterrupt  # (the cell stays in `running`: marked pending below)
                cell = running.pop(h)
                store.record(h, outcome)
                queue.tell(h, outcome)
                _, attempts = store.status(h) or ("", 0)
                if status == "failed":
                    report.failed += 1
                    msg = f"cell {cell.label} [{h}] failed (attempt {attempts}/{max_attempts}): {outcome.get('error')}"
                    tqdm.write(msg, file=sys.stderr)
                    if attempts < max_attempts and outcome.get("retry", True):  # retried at once (bounded)
                        submit(cell)
                        continue
                    if attempts >= max_attempts:
                        report.given_up.append(h)
                elif status == "pruned":
                    report.pruned += 1
                else:
                    report.done += 1
                bar.update(1)
                if pending is None and len(running) < be.slots:
                    pending = queue.next()
            refresh()
    except KeyboardInterrupt:
        report.interrupted = True
        be.cancel_all()
        store.mark_interrupted(list(running))
    finally:
        bar.close()
        be.close()


def _finished_meanwhile(store: ResultStore, cell: Cell, finished_dirs: dict[str, str | None] | None) -> bool:
    """A queued cell the store now calls done: `results import` brought its run in while the study ran
    (statuses are read once at the start; without this the import would be trained over)."""
    if cell.hash in (finished_dirs or {}):  # done already at the start, queued for its trust steps only
        return False
    status, _ = store.status(cell.hash) or ("pending", 0)
    return status in ("done", "pruned")


def _lacking_trust(store: ResultStore, trust: dict[str, Any] | None) -> dict[str, str | None]:
    """Done cells whose stored test metrics lack what the spec's trust steps add -> their run folder
    (which may lie outside the study: runs brought in by `results import`)."""
    if not trust:
        return {}
    rows = store.rows(statuses=["done"])
    return {r.hash: r.run_dir for r in rows if not has_trust_metrics(r.metrics.get("test", {}), trust)}


def _task(
    cell: Cell,
    study_dir: Path,
    keep: str,
    queue: _Queue,
    trust: dict[str, Any] | None = None,
    run_dir: str | None = None,
) -> CellTask:
    curve, after = [], 0
    for s in queue.searches:
        if s.owns(cell.hash):
            curve, after = s.median_curve(), s.prune_after
    return CellTask(
        hash=cell.hash,
        config=cell.config.to_dict(),
        log_path=str(study_dir / "logs" / f"{cell.hash}.log"),
        study_dir=str(study_dir),
        keep=keep,
        median_curve=curve,
        prune_after=after,
        trust=trust,
        run_dir=run_dir,
    )
