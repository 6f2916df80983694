"""`build_report(paths, out)`: a static site of runs and studies that works offline from file://.

    out/index.html               every run and study, in sortable tables
    out/runs/SLUG.html           one page per run
    out/studies/SLUG.html        one page per study
    out/assets/*.png, *.svg      the figures (PNG shown, SVG linked)
    out/assets/style.css, sort.js

No CDN and no fonts from the network: every asset is a local file, so the report opens from a
laptop, an archive or a CI artefact. A run or study that cannot be read gets a page that says
what is missing; the rest of the report is built.
"""

from __future__ import annotations

import html
import json
import math
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from medmnist_lab import __version__
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.outputs import write_bytes_atomic, write_text_atomic
from medmnist_lab.report.runs import RunPage, draw_run, read_run, slug_for
from medmnist_lab.report.studies import StudyPage, draw_study, read_study
from medmnist_lab.report.style import Fig

ASSETS = Path(__file__).with_name("assets")
PARALLEL_FROM = 6  # fewer run pages than this are drawn in this process: starting workers costs more


@dataclass
class BuildResult:
    out: Path
    runs: list[RunPage] = field(default_factory=list)
    studies: list[StudyPage] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def index(self) -> Path:
        return self.out / "index.html"


def discover(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Path], list[Path]]:
    """(run folders, study stores) at or below `paths`: a folder with summary.json, config.yaml or
    history.jsonl is a run; a folder with results.db, or a .db file, is a study."""
    runs: list[Path] = []
    studies: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise MedMNISTLabError(f"{path} does not exist; give run folders, study folders or results databases")
        if path.is_file():
            if path.suffix != ".db":
                raise MedMNISTLabError(f"{path} is a file but not a results database (.db)")
            studies.append(path)
            continue
        if (path / "results.db").is_file():
            studies.append(path)
        markers = ("summary.json", "config.yaml", "history.jsonl")
        found = {p.parent for m in markers for p in path.rglob(m) if "report" not in p.parts[len(path.parts) :]}
        runs += sorted(d for d in found if not (d / "results.db").exists() and _is_run(d))
    return list(dict.fromkeys(runs)), list(dict.fromkeys(studies))


def _is_run(folder: Path) -> bool:
    """A classifier run folder (GAN runs are shown on their study's page, not as runs)."""
    import yaml

    try:
        config = yaml.safe_load((folder / "config.yaml").read_text()) if (folder / "config.yaml").is_file() else {}
    except (OSError, yaml.YAMLError):
        return True  # damaged: still a page that says so
    return not (isinstance(config, dict) and "mode" in config and "nz" in config)


def build_report(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    root: str | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> BuildResult:
    """Build the site in `out` (pages refreshed in place). `workers`: processes drawing run pages
    (default: one per CPU core; 1 draws in this process)."""
    workers = workers or os.cpu_count() or 1
    started = time.perf_counter()
    out = Path(out)
    run_dirs, study_paths = discover(paths)
    result = BuildResult(out)
    if not run_dirs and not study_paths:
        raise MedMNISTLabError(f"no run folders or studies found in {', '.join(map(str, paths))}")
    assets = out / "assets"
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "studies").mkdir(parents=True, exist_ok=True)
    assets.mkdir(parents=True, exist_ok=True)
    for name in ("style.css", "sort.js"):  # small: read whole, written like every other file
        write_bytes_atomic(assets / name, (ASSETS / name).read_bytes())
    taken: set[str] = set()
    cache: dict[str, Any] = {}
    studies = [read_study(s, slug_for(s, taken)) for s in study_paths]
    # A study's runs get pages too, wherever their folders are.
    seen = {str(d.resolve()) for d in run_dirs}
    for page in studies:
        for r in page.rows:
            if r.run_dir and Path(r.run_dir).is_dir() and str(Path(r.run_dir).resolve()) not in seen:
                seen.add(str(Path(r.run_dir).resolve()))
                run_dirs.append(Path(r.run_dir))
    jobs = [(d, slug_for(d, taken)) for d in run_dirs]
    bar = tqdm(total=len(jobs), desc="run pages", unit="run", disable=not progress)
    if workers > 1 and len(jobs) >= PARALLEL_FROM:
        # Figures are CPU-bound matplotlib work: one process per core. Spawned, not forked: the
        # parent may hold torch's OpenMP threads, which a fork would copy in a broken state.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx) as pool:
            for page in pool.map(_run_page, jobs, [assets] * len(jobs), [root] * len(jobs), chunksize=4):
                result.runs.append(page)
                bar.update()
    else:
        for job in jobs:
            result.runs.append(_run_page(job, assets, root, cache))
            bar.update()
    bar.close()
    by_dir = {str(p.path.resolve()): p.slug for p in result.runs}
    for page in studies:
        draw_study(page, assets, root)
        page.run_slugs = {
            str(r.run_dir): by_dir[str(Path(r.run_dir).resolve())]
            for r in page.rows
            if r.run_dir and str(Path(r.run_dir).resolve()) in by_dir
        }
        result.studies.append(page)
    for page in result.runs:
        _write(out / "runs" / f"{page.slug}.html", run_html(page))
    for page in result.studies:
        _write(out / "studies" / f"{page.slug}.html", study_html(page))
    _write(out / "index.html", index_html(result))
    result.seconds = time.perf_counter() - started
    return result


