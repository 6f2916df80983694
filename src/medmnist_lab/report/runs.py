"""A run folder as a report page: its config, figures, and a list of what is missing or damaged.

Every piece is optional: a run without history.jsonl still gets its confusion matrix, one with a
truncated summary.json still gets its learning curves, and the page says what could not be drawn
and why. Figures that need the test images or labels (ROC, misclassified images, the montage)
read the dataset file from the data root; without it the page says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.report import plots, trust
from medmnist_lab.report.style import Fig, save, save_image

MISCLASSIFIED = 24  # images in the grid of mistakes


@dataclass
class RunPage:
    slug: str
    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    figures: list[Fig] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        """The index table's row."""
        c, s = self.config, self.summary or {}
        test = (s.get("metrics") or {}).get("test") or {}
        return {
            "run": self.path.name,
            "dataset": s.get("dataset") or c.get("dataset"),
            "size": s.get("size") or c.get("size"),
            "model": s.get("model") or c.get("model"),
            "recipe": s.get("recipe") or c.get("recipe"),
            "augment": c.get("augment"),
            "seed": s.get("seed", c.get("seed")),
            "test AUC": test.get("auc"),
            "test ACC": test.get("acc"),
            "time (s)": s.get("wall_seconds"),
        }


def slug_for(path: Path, taken: set[str]) -> str:
    base = "-".join(p for p in path.resolve().parts[-3:] if p not in ("/",)).replace(" ", "_")
    base = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in base)
    slug, i = base, 1
    while slug in taken:
        i += 1
        slug = f"{base}-{i}"
    taken.add(slug)
    return slug


def read_run(path: Path, slug: str) -> RunPage:
    page = RunPage(slug, path)
    try:
        page.config = yaml.safe_load((path / "config.yaml").read_text()) or {}
        if not isinstance(page.config, dict):
            raise ValueError("not a mapping")
    except FileNotFoundError:
        page.problems.append("config.yaml is missing")
    except (OSError, ValueError, yaml.YAMLError) as exc:
        page.problems.append(f"config.yaml is unreadable ({exc})")
        page.config = {}
    try:
        raw = json.loads((path / "summary.json").read_text())
        if not isinstance(raw, dict) or "metrics" not in raw:
            raise ValueError("no metrics in it")
        page.summary = raw
        page.config = page.config or raw.get("config") or {}
    except FileNotFoundError:
        page.problems.append("summary.json is missing: the run has not finished (no final metrics)")
    except (OSError, ValueError) as exc:
        page.problems.append(f"summary.json is damaged or truncated ({exc}): no final metrics")
    history_file = path / "history.jsonl"
    if not history_file.is_file():
        page.problems.append("history.jsonl is missing: no learning curves")
    else:
        for i, line in enumerate(history_file.read_text(errors="replace").splitlines()):
            try:
                page.history.append(json.loads(line))
            except json.JSONDecodeError:
                page.problems.append(f"history.jsonl line {i + 1} is cut short; the curves stop before it")
                break
    return page


