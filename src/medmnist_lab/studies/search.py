"""Hyper-parameter search in the study machinery: range axes searched with Optuna.

One search per point of the list axes (e.g. per dataset), `trials` trials each. Optuna's TPE
sampler proposes a trial's values in the coordinator (ask/tell); the trial is a cell like any
other (hashed, stored, run on any backend). The objective is the best validation AUC of the trial
(the value its checkpoint was selected on); the test split plays no part in it.

Median pruning follows Optuna's MedianPruner rule: after `prune_after` epochs, a trial whose
validation AUC at epoch e is below the median of the finished trials' AUCs at epoch e stops. The
coordinator sends the median curve with the trial (workers never talk back mid-run), so it is
taken over the trials finished when the trial started, after `STARTUP_TRIALS` of them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path
from typing import Any

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.studies.spec import Cell, StudySpec, build_config, cell_hash, grid_points
from medmnist_lab.studies.store import ResultStore

STARTUP_TRIALS = 5  # MedianPruner's default n_startup_trials


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise MedMNISTLabError("a spec with range axes is a search: pip install 'medmnist-lab[search]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class Search:
    def __init__(self, spec: StudySpec, point: dict[str, Any], study_dir: Path) -> None:
        self.spec, self.point, self.study_dir = spec, point, study_dir
        self.key = ",".join(f"{k}={v}" for k, v in sorted(point.items())) or "all"
        self.trials = int(spec.trials or 0)
        # A cell at the ranges' lower ends: checks the fixed fields and the data files up front.
        self.template = self._cell({r.field: _cast(r, r.low) for r in spec.ranges}, None)
        self.prune_after = max(1, self.template.config.epochs // 4)
        self.distributions = {r.field: r.distribution() for r in spec.ranges}
        self._trials: dict[str, Any] = {}  # hash -> optuna trial (asked, not yet told)
        self._own: dict[str, int] = {}  # hash -> trial number
        self._requeue: list[Cell] = []
        self.finished = 0
        self.given_up: list[str] = []

    def _cell(self, params: dict[str, Any], trial: int | None) -> Cell:
        config = build_config(self.spec, {**self.point, **params}, self.study_dir)
        h = cell_hash(config.to_dict())
        return Cell(config, h, self.key, trial)

    def owns(self, h: str) -> bool:
        return h in self._own

    def hashes(self) -> list[str]:
        return list(self._own)

    def attach(self, store: ResultStore, study: str, max_attempts: int) -> None:
        """Rebuild the Optuna study from the store: finished trials are told again, unfinished
        ones queued to run first (they count towards `trials`)."""
        optuna = _optuna()
        self.store, self.study_name = store, study
        seed = int(self.template.config.seed)
        self.optuna = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        for row in store.rows(search=self.key):
            _, trial_no = store.trial_info(row.hash)
            self._own[row.hash] = int(trial_no or 0)
            params = {f: row.config[f] for f in self.distributions}
            status, attempts = store.status(row.hash) or ("pending", 0)
            if status in ("done", "pruned"):
                self.finished += 1
                state = optuna.trial.TrialState.COMPLETE if status == "done" else optuna.trial.TrialState.PRUNED
                value = row.value("val", "auc") if status == "done" else None
                self.optuna.add_trial(
                    optuna.trial.create_trial(
                        params=params,
                        distributions=self.distributions,
                        value=value if value is not None and math.isfinite(value) else None,
                        state=state if value is not None or status == "pruned" else optuna.trial.TrialState.FAIL,
                    )
                )
            elif status == "failed" and attempts >= max_attempts:
                self.given_up.append(row.hash)
            else:
                self._requeue.append(dataclasses.replace(self._cell(params, trial_no), hash=row.hash))

    def ask(self) -> Cell | None:
        if self._requeue:
            return self._requeue.pop(0)
        if len(self._own) >= self.trials:
            return None
        trial = self.optuna.ask(self.distributions)
        cell = self._cell(trial.params, len(self._own))
        if cell.hash in self._own:  # TPE proposed a config already tried (an int range): tell it as such
            self.optuna.tell(trial, state=_optuna().trial.TrialState.PRUNED)
            return self.ask() if len(self._own) < self.trials else None
        self._own[cell.hash] = len(self._own)
        self._trials[cell.hash] = trial
        self.store.add_cell(cell.hash, cell.config.to_dict(), self.study_name, self.key, self._own[cell.hash])
        return cell

    def tell(self, h: str, outcome: dict[str, Any]) -> None:
        trial = self._trials.pop(h, None)
        if trial is None:
            return
        state = _optuna().trial.TrialState
        if outcome["status"] == "done":
            value = outcome["summary"]["metrics"]["val"]["auc"]
            if value is not None and math.isfinite(value):
                self.optuna.tell(trial, value)
            else:
                self.optuna.tell(trial, state=state.FAIL)
        elif outcome["status"] == "pruned":
            self.optuna.tell(trial, state=state.PRUNED)
        else:
            self.optuna.tell(trial, state=state.FAIL)

    def median_curve(self) -> list[float]:
        """Per-epoch median validation AUC over this search's finished trials."""
        curves = []
        for row in self.store.rows(statuses=["done"], search=self.key):
            hist = Path(row.run_dir or "") / "history.jsonl"
            if hist.is_file():
                curves.append([json.loads(line)["val_auc"] for line in hist.read_text().splitlines() if line])
        if len(curves) < STARTUP_TRIALS:
            return []
        length = max(len(c) for c in curves)
        out = []
        for e in range(length):
            values = [c[e] for c in curves if e < len(c) and math.isfinite(c[e])]
            out.append(statistics.median(values) if values else -math.inf)
        return out

    def chosen(self) -> str | None:
        """The trial with the best validation AUC (ties: the lowest hash); never chosen on test."""
        from medmnist_lab.studies.tables import best_trial

        rows = [r for r in self.store.rows(statuses=["done"], search=self.key) if _finite(r.value("val", "auc"))]
        return best_trial(rows).hash if rows else None


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _cast(r: Any, value: float) -> float | int:
    return int(value) if r.kind in ("int", "log_int") else value


def plan_searches(spec: StudySpec, study_dir: Path) -> list[Search]:
    points = grid_points(dataclasses.replace(spec, ranges=[]))
    if not points:
        raise MedMNISTLabError(f"{spec.source}: the grid is empty (every point excluded)")
    return [Search(spec, p, study_dir) for p in points]


def chosen_rows(store: ResultStore) -> list[Any]:
    """The rows a table reports: grid cells as they are; of each search, only the trial chosen on
    validation (its test score is reported once, the other trials' never)."""
    from medmnist_lab.studies.tables import best_trial

    groups = store.search_groups()
    in_search = {h for members in groups.values() for h, _ in members}
    rows = [r for r in store.rows(statuses=["done"]) if r.hash not in in_search]
    for key in groups:
        trials = [r for r in store.rows(statuses=["done"], search=key) if _finite(r.value("val", "auc"))]
        if trials:
            rows.append(best_trial(trials))
    return rows