_WORKER_CACHE: dict[str, Any] = {}  # per process: a dataset's test split and montage, loaded once


def _run_page(job: tuple[Path, str], assets: Path, root: str | None, cache: dict[str, Any] | None = None) -> RunPage:
    page = read_run(*job)
    draw_run(page, assets, root, _WORKER_CACHE if cache is None else cache)
    return page


def _write(path: Path, text: str) -> None:
    write_text_atomic(path, text)  # UTF-8: the pages declare it


# --- HTML -----------------------------------------------------------------------------------------

e = html.escape


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _page(title: str, body: str, depth: int) -> str:
    up = "../" * depth
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · medmnist-lab</title>
<link rel="stylesheet" href="{up}assets/style.css">
<script src="{up}assets/sort.js" defer></script>
</head>
<body>
<nav><a href="{up}index.html">medmnist-lab report</a></nav>
<main>
<h1>{e(title)}</h1>
{body}
</main>
<footer>medmnist-lab {e(__version__)}</footer>
</body>
</html>
"""


def table_html(rows: Sequence[dict[str, Any]], links: Sequence[str | None] | None = None, sortable: bool = True) -> str:
    """A table of `rows` (dicts with the same keys); `links[i]`, when given, links row i's first cell."""
    if not rows:
        return "<p class='note'>nothing to show</p>"
    cols = list(rows[0])
    head = "".join(f"<th>{e(c)}</th>" for c in cols)
    body = []
    for n, r in enumerate(rows):
        cells = []
        for i, c in enumerate(cols):
            v = r[c]
            text = e(_fmt(v))
            key = f" data-sort='{v}'" if isinstance(v, int | float) and not isinstance(v, bool) else ""
            href = links[n] if links is not None and i == 0 else None
            if href:
                text = f"<a href='{e(href)}'>{text}</a>"
            cells.append(f"<td{key}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cls = " class='sortable'" if sortable else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figures(figs: Sequence[Fig], up: str) -> str:
    parts = []
    for f in figs:
        link = f" <a href='{up}assets/{e(f.svg)}'>SVG</a>" if f.svg else ""
        wide = " class='wide'" if f.wide else ""
        parts.append(
            f"<figure{wide}><img src='{up}assets/{e(f.png)}' alt='{e(f.caption)}'>"
            f"<figcaption>{e(f.caption)}{link}</figcaption></figure>"
        )
    return "<div class='figures'>" + "".join(parts) + "</div>"


def _problems(problems: Sequence[str]) -> str:
    if not problems:
        return ""
    items = "".join(f"<li>{e(p)}</li>" for p in problems)
    return f"<section class='problems'><h2>Missing or damaged</h2><ul>{items}</ul></section>"


def run_html(page: RunPage) -> str:
    s = page.summary or {}
    metrics = s.get("metrics") or {}
    mrows = [
        {"split": split, "AUC": metrics[split].get("auc"), "ACC": metrics[split].get("acc")}
        for split in ("train", "val", "test")
        if split in metrics
    ]
    facts = {
        "run folder": str(page.path),
        "best epoch": s.get("best_epoch"),
        "wall time (s)": s.get("wall_seconds"),
        "device / precision": f"{s.get('device', '?')} / {s.get('precision', '?')}" if s else None,
        "augment": s.get("augment") or page.config.get("augment"),
    }
    config_rows = [{"field": k, "value": json_text(v)} for k, v in page.config.items()]
    body = (
        _problems(page.problems)
        + "<section><h2>Metrics</h2>"
        + (table_html(mrows, sortable=False) if mrows else "<p class='note'>no final metrics (see above)</p>")
        + table_html([{"fact": k, "value": v} for k, v in facts.items() if v is not None], sortable=False)
        + "</section><section><h2>Figures</h2>"
        + (_figures(page.figures, "../") if page.figures else "<p class='note'>no figures could be drawn</p>")
        + "</section><section><h2>Config</h2>"
        + table_html(config_rows, sortable=False)
        + "</section>"
    )
    return _page(f"Run {page.path.name}", body, depth=1)


def json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def study_html(page: StudyPage) -> str:
    parts = [_problems(page.problems)]
    parts.append(
        f"<p>{page.counts.get('done', 0)} runs done"
        + "".join(f", {n} {k}" for k, n in page.counts.items() if k != "done")
        + f"; store: <code>{e(str(page.path))}</code>. Confidence intervals are 95% logit-scale "
        "t-intervals over seeds (they stay in [0, 1]).</p>"
    )
    for sec in page.sections:
        parts.append(f"<section><h2>{e(sec.dataset)}</h2>")
        rows = []
        for g in sec.groups:
            row = {"method": g["name"] + (" (baseline)" if g["baseline"] else ""), "n": g["n"]}
            for m in ("auc", "acc"):
                v = g[m]
                row[f"{m.upper()} mean ± std"] = f"{_fmt(v['mean'])} ± {_fmt(v['std'])}"
                row[f"{m.upper()} 95% CI"] = f"[{_fmt(v['ci_low'])}, {_fmt(v['ci_high'])}]"
                for ref in ("official", "seed", "medmnist-plus"):
                    row[f"{m.upper()} {ref}"] = v["references"].get(ref)
            row["time/run (s)"] = g["seconds"]
            rows.append(row)
        parts.append(table_html(rows))
        if sec.trust_metrics:
            parts.append("<h3>Robustness and calibration (test)</h3>" + _trust_table(sec))
        if sec.comparisons:
            parts.append("<h3>Paired differences to the baseline (same seeds)</h3>")
            crow = [
                {
                    "method": c["group"],
                    "vs": c["baseline"],
                    "metric": c["metric"],
                    "pairs": c["pairs"],
                    "difference": c["diff"],
                    "95% CI": f"[{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]",
                    "paired t-test": c["verdict"],
                    "DeLong per seed": c["delong"] or "–",
                }
                for c in sec.comparisons
            ]
            parts.append(table_html(crow))
        parts += [f"<p class='note'>{e(n)}</p>" for n in sec.notes]
        parts.append(_figures(sec.figures, "../") + "</section>")
    if page.figures:
        parts.append("<section><h2>Augmentation and synthetic data</h2>" + _figures(page.figures, "../") + "</section>")
    runs, links = run_table_rows(page.rows), []
    for r in page.rows:
        slug = page.run_slugs.get(str(r.run_dir))
        links.append(f"../runs/{slug}.html" if slug else None)
    parts.append("<section><h2>Runs</h2>" + table_html(runs, links) + "</section>")
    return _page(f"Study {page.name}", "".join(parts), depth=1)


def run_table_rows(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """A study page's runs table: dataset, size, model, augment, every other field the study varies
    (synthetic, conv, precision, ...: without them two methods' runs look the same), seed, scores."""
    from medmnist_lab.studies.tables import default_group_by

    shown = ("dataset", "size", "model", "augment")
    varied = [f for f in default_group_by(rows) if f not in shown] if rows else []
    return [
        {
            "run": Path(r.run_dir).name if r.run_dir else r.hash,
            **{f: r.config.get(f) for f in shown},
            **{f: _short(r.config.get(f)) for f in varied},
            "seed": r.config.get("seed"),
            "test AUC": r.value("test", "auc"),
            "test ACC": r.value("test", "acc"),
            "time (s)": r.seconds,
        }
        for r in rows
    ]


def _short(value: Any) -> Any:
    """A path-valued field (a synthetic-data file, a training npz) by its file name."""
    return Path(value).name if isinstance(value, str) and "/" in value else value


def _trust_table(sec: Any) -> str:
    """Per method: clean vs corrupted balanced error, ECE before/after calibration, conformal coverage
    and set size (mean ± std over seeds, 95% CI), from the study's trust steps (studies.trust)."""
    from medmnist_lab.studies.trust import metric_label

    rows = []
    for g in sec.groups:
        row: dict[str, Any] = {"method": g["name"] + (" (baseline)" if g["baseline"] else ""), "n": g["n"]}
        for m in sec.trust_metrics:
            v = g[m]
            row[f"{metric_label(m)} mean ± std"] = f"{_fmt(v['mean'])} ± {_fmt(v['std'])}"
            row[f"{metric_label(m)} 95% CI"] = f"[{_fmt(v['ci_low'])}, {_fmt(v['ci_high'])}]"
        rows.append(row)
    note = (
        "<p class='note'>BE: balanced error (1 − balanced accuracy); corrupted: the mean over the dataset's "
        "MedMNIST-C corruptions and the severities scored, calibrated; ECE calibrated and coverage: on test, "
        "with the scaling and conformal thresholds fitted on val.</p>"
    )
    return table_html(rows) + note


def index_html(result: BuildResult) -> str:
    body = (
        "<section id='studies'><h2>Studies</h2>"
        + _linked_table(result.studies, "studies")
        + "</section><section id='runs'><h2>Runs</h2>"
        + _linked_table(result.runs, "runs")
        + "</section>"
        + "<p class='note'>Click a column header to sort. Built "
        + e(time.strftime("%Y-%m-%d %H:%M"))
        + ".</p>"
    )
    return _page("Runs and studies", body, depth=0)


def _linked_table(pages: Sequence[RunPage] | Sequence[StudyPage], folder: str) -> str:
    if not pages:
        return "<p class='note'>none</p>"
    return table_html([p.row() for p in pages], [f"{folder}/{p.slug}.html" for p in pages])