def draw_run(page: RunPage, assets: Path, root: str | None, cache: dict[str, Any]) -> None:
    """Figures of the run into `assets` (PNG + SVG); what cannot be drawn goes to page.problems."""

    def add(caption: str, name: str, make, wide: bool = False) -> None:
        try:
            fig = make()
        except (MedMNISTLabError, OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            page.problems.append(f"{caption}: not drawn ({exc})")
            return
        page.figures.append(save(fig, assets, f"{page.slug}-{name}", caption, wide))

    if page.history:
        add("Learning curves: training loss, validation AUC/ACC, learning rate", "curves",
            lambda: plots.learning_curves(page.history), wide=True)  # fmt: skip
    test = ((page.summary or {}).get("metrics") or {}).get("test")
    names = (test or {}).get("labels") or []
    if test:
        if "confusion_matrix" in test:
            add("Confusion matrix (test): counts and row-normalised", "confusion",
                lambda: plots.confusion(test["confusion_matrix"], names))  # fmt: skip
        if test.get("per_class"):
            add("Precision and recall per class (test)", "perclass", lambda: plots.per_class(test["per_class"]))
        if test.get("calibration"):
            add("Reliability diagram (test) with the expected calibration error", "reliability",
                lambda: plots.reliability(test["calibration"]))  # fmt: skip
    records = trust.read_records(page.path)
    page.problems += records.problems
    rob = records.robustness
    if rob is not None:
        add("MedMNIST-C: balanced error (test) against severity, one line per corruption, clean dashed",
            "severity", lambda: plots.severity_curves(rob["cells"], float(rob["clean"]["balanced_error"])),
            wide=True)  # fmt: skip
    data = _test_data(page, root, cache)
    if isinstance(data, str):
        page.problems.append(data)
        if records.evaluation is not None:
            _trust_figures(records, None, None, "", add)
        return
    images, labels, scores, task = data
    if records.calibration is not None or records.evaluation is not None:
        _trust_figures(records, labels, scores, task, add)
    if scores is not None:
        add(
            "ROC curves (test), one per class, with their AUC",
            "roc",
            lambda: plots.roc_curves(labels, scores, names, task),
        )
        if not task.startswith("multi-label"):
            caption = "Misclassified test images, the most confident first: true → predicted (confidence)"
            if images.dim() == 4 and page.config.get("conv"):
                caption = caption.replace("images", "volumes (middle slices on the D | H | W axes)")
            truth = labels.reshape(-1)
            add(caption, "mistakes", lambda: plots.mistakes(images, truth, scores, names, MISCLASSIFIED), wide=True)
    montage = _montage(page, root, cache, assets)
    if montage:
        page.figures.append(montage)


def _trust_figures(records: trust.TrustRecords, labels, scores, task: str, add) -> None:
    """Reliability before/after calibration, risk-coverage and conformal set sizes (module trust)."""
    cal = records.calibration
    if cal is not None and scores is not None:
        method = str(cal["parameters"].get("method", "?"))

        def diagrams():
            return plots.reliability_before_after(*trust.reliability_pair(cal, labels, scores), method)

        caption = f"Reliability diagrams (test) before and after calibration ({method} scaling, fitted on val)"
        add(caption, "reliability-calibrated", diagrams, wide=True)
        conformal = cal.get("conformal")
        if conformal:
            alpha, score = conformal["alpha"], conformal["score"]

            def sizes():
                got = trust.conformal_set_sizes(cal, scores)
                return plots.set_sizes(got, len(cal["label_names"]), alpha, score, conformal["test"]["coverage"])

            add(f"Conformal prediction-set sizes (test), {score.upper()} at ALPHA {alpha:g}", "set-sizes", sizes)
    if records.evaluation is not None or scores is not None:
        caption = "Risk–coverage curve (test): the error rate of the most confident predictions kept"
        add(
            caption,
            "risk-coverage",
            lambda: plots.risk_coverage(*trust.risk_coverage_data(records, labels, scores, task)),
        )


def _test_data(page: RunPage, root: str | None, cache: dict[str, Any]):
    """(images, labels, scores or None, task) of the test split, or a sentence saying what is missing."""
    from medmnist_lab.data.arrays import load_split
    from medmnist_lab.data.registry import get_dataset

    flag, size = page.config.get("dataset"), page.config.get("size", 28)
    if not flag:
        return "ROC, misclassified images and montage: the run's dataset is unknown (no config)"
    key = f"test:{flag}:{size}"
    if key not in cache:
        try:
            cache[key] = load_split(flag, "test", int(size), root or page.config.get("root"))
        except MedMNISTLabError as exc:
            cache[key] = f"ROC curves, misclassified images and montage need the dataset file: {exc}"
    split = cache[key]
    if isinstance(split, str):
        return split
    scores = _scores(page, flag, int(size), len(split))
    if isinstance(scores, str):
        page.problems.append(scores)
        scores = None
    task = get_dataset(flag, warn_alias=False).task
    images = split.images
    if images.dim() == 5:  # volumes: drawn as their middle slices on the D | H | W axes
        from medmnist_lab.data.montage import volume_panels

        images = torch.stack([volume_panels(v, "slices") for v in images])
    return images, split.labels.numpy(), scores, task


def _scores(page: RunPage, flag: str, size: int, n: int) -> np.ndarray | str:
    prefix = f"{flag}{'' if size == 28 else f'_{size}'}_test_[AUC]"
    found = sorted(p for p in page.path.glob("*.csv") if p.name.startswith(prefix))
    if not found:
        return f"no test prediction file ({prefix}...csv): no ROC curves or misclassified images"
    try:
        table = np.loadtxt(found[-1], delimiter=",", ndmin=2, dtype=np.float64)
    except (OSError, ValueError) as exc:
        return f"{found[-1].name} is unreadable ({exc})"
    if table.shape[0] != n:
        return f"{found[-1].name} has {table.shape[0]} rows, the test split {n}"
    return table[:, 1:]  # column 0 is the row index


def _montage(page: RunPage, root: str | None, cache: dict[str, Any], assets: Path) -> Fig | None:
    from medmnist_lab.data.arrays import load_split
    from medmnist_lab.data.montage import class_rows, grid_image, volume_rows
    from medmnist_lab.data.registry import get_dataset

    flag, size = page.config.get("dataset"), int(page.config.get("size", 28))
    key = f"montage:{flag}:{size}"
    if key not in cache:
        try:
            info = get_dataset(flag, warn_alias=False)
            data = load_split(info, "train", size, root or page.config.get("root"))
            rows, names = class_rows(data.images, data.labels, info.label_names, info.is_multilabel, 8, 0)
            caption = "The dataset: training images, one row per class"
            if info.is_3d:
                rows = volume_rows(rows, "slices")
                caption = "The dataset: training volumes (middle slices on the D | H | W axes), one row per class"
            cache[key] = save_image(grid_image(rows, names, cell=48), assets, f"montage-{flag}-{size}", caption)
        except MedMNISTLabError as exc:
            page.problems.append(f"montage: not drawn ({exc})")
            cache[key] = None
    return cache[key]
