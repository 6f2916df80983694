"""Result tables: runs grouped by configuration, mean ± std and a 95% CI per group, optional
paired comparisons against a baseline, and published reference numbers.

- Only rows with status "done" count; the others are listed as excluded.
- A group is one combination of the `group_by` config fields; its runs are usually seeds.
- With a baseline (FIELD, VALUE), each group is compared with the group that differs only in
  FIELD, run by run: a run is paired with the baseline run whose config is identical except for
  FIELD (and the bookkeeping fields `IGNORED_FIELDS`), i.e. the same seed. The paired t-test on
  those differences is what decides "significant"; a difference smaller than the seed-to-seed
  noise reads "not significant (p=0.41)" rather than as a win.
- For binary tasks, each seed pair also gets DeLong's test on the two runs' official prediction
  files: does this one trained model beat that one on this test set?
- Selecting a trial of a search (`best_trial`) uses validation metrics only: choosing on test
  numbers and then reporting them would overstate the result.
"""

from __future__ import annotations

import math
import numbers
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medmnist_lab.data.registry import SPLITS
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.metrics.references import ReferenceTable, get_reference
from medmnist_lab.metrics.stats import (
    ALPHA,
    CONFIDENCE,
    UNIT_INTERVAL_METRICS,
    DeLongResult,
    PairedDiff,
    Summary,
    delong_test,
    paired_difference,
    summarize,
)
from medmnist_lab.studies.rows import ResultRow, canon, show_value
from medmnist_lab.studies.trust import TABLE_METRICS, TRUST_METRICS
from medmnist_lab.studies.trust import UNIT_METRICS as TRUST_UNIT_METRICS

DEFAULT_METRICS: tuple[str, ...] = ("auc", "acc")
# Where and how a run was stored or executed: never part of what a table compares.
IGNORED_FIELDS: tuple[str, ...] = ("name", "out_dir", "root", "device")
PAIR_FIELD = "seed"
BOUNDED_METRICS: tuple[str, ...] = tuple(dict.fromkeys((*UNIT_INTERVAL_METRICS, *TRUST_UNIT_METRICS)))


