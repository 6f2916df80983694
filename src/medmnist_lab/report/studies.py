"""A study (a study folder's results.db, or any results database) as a report page.

Per dataset: each method's test AUC/ACC with its 95% CI beside the official, seed and MedMNIST+
numbers; paired differences to a baseline with their p-values (and DeLong's test for binary
tasks); and the figures the study's axes call for: resolution curves when the image size varies,
models side by side when the model varies, augmentation previews when the augmentation varies,
GAN sample grids with their quality when the study trained GANs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.report import plots
from medmnist_lab.report.style import Fig, save, save_image
from medmnist_lab.studies.rows import ResultRow, show_value
from medmnist_lab.studies.trust import metric_label

# The robustness table's columns (studies.trust), in order, where the study's rows have them.
TRUST_COLUMNS: tuple[str, ...] = ("clean_be", "corrupted_be", "ece", "ece_calibrated", "coverage", "set_size")

REFERENCES = ("official", "seed", "medmnist-plus")
# The baseline each varying field is compared against, when the study varies it.
BASELINES: tuple[tuple[str, Any], ...] = (("model", "resnet18"), ("augment", "none"), ("synthetic", None))


@dataclass
class Section:
    dataset: str
    groups: list[dict[str, Any]] = field(default_factory=list)  # name, n, per metric mean/std/ci, refs
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    figures: list[Fig] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    trust_metrics: list[str] = field(default_factory=list)  # the robustness table's columns, when present


@dataclass
class StudyPage:
    slug: str
    path: Path
    name: str
    rows: list[ResultRow] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)
    figures: list[Fig] = field(default_factory=list)  # study-wide (previews, GAN grids)
    problems: list[str] = field(default_factory=list)
    run_slugs: dict[str, str] = field(default_factory=dict)  # run_dir -> run page slug

    def row(self) -> dict[str, Any]:
        datasets = sorted({str(r.config.get("dataset")) for r in self.rows})
        return {
            "study": self.name,
            "runs done": self.counts.get("done", 0),
            "other": sum(v for k, v in self.counts.items() if k != "done"),
            "datasets": ", ".join(datasets),
        }


def read_study(path: Path, slug: str) -> StudyPage:
    from medmnist_lab.studies.search import chosen_rows
    from medmnist_lab.studies.store import ResultStore, db_path

    db = db_path(path)
    name = db.parent.name if db.name == "results.db" else db.stem
    page = StudyPage(slug, path, name)
    try:
        with ResultStore(db, create=False) as store:
            page.rows = chosen_rows(store)
            page.counts = store.counts()
    except MedMNISTLabError as exc:
        page.problems.append(f"results store unreadable: {exc}")
    return page


def _value_of(group: dict[str, Any], rows: list[ResultRow], field_name: str) -> Any:
    from medmnist_lab.studies.tables import common_value

    return group[field_name] if field_name in group else common_value(rows, field_name)


def draw_study(page: StudyPage, assets: Path, root: str | None) -> None:
    from medmnist_lab.metrics.references import get_reference
    from medmnist_lab.studies.tables import compute_table, default_group_by

    if not page.rows:
        page.problems.append("no finished runs in the study yet")
        return
    refs = {name: get_reference(name) for name in REFERENCES}
    group_by = [f for f in default_group_by(page.rows) if f != "dataset"]
    for dataset in sorted({str(r.config.get("dataset")) for r in page.rows}):
        rows = [r for r in page.rows if str(r.config.get("dataset")) == dataset]
        section = Section(dataset)
        page.sections.append(section)
        by = [f for f in group_by if len({json.dumps(r.config.get(f), default=str) for r in rows}) > 1] or ["model"]
        baseline = next(((f, v) for f, v in BASELINES if f in by and any(r.config.get(f) == v for r in rows)), None)
        if baseline is None and "size" in by:
            baseline = ("size", min(r.config.get("size") for r in rows))
        try:
            section.trust_metrics = _trust_metrics(rows)
            metrics = ("auc", "acc", *section.trust_metrics)
            table = compute_table(rows, group_by=by, metrics=metrics, baseline=baseline, data_root=root)
        except MedMNISTLabError as exc:
            section.notes.append(f"no table: {exc}")
            continue
        for g in table.groups:
            name = ", ".join(f"{k}={show_value(v)}" for k, v in g.group.items())
            model, size = _value_of(g.group, g.rows, "model"), _value_of(g.group, g.rows, "size")
            seconds = _mean([r.seconds for r in g.rows])
            entry: dict[str, Any] = dict(
                name=name, n=len(g.rows), model=model, size=size, seconds=seconds, baseline=g.is_baseline
            )
            for m in ("auc", "acc", *section.trust_metrics):
                s = g.summaries[m]
                entry[m] = {"mean": s.mean, "std": s.std, "ci_low": s.ci_low, "ci_high": s.ci_high,
                            "values": [r.value("test", m) for r in g.rows],
                            "references": {ref: (t.value(dataset, model, size, m) if model and size else None)
                                           for ref, t in refs.items()}}  # fmt: skip
            section.groups.append(entry)
            if g.comparison is not None:
                c = g.comparison
                for m, d in c.diffs.items():
                    section.comparisons.append(
                        dict(
                            group=name,
                            baseline=", ".join(f"{k}={show_value(v)}" for k, v in c.baseline_group.items()),
                            metric=metric_label(m),
                            pairs=c.n_pairs,
                            diff=d.mean,
                            ci_low=d.ci_low,
                            ci_high=d.ci_high,
                            verdict=d.verdict(),
                            delong=_delong_text(c.delong) if m == "auc" and c.delong else None,
                        )
                    )
            elif g.comparison_note:
                section.notes.append(f"{name}: {g.comparison_note}")
        _section_figures(page, section, by, assets)
    _study_figures(page, assets, root)


def _trust_metrics(rows: list[ResultRow]) -> list[str]:
    """The robustness table's columns the rows hold (none without a trust step: "ece" alone is the
    training-time ECE every run has)."""
    have = {k for r in rows for k, v in r.metrics.get("test", {}).items() if isinstance(v, int | float)}
    if not have & {"ece_calibrated", "coverage", "corrupted_be"}:
        return []
    return [m for m in TRUST_COLUMNS if m in have]


def _section_figures(page: StudyPage, section: Section, by: list[str], assets: Path) -> None:
    stem = f"{page.slug}-{section.dataset}"
    if section.trust_metrics:
        groups = [{"name": g["name"], **{m: g[m] for m in section.trust_metrics}} for g in section.groups]
        fig = plots.trust_by_group(groups, f"{section.dataset}: robustness and calibration (95% CI)")
        caption = f"{section.dataset}: clean vs corrupted balanced error and ECE before/after calibration, per method"
        section.figures.append(save(fig, assets, f"{stem}-trust", caption))
    for m in ("auc", "acc"):
        groups = [{"name": g["name"], **g[m]} for g in section.groups]
        fig = plots.metric_by_group(groups, m, f"{section.dataset}: test {m.upper()} by method (95% CI)")
        caption = f"{section.dataset}: test {m.upper()} per method, 95% CI, published numbers as markers"
        section.figures.append(save(fig, assets, f"{stem}-{m}", caption))
    if "size" in by:
        points = [{"model": g["model"], "size": g["size"], "seconds": g["seconds"] or 0, **g["auc"]}
                  for g in section.groups if g["size"] is not None]  # fmt: skip
        fig = plots.resolution_curve(points, "auc", f"{section.dataset}: AUC against image size")
        caption = "Resolution: test AUC against image size; training time per run dashed"
        section.figures.append(save(fig, assets, f"{stem}-resolution", caption))
    if "model" in by:
        rows = [{"dataset": section.dataset, "model": show_value(g["model"]), **g["auc"]} for g in section.groups]
        fig = plots.side_by_side(rows, "auc", f"{section.dataset}: models side by side")
        section.figures.append(save(fig, assets, f"{stem}-models", "Models side by side: test AUC, 95% CI"))


def _study_figures(page: StudyPage, assets: Path, root: str | None) -> None:
    augments = sorted({str(r.config.get("augment")) for r in page.rows} - {"none", "None"})
    if augments:
        first = page.rows[0].config
        for spec in augments:
            try:
                image = _preview(spec, str(first.get("dataset")), int(first.get("size", 28)), root or first.get("root"))
            except (MedMNISTLabError, ValueError) as exc:
                page.problems.append(f"augmentation preview of {spec}: not drawn ({exc})")
                continue
            name = f"{page.slug}-augment-{''.join(ch if ch.isalnum() else '_' for ch in spec)}"
            caption = f"Augmentation preview: {spec} (first column: originals)"
            page.figures.append(save_image(image, assets, name, caption))
    gan_runs = sorted({p.parent.parent for p in page.path.rglob("samples/epoch_*.png")}) if page.path.is_dir() else []
    for run in gan_runs:
        grids = sorted((run / "samples").glob("epoch_*.png"))
        text = _gan_quality(run)
        caption = f"GAN samples {run.name} (last grid, one row per class): {text}"
        with Image.open(grids[-1]) as grid:
            page.figures.append(save_image(grid.copy(), assets, f"{page.slug}-gan-{run.name}", caption))


def _gan_quality(run: Path) -> str:
    """FID / precision / recall / CAS of a GAN run from its quality.json (`gan evaluate`)."""
    quality = run / "quality.json"
    if not quality.is_file():
        return f"quality not measured (medmnist-lab gan evaluate {run / 'last.pt'})"
    try:
        q = json.loads(quality.read_text())
        pr, cas = q["precision_recall"], q.get("cas") or {}
        text = f"FID {q['fid']['generated_vs_train']:.2f}, precision {pr['precision']:.3f}, recall {pr['recall']:.3f}"
        return text + (f", CAS AUC {cas['synthetic_trained']['auc']:.3f}" if cas else "")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"quality.json unreadable ({exc})"


def _preview(spec: str, flag: str, size: int, root: str | None):
    from medmnist_lab.augment import build_augment
    from medmnist_lab.augment.preview import preview_rows
    from medmnist_lab.data.arrays import load_split
    from medmnist_lab.data.montage import grid_image

    data = load_split(flag, "train", size, root)
    image_spec = spec.split("+")[0]  # the image policy; mixing needs labels and a batch
    aug = build_augment(image_spec, size, int(data.images.shape[1]), dataset=flag)
    rows, pick = preview_rows(data, aug, min(6, len(data)), 5, 0)
    return grid_image(rows, [f"#{int(i)}" for i in pick], cell=56, label_width=60)


def _delong_text(cells: list[Any]) -> str:
    from medmnist_lab.metrics.stats import format_p

    return "; ".join(
        f"seed {c.seed}: {format_p(c.result.p)}" if c.result is not None else f"seed {c.seed}: {c.note}" for c in cells
    )


def _mean(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None and math.isfinite(v)]
    return sum(got) / len(got) if got else None
