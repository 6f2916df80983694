"""Result tables as text: Markdown, CSV, LaTeX (booktabs) and JSON, from `tables.TableData`;
`build_table` computes (`tables.compute_table`) and formats in one call."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from typing import Any

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.metrics.stats import PairedDiff, Summary, format_p
from medmnist_lab.studies.rows import ResultRow, show_value
from medmnist_lab.studies.tables import (
    ALPHA,
    CONFIDENCE,
    DEFAULT_METRICS,
    PAIR_FIELD,
    Comparison,
    DeLongCell,
    GroupStats,
    TableData,
    compute_table,
)
from medmnist_lab.studies.trust import metric_label


def _num(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.3f}"


def _summary_cell(s: Summary, n_group: int, pm: str = "±") -> str:
    if s.n == 0:
        return "n/a"
    text = f"{_num(s.mean)}" if s.n < 2 else f"{_num(s.mean)} {pm} {_num(s.std)} [{_num(s.ci_low)}, {_num(s.ci_high)}]"
    return text if s.n == n_group else f"{text} (n={s.n})"


def _diff_cell(d: PairedDiff) -> str:
    if d.n == 0:
        return "no pairs"
    if d.n < 2:
        return f"{d.mean:+.3f} (1 pair)"
    return f"{d.mean:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}] ({d.n} pairs)"


def _delong_text(comp: Comparison, alpha: float) -> str:
    if comp.delong is None:
        return comp.delong_note or ""
    notes = {cell.note for cell in comp.delong if cell.result is None}
    if len(notes) == 1 and all(cell.result is None for cell in comp.delong):
        return f"not run ({notes.pop()})"  # one reason for every seed (e.g. no dataset file): said once
    parts, n_sig, n_ok = [], 0, 0
    for cell in comp.delong:
        if cell.result is None:
            parts.append(f"seed {show_value(cell.seed)}: {cell.note}")
            continue
        n_ok += 1
        n_sig += cell.result.significant(alpha)
        parts.append(f"seed {show_value(cell.seed)}: {cell.result.diff:+.3f} {format_p(cell.result.p)}")
    head = f"{n_sig}/{n_ok} significant" if n_ok else "not run"
    return f"{head} ({'; '.join(parts)})"


def _comparison_cells(g: GroupStats, data: TableData) -> list[str]:
    n_cols = 2 * len(data.metrics) + (1 if _has_delong(data) else 0)
    if g.is_baseline:
        return ["baseline"] + [""] * (n_cols - 1)
    if g.comparison is None or g.comparison.n_pairs == 0:
        return [g.comparison_note or ""] + [""] * (n_cols - 1)
    cells = []
    for m in data.metrics:
        d = g.comparison.diffs[m]
        cells += [_diff_cell(d), d.verdict()]
    if _has_delong(data):
        cells.append(_delong_text(g.comparison, data.alpha))
    return cells


def _has_delong(data: TableData) -> bool:
    return any(
        g.comparison is not None and (g.comparison.delong is not None or g.comparison.delong_note) for g in data.groups
    )


def _ci_method(data: TableData, metric: str) -> str:
    """ ", logit-t" where the metric's intervals are logit-scale ones (bounded to [0, 1])."""
    methods = {g.summaries[metric].method for g in data.groups if metric in g.summaries}
    return ", logit-t" if methods == {"logit-t"} else ""


def _headers(data: TableData) -> list[str]:
    pct = f"{data.confidence:.0%}"
    head = [*data.group_by, "n"] if data.group_by else ["group", "n"]
    head += [f"{data.split} {metric_label(m)} (mean ± std [{pct} CI{_ci_method(data, m)}])" for m in data.metrics]
    if data.reference:
        head += [f"{data.reference} {metric_label(m)}" for m in data.metrics]
    if data.baseline:
        for m in data.metrics:
            head += [f"Δ {metric_label(m)} vs baseline [{pct} CI]", f"Δ {metric_label(m)} paired t-test"]
        if _has_delong(data):
            head.append(f"DeLong {data.split} AUC per seed")
    return head