def _sort_key(value: Any) -> tuple[int, float, str]:
    # Numbers by value (28 before 224), then strings, then anything else by its JSON form.
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, bool):
        return (2, 0.0, str(value))
    if isinstance(value, int | float):
        return (1, float(value), "")
    if isinstance(value, str):
        return (2, 0.0, value)
    return (3, 0.0, canon(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)  # numpy scalars too


def _finite(value: Any) -> float | None:
    if not _is_number(value):
        return None
    return float(value) if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------
# Choosing a trial


def best_trial(
    rows: Sequence[ResultRow], objective: tuple[str, str] = ("val", "auc"), maximize: bool = True
) -> ResultRow:
    """The done row with the best `objective` = (split, metric); ties go to the lowest hash.

    The split may not be "test": a search chooses on validation numbers so that its test numbers
    stay an unbiased estimate.
    """
    split, metric = objective
    if split == "test":
        raise MedMNISTLabError(
            "a trial must not be chosen on test metrics (that biases the reported test result); "
            "choose an objective on 'val' or 'train'"
        )
    if split not in SPLITS:
        raise MedMNISTLabError(f"unknown split '{split}'; choose one of: val, train")
    done = [r for r in rows if r.status == "done"]
    if not done:
        raise MedMNISTLabError(f"no rows with status 'done' among {len(rows)} rows ({_status_counts(rows)})")
    scored = [(v, r) for r in done if (v := _finite(r.value(split, metric))) is not None]
    if not scored:
        valid = sorted({k for r in done for k, v in r.metrics.get(split, {}).items() if _finite(v) is not None})
        raise MedMNISTLabError(
            f"no done row has a finite {split} '{metric}'; metrics on {split}: {', '.join(valid) or 'none'}"
        )
    sign = -1.0 if maximize else 1.0
    return min(scored, key=lambda vr: (sign * vr[0], vr[1].hash))[1]


def _status_counts(rows: Sequence[ResultRow]) -> str:
    counts = Counter(r.status for r in rows)
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"


# ---------------------------------------------------------------------------------------------
# Computing the table


@dataclass
class DeLongCell:
    """DeLong's test for one seed pair, or why it could not run."""

    seed: Any
    result: DeLongResult | None = None
    note: str | None = None


@dataclass
class Comparison:
    """One group against its baseline group, paired by run."""

    baseline_group: dict[str, Any]
    n_pairs: int
    seeds: list[Any]
    diffs: dict[str, PairedDiff]  # metric -> paired statistics of group - baseline
    delong: list[DeLongCell] | None = None  # None: not a binary task, or AUC not requested
    delong_note: str | None = None  # why DeLong was not run although the task is binary


@dataclass
class GroupStats:
    group: dict[str, Any]  # group_by field -> value
    rows: list[ResultRow]
    summaries: dict[str, Summary]
    reference: dict[str, float | None] = field(default_factory=dict)
    is_baseline: bool = False
    comparison: Comparison | None = None
    comparison_note: str | None = None  # why a non-baseline group has no comparison


@dataclass
class TableData:
    """Everything a table shows, before formatting."""

    split: str
    metrics: list[str]
    group_by: list[str]
    groups: list[GroupStats]
    excluded: dict[str, int]
    confidence: float
    alpha: float
    baseline: tuple[str, Any] | None = None
    reference: str | None = None
    reference_source: str | None = None


def _config_fields(rows: Sequence[ResultRow]) -> list[str]:
    return sorted({k for r in rows for k in r.config})


def default_group_by(rows: Sequence[ResultRow]) -> list[str]:
    """Config fields that vary across rows, except the seed and the bookkeeping fields."""
    fields = [f for f in _config_fields(rows) if f != PAIR_FIELD and f not in IGNORED_FIELDS]
    varying = [f for f in fields if len({canon(r.config.get(f)) for r in rows}) > 1]
    return varying or [f for f in ("dataset", "model", "size") if f in fields]


def _valid_metrics(rows: Sequence[ResultRow], split: str) -> list[str]:
    return sorted({k for r in rows for k, v in r.metrics.get(split, {}).items() if _is_number(v)})


def _match_value(rows: Sequence[ResultRow], fld: str, value: Any) -> Any:
    """The config value of `fld` equal to `value` (also "28" for 28, as a CLI passes it)."""
    present = {canon(r.config.get(fld)): r.config.get(fld) for r in rows}
    if canon(value) in present:
        return present[canon(value)]
    by_text = [v for v in present.values() if show_value(v) == str(value)]
    if len(by_text) == 1:
        return by_text[0]
    shown = ", ".join(show_value(v) for v in sorted(present.values(), key=_sort_key))
    raise MedMNISTLabError(f"baseline {fld}='{value}' is not among the done runs; values of '{fld}': {shown}")


def _pair_key(row: ResultRow, fields: Sequence[str], skip: str) -> tuple[str, ...]:
    return tuple(canon(row.config.get(f)) for f in fields if f != skip and f not in IGNORED_FIELDS)


def common_value(rows: Sequence[ResultRow], fld: str) -> Any:
    """The value of config field `fld` shared by all `rows`; None where they differ."""
    values = {canon(r.config.get(fld)) for r in rows}
    return rows[0].config.get(fld) if len(values) == 1 else None


def default_metrics(rows: Sequence[ResultRow], split: str = "test") -> list[str]:
    """AUC and ACC; with a study's trust steps (studies.trust) in the rows, also ECE before/after
    calibration, conformal coverage and set size, and the corrupted balanced error, where present."""
    valid = set(_valid_metrics(rows, split))
    if not valid & (set(TRUST_METRICS) - {"ece"}):  # "ece" alone is every run's training-time ECE
        return list(DEFAULT_METRICS)
    return [*DEFAULT_METRICS, *(m for m in TABLE_METRICS if m in valid)]


def compute_table(
    rows: Sequence[ResultRow],
    group_by: Sequence[str] | None = None,
    metrics: Sequence[str] | None = DEFAULT_METRICS,
    split: str = "test",
    baseline: tuple[str, Any] | None = None,
    reference: str | None = None,
    *,
    confidence: float = CONFIDENCE,
    alpha: float = ALPHA,
    delong: bool = True,
    data_root: str | os.PathLike[str] | None = None,
) -> TableData:
    """The numbers of `build_table`, for callers that format them themselves."""
    if split not in SPLITS:
        raise MedMNISTLabError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
    done = [r for r in rows if r.status == "done"]
    if not done:
        raise MedMNISTLabError(f"no rows with status 'done' among {len(rows)} rows ({_status_counts(rows)})")
    excluded = dict(sorted(Counter(r.status for r in rows if r.status != "done").items()))

    fields = _config_fields(done)
    group_by = list(dict.fromkeys(group_by)) if group_by is not None else default_group_by(done)
    for f in group_by:
        if f not in fields:
            raise MedMNISTLabError(f"unknown group-by field '{f}'; choose from the config fields: {', '.join(fields)}")

    if metrics is None:
        metrics = default_metrics(done, split)
    metrics = list(dict.fromkeys(m.lower() for m in metrics))
    valid = _valid_metrics(done, split)
    if not metrics:
        raise MedMNISTLabError(f"no metrics requested; choose from the {split} metrics: {', '.join(valid)}")
    for m in metrics:
        if m not in valid:
            raise MedMNISTLabError(
                f"unknown metric '{m}' for split '{split}'; choose one of: {', '.join(valid) or 'none (no metrics)'}"
            )

    ref_table = get_reference(reference) if reference is not None else None

    base_field = base_value = None
    if baseline is not None:
        base_field, raw_value = baseline
        if base_field not in group_by:
            raise MedMNISTLabError(
                f"baseline field '{base_field}' must be one of the group-by fields: {', '.join(group_by) or 'none'}"
            )
        base_value = _match_value(done, base_field, raw_value)

    groups = _group(done, group_by, metrics, split, confidence, ref_table)
    if base_field is not None:
        _add_comparisons(
            groups, group_by, fields, (base_field, base_value), metrics, split, confidence, alpha, delong, data_root
        )

    return TableData(
        split=split,
        metrics=metrics,
        group_by=group_by,
        groups=groups,
        excluded=excluded,
        confidence=confidence,
        alpha=alpha,
        baseline=(base_field, base_value) if base_field is not None else None,
        reference=ref_table.name if ref_table is not None else None,
        reference_source=ref_table.source if ref_table is not None else None,
    )


def _group(
    done: Sequence[ResultRow],
    group_by: Sequence[str],
    metrics: Sequence[str],
    split: str,
    confidence: float,
    ref_table: ReferenceTable | None,
) -> list[GroupStats]:
    buckets: dict[tuple[str, ...], list[ResultRow]] = {}
    for r in done:
        buckets.setdefault(tuple(canon(r.config.get(f)) for f in group_by), []).append(r)
    groups = []
    for key in sorted(buckets, key=lambda k: [_sort_key(buckets[k][0].config.get(f)) for f in group_by]):
        members = sorted(buckets[key], key=lambda r: (_sort_key(r.config.get(PAIR_FIELD)), r.hash))
        summaries = {
            m: summarize(
                [v for r in members if (v := _finite(r.value(split, m))) is not None],
                confidence,
                bounded=m in BOUNDED_METRICS,
            )
            for m in metrics
        }
        g = GroupStats(group={f: members[0].config.get(f) for f in group_by}, rows=members, summaries=summaries)
        if ref_table is not None:
            ds, model, size, conv = (common_value(members, f) for f in ("dataset", "model", "size", "conv"))
            known = None not in (ds, model, size)
            g.reference = {m: ref_table.value(ds, model, size, m, conv) if known else None for m in metrics}
        groups.append(g)
    return groups


def _add_comparisons(
    groups: Sequence[GroupStats],
    group_by: Sequence[str],
    fields: Sequence[str],
    baseline: tuple[str, Any],
    metrics: Sequence[str],
    split: str,
    confidence: float,
    alpha: float,
    delong: bool,
    data_root: str | os.PathLike[str] | None,
) -> None:
    """Mark the baseline groups and compare every other group with its baseline counterpart."""
    base_field, base_value = baseline

    def key(g: GroupStats, swap: bool = False) -> tuple[str, ...]:
        return tuple(canon(base_value if swap and f == base_field else g.group[f]) for f in group_by)

    by_key = {key(g): g for g in groups}
    labels: dict[tuple[str, int, str, str], np.ndarray | str] = {}  # split labels, read once per table
    for g in groups:
        if canon(g.group[base_field]) == canon(base_value):
            g.is_baseline = True
            continue
        base = by_key.get(key(g, swap=True))
        if base is None:
            g.comparison_note = "no baseline group"
            continue
        g.comparison = _compare(
            g, base, fields, base_field, metrics, split, confidence, alpha, delong, data_root, labels
        )
        if g.comparison.n_pairs == 0:
            g.comparison_note = "no runs pair with the baseline (seeds or settings differ)"


def _dedupe(rows: Sequence[ResultRow], fields: Sequence[str], skip: str) -> dict[tuple[str, ...], ResultRow]:
    # Two runs with one config (a re-run under another name) would otherwise count one seed twice.
    out: dict[tuple[str, ...], ResultRow] = {}
    for r in sorted(rows, key=lambda r: r.hash):
        out.setdefault(_pair_key(r, fields, skip), r)
    return out


def _compare(
    g: GroupStats,
    base: GroupStats,
    fields: Sequence[str],
    base_field: str,
    metrics: Sequence[str],
    split: str,
    confidence: float,
    alpha: float,
    delong: bool,
    data_root: str | os.PathLike[str] | None,
    labels: dict[tuple[str, int, str, str], np.ndarray | str],
) -> Comparison:
    ours, theirs = _dedupe(g.rows, fields, base_field), _dedupe(base.rows, fields, base_field)
    pairs = [(r, theirs[k]) for k, r in ours.items() if k in theirs]
    pairs.sort(key=lambda p: (_sort_key(p[0].config.get(PAIR_FIELD)), p[0].hash))
    diffs = {}
    for m in metrics:
        both = [
            (a, b)
            for x, y in pairs
            if (a := _finite(x.value(split, m))) is not None and (b := _finite(y.value(split, m))) is not None
        ]
        diffs[m] = paired_difference([a for a, _ in both], [b for _, b in both], confidence, alpha)
    comp = Comparison(
        baseline_group=dict(base.group),
        n_pairs=len(pairs),
        seeds=[a.config.get(PAIR_FIELD) for a, _ in pairs],
        diffs=diffs,
    )
    if delong and "auc" in metrics and pairs:
        comp.delong, comp.delong_note = _delong_cells(pairs, split, confidence, data_root, labels)
    return comp


# ---------------------------------------------------------------------------------------------
# DeLong on prediction files


def _delong_cells(
    pairs: Sequence[tuple[ResultRow, ResultRow]],
    split: str,
    confidence: float,
    data_root: str | os.PathLike[str] | None,
    labels: dict[tuple[str, int, str, str], np.ndarray | str],
) -> tuple[list[DeLongCell] | None, str | None]:
    from medmnist_lab.data.registry import get_dataset

    if any(canon(a.config.get("dataset")) != canon(b.config.get("dataset")) for a, b in pairs):
        return None, None  # different test sets: DeLong compares classifiers on the same samples
    # Sizes may differ: a dataset's 28/64/128/224 px files hold the same samples in the same order
    # (checked below: the two files' labels must be identical).
    try:
        info = get_dataset(str(pairs[0][0].config.get("dataset")), warn_alias=False)
    except MedMNISTLabError as exc:
        return None, str(exc)
    if info.task != "binary-class":
        return None, None
    flag = info.flag  # the official name, as in the prediction file names
    cells = []
    for a, b in pairs:
        seed = a.config.get(PAIR_FIELD)
        try:
            size_a, size_b = (int(r.config.get("size", 28)) for r in (a, b))
            root = data_root if data_root is not None else a.config.get("root")
            y = _labels(flag, size_a, split, root, labels)
            if size_b != size_a and not np.array_equal(y, _labels(flag, size_b, split, root, labels)):
                raise _Missing(f"the {size_a} and {size_b} px files label their {split} samples differently")
            sa = _positive_scores(a, flag, size_a, split, len(y))
            sb = _positive_scores(b, flag, size_b, split, len(y))
            cells.append(DeLongCell(seed, delong_test(y, sa, sb, confidence)))
        except (_Missing, MedMNISTLabError) as exc:  # one unusable pair must not sink the whole table
            cells.append(DeLongCell(seed, note=str(exc)))
    return cells, None


class _Missing(Exception):
    """A prediction or data file DeLong needs is absent or unreadable; shown in the cell."""


def _labels(
    flag: str,
    size: int,
    split: str,
    root: str | os.PathLike[str] | None,
    cache: dict[tuple[str, int, str, str], np.ndarray | str],
) -> np.ndarray:
    """The split's labels, read once per table. Only the labels member of the npz is read:
    `load_split` would also read (or, at 128/224 px, cache to disk) every image."""
    from medmnist_lab.data.arrays import open_npz, read_member
    from medmnist_lab.data.paths import data_path
    from medmnist_lab.data.registry import get_dataset

    key = (flag, size, split, str(root))
    if key not in cache:
        try:
            info = get_dataset(flag, warn_alias=False)
            path = data_path(info, size, root)
            with open_npz(path, info, size) as npz:
                cache[key] = np.asarray(read_member(npz, f"{split}_labels", path)).reshape(-1)
        except MedMNISTLabError as exc:
            cache[key] = f"labels unavailable: {exc}"
    got = cache[key]
    if isinstance(got, str):
        raise _Missing(got)
    return got


def _prediction_file(row: ResultRow, flag: str, size: int, split: str) -> Path:
    """The official prediction CSV of `row` for `split`, written by the engine into its run_dir."""
    if not row.run_dir:
        raise _Missing(f"run {row.hash} has no run_dir")
    run_dir = Path(row.run_dir)
    size_flag = "" if size == 28 else f"_{size}"
    prefix = f"{flag}{size_flag}_{split}_[AUC]"
    try:
        found = sorted(p for p in run_dir.iterdir() if p.name.startswith(prefix) and p.name.endswith(".csv"))
    except OSError:
        raise _Missing(f"run folder {run_dir} is missing") from None
    if not found:
        raise _Missing(f"no {split} predictions ({prefix}...csv) in {run_dir}")
    if len(found) > 1:
        # The engine names the file after the run folder; prefer that one.
        named = [p for p in found if p.name.endswith(f"@{run_dir.name}.csv")]
        if len(named) != 1:
            raise _Missing(f"{len(found)} {split} prediction files in {run_dir}; expected one")
        found = named
    return found[0]


def _positive_scores(row: ResultRow, flag: str, size: int, split: str, n: int) -> np.ndarray:
    path = _prediction_file(row, flag, size, split)
    try:
        table = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise _Missing(f"unreadable predictions {path.name}: {exc}") from None
    if table.shape[0] != n or table.shape[1] < 2:
        raise _Missing(f"{path.name} has shape {table.shape}; expected {n} rows of index + scores")
    return table[:, -1]  # column 0 is pandas' index; the official binary AUC scores the last column


# ---------------------------------------------------------------------------------------------
# Formatting