def _text_rows(data: TableData, pm: str = "±") -> list[list[str]]:
    out = []
    for g in data.groups:
        row = [show_value(g.group[f]) for f in data.group_by] if data.group_by else ["all"]
        row.append(str(len(g.rows)))
        row += [_summary_cell(g.summaries[m], len(g.rows), pm) for m in data.metrics]
        if data.reference:
            row += [_num(g.reference.get(m)) if g.reference.get(m) is not None else "" for m in data.metrics]
        if data.baseline:
            row += _comparison_cells(g, data)
        out.append(row)
    return out


def _notes(data: TableData) -> list[str]:
    notes = ["Runs counted: status 'done' only" + (f"; excluded: {_excluded(data)}." if data.excluded else ".")]
    if data.baseline:
        fld, value = data.baseline
        notes.append(
            f"Δ: group minus the {fld}={show_value(value)} group, runs paired by {PAIR_FIELD} "
            f"(all other settings equal); two-sided paired t-test, significant at p < {data.alpha:g}."
        )
        if _has_delong(data):
            notes.append(
                "DeLong: test of the two runs' AUCs on the same samples for each seed pair "
                "(one trained model against another; seed-to-seed variation is what the t-test covers)."
            )
    if data.reference:
        notes.append(f"Reference ({data.reference}): {data.reference_source}")
    return notes


def _excluded(data: TableData) -> str:
    return ", ".join(f"{n} {s}" for s, n in data.excluded.items())


def to_markdown(data: TableData) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    head = _headers(data)
    lines = ["| " + " | ".join(esc(h) for h in head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in _text_rows(data)]
    return "\n".join(lines) + "\n\n" + "\n".join(_notes(data)) + "\n"


_LATEX_CHARS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"$<$",
    ">": r"$>$",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
}


def _latex(text: str) -> str:
    return "".join(_LATEX_CHARS.get(c, c) for c in text)


def to_latex(data: TableData) -> str:
    head = _headers(data)
    n_group = max(len(data.group_by), 1)
    spec = "l" * n_group + "r" + "l" * (len(head) - n_group - 1)
    lines = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule", " & ".join(_latex(h) for h in head) + r" \\", "\\midrule"]
    lines += [" & ".join(_latex(c) for c in row) + r" \\" for row in _text_rows(data)]
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += [f"% {note}" for note in _notes(data)]
    return "\n".join(lines) + "\n"


def _clean(obj: Any) -> Any:
    """NaN -> None (JSON has no NaN); ±inf stays out of JSON the same way."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def _delong_record(cell: DeLongCell) -> dict[str, Any]:
    if cell.result is None:
        return {"seed": cell.seed, "note": cell.note}
    return {"seed": cell.seed, **cell.result.to_dict()}


def to_json(data: TableData) -> str:
    records = []
    for g in data.groups:
        rec: dict[str, Any] = {
            "group": g.group,
            "n": len(g.rows),
            "runs": [r.hash for r in g.rows],
            "metrics": {m: g.summaries[m].to_dict() for m in data.metrics},
        }
        if data.reference:
            rec["reference"] = {m: g.reference.get(m) for m in data.metrics}
        if data.baseline:
            rec["is_baseline"] = g.is_baseline
            comp = g.comparison
            rec["comparison"] = (
                None
                if comp is None
                else {
                    "baseline_group": comp.baseline_group,
                    "n_pairs": comp.n_pairs,
                    "seeds": comp.seeds,
                    "metrics": {m: {**d.to_dict(), "verdict": d.verdict()} for m, d in comp.diffs.items()},
                    "delong": None if comp.delong is None else [_delong_record(c) for c in comp.delong],
                    "delong_note": comp.delong_note,
                }
            )
            rec["comparison_note"] = g.comparison_note
        records.append(rec)
    doc = {
        "split": data.split,
        "metrics": data.metrics,
        "group_by": data.group_by,
        "confidence": data.confidence,
        "alpha": data.alpha,
        "excluded": data.excluded,
        "baseline": None if data.baseline is None else {"field": data.baseline[0], "value": data.baseline[1]},
        "reference": None if data.reference is None else {"name": data.reference, "source": data.reference_source},
        "records": records,
    }
    return json.dumps(_clean(doc), indent=2, default=str) + "\n"


def to_csv(data: TableData) -> str:
    """One column per number; NaN and missing values are empty cells."""
    head = [*data.group_by, "n"]
    for m in data.metrics:
        head += [f"{m}_{k}" for k in ("n", "mean", "std", "ci_low", "ci_high")]
    if data.reference:
        head += ["reference"] + [f"reference_{m}" for m in data.metrics]
    if data.baseline:
        head.append("is_baseline")
        for m in data.metrics:
            head += [f"{m}_diff_{k}" for k in ("n", "mean", "std", "ci_low", "ci_high", "t", "p", "significant")]
        head += ["delong_n", "delong_significant", "delong_seed_p"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)

    def num(x: Any) -> Any:
        return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) else x

    for g in data.groups:
        row: list[Any] = [show_value(g.group[f]) for f in data.group_by] + [len(g.rows)]
        for m in data.metrics:
            s = g.summaries[m]
            row += [s.n, num(s.mean), num(s.std), num(s.ci_low), num(s.ci_high)]
        if data.reference:
            row += [data.reference] + [num(g.reference.get(m)) for m in data.metrics]
        if data.baseline:
            row.append(g.is_baseline)
            comp = g.comparison
            for m in data.metrics:
                d = comp.diffs[m] if comp is not None else None
                row += (
                    [d.n, num(d.mean), num(d.std), num(d.ci_low), num(d.ci_high), num(d.t), num(d.p), d.significant]
                    if d is not None and d.n
                    else [""] * 8
                )
            ok = [c for c in (comp.delong or [])] if comp is not None else []
            ok = [c for c in ok if c.result is not None]
            row += (
                [
                    len(ok),
                    sum(c.result.significant(data.alpha) for c in ok),
                    ";".join(f"{show_value(c.seed)}:{c.result.p!r}" for c in ok),  # seed:p, one per seed pair
                ]
                if ok
                else ["", "", ""]
            )
        w.writerow(row)
    return buf.getvalue()


FORMATTERS = {"md": to_markdown, "csv": to_csv, "latex": to_latex, "json": to_json}
FORMATS: tuple[str, ...] = tuple(FORMATTERS)


def build_table(
    rows: Sequence[ResultRow],
    group_by: Sequence[str] | None = None,
    metrics: Sequence[str] | None = DEFAULT_METRICS,
    split: str = "test",
    baseline: tuple[str, Any] | None = None,
    reference: str | None = None,
    fmt: str = "md",
    *,
    confidence: float = CONFIDENCE,
    alpha: float = ALPHA,
    delong: bool = True,
    data_root: str | os.PathLike[str] | None = None,
) -> str:
    """A table of `rows` in `fmt` (md, csv, latex, json).

    group_by: config fields defining a group (default: those that vary, except seed).
    baseline: (FIELD, VALUE), e.g. ("model", "resnet18"): compare every group with the group
    that has FIELD=VALUE and the same other group-by values, paired by seed.
    reference: a reference table (official, seed, medmnist-plus) printed beside each group.
    data_root: where the dataset files are for DeLong's labels (default: each run's `root`).
    metrics None: AUC and ACC, plus the trust columns when the rows have them (`tables.default_metrics`).
    """
    if fmt not in FORMATS:
        raise MedMNISTLabError(f"unknown table format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    data = compute_table(
        rows,
        group_by,
        metrics,
        split,
        baseline,
        reference,
        confidence=confidence,
        alpha=alpha,
        delong=delong,
        data_root=data_root,
    )
    return FORMATTERS[fmt](data)
