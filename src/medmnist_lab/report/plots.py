"""The figures of a report, each a function from plain data to a matplotlib Figure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator
from sklearn.metrics import roc_auc_score, roc_curve

from medmnist_lab.report.style import PALETTE, figure, styled


@styled
def learning_curves(history: Sequence[dict[str, Any]]) -> Figure:
    """Train loss, validation AUC/ACC and the learning rate against the epoch."""
    fig, (ax_loss, ax_val, ax_lr) = figure(3.8, 3.0, ncols=3, margins={"left": 0.06, "right": 0.98, "bottom": 0.17})
    epochs = [h["epoch"] for h in history]
    ax_loss.plot(epochs, [h.get("train_loss") for h in history], marker=".")
    ax_loss.set(title="training loss", xlabel="epoch")
    for key, colour in (("val_auc", PALETTE[0]), ("val_acc", PALETTE[1])):
        ax_val.plot(epochs, [h.get(key) for h in history], marker=".", color=colour, label=key[4:].upper())
    best = max(range(len(history)), key=lambda i: _num(history[i].get("val_auc")))
    ax_val.axvline(epochs[best], color="grey", linestyle=":", label=f"best epoch {epochs[best]}")
    ax_val.set(title="validation", xlabel="epoch")
    ax_val.legend()
    ax_lr.plot(epochs, [h.get("lr") for h in history], color=PALETTE[2], marker=".")
    ax_lr.set(title="learning rate (epoch start)", xlabel="epoch")
    return fig


def _ci_err(points: Sequence[dict[str, Any]]) -> list[list[float]]:
    """Error-bar lengths below and above each mean from its CI (0 where the CI is undefined)."""
    # A logit-scale interval is not centred on the mean and may, for skewed seeds, lie a hair to one
    # side of it: the bar then starts at the mean (matplotlib refuses negative lengths).
    below = [max(0.0, p["mean"] - p["ci_low"]) if math.isfinite(p["ci_low"]) else 0 for p in points]
    above = [max(0.0, p["ci_high"] - p["mean"]) if math.isfinite(p["ci_high"]) else 0 for p in points]
    return [below, above]


def _unit_ylim(ax: Any) -> None:
    """Keep a [0, 1] metric's axis inside [0, 1] (a little margin above 1 for the markers)."""
    lo, hi = ax.get_ylim()
    ax.set_ylim(max(lo, 0.0), min(hi, 1.02))


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else -math.inf


@styled
def roc_curves(labels: np.ndarray, scores: np.ndarray, names: Sequence[str], task: str) -> Figure:
    """One-vs-rest ROC per class (per label for multi-label), with its AUC in the legend."""
    fig, (ax,) = figure(5.0, 4.2)
    multilabel = task.startswith("multi-label")
    n = scores.shape[1]
    classes = range(n) if n > 2 or multilabel else [n - 1]  # binary: the positive class only
    for k in classes:
        truth = labels[:, k] if multilabel else (labels.reshape(-1) == k)
        if truth.min() == truth.max():
            continue  # one class only: no curve
        fpr, tpr, _ = roc_curve(truth, scores[:, k])
        auc = roc_auc_score(truth, scores[:, k])
        ax.plot(fpr, tpr, color=PALETTE[k % len(PALETTE)], label=f"{names[k][:28]} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right", fontsize=8)
    return fig


@styled
def confusion(matrix: Sequence[Sequence[int]], names: Sequence[str]) -> Figure:
    """Counts and row-normalised (recall per true class), side by side."""
    cm = np.asarray(matrix, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = max(3.4, 0.55 * len(names) + 1.8)
    fig, axes = figure(size, size * 0.85, ncols=2, margins={"left": 0.2, "bottom": 0.3, "wspace": 0.7})
    short = [n[:14] for n in names]
    for ax, data, title, fmt in ((axes[0], cm, "counts", "{:.0f}"), (axes[1], norm, "row-normalised", "{:.2f}")):
        ax.imshow(data, cmap="Blues", vmin=0)
        ax.grid(False)
        ax.set(title=title, xlabel="predicted", ylabel="true", xticks=range(len(names)), yticks=range(len(names)))
        ax.set_xticklabels(short, rotation=45, ha="right", fontsize=8)
        ax.set_yticklabels(short, fontsize=8)
        top = data.max() or 1
        if len(names) <= 12:
            for i in range(len(names)):
                for j in range(len(names)):
                    colour = "white" if data[i, j] > top / 2 else "black"
                    ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", fontsize=8, color=colour)
    return fig


@styled
def reliability(calibration: dict[str, Any]) -> Figure:
    """Mean confidence vs accuracy per confidence bin, with the bin counts and the ECE."""
    fig, (ax,) = figure(4.6, 4.0)
    _reliability_axis(ax, calibration, "reliability (test)")
    ax.legend(loc="upper left", fontsize=8)
    return fig


@styled
def per_class(per_class: dict[str, dict[str, Any]]) -> Figure:
    """Precision and recall of each class (or label): summary.json's name -> {precision, recall, ...}."""
    names = [name[:18] for name in per_class]
    stats = list(per_class.values())
    fig, (ax,) = figure(max(4.5, 0.6 * len(names) + 2), 3.4, margins={"bottom": 0.3})
    x = np.arange(len(names))
    ax.bar(x - 0.2, [c["precision"] for c in stats], width=0.4, label="precision", color=PALETTE[0])
    ax.bar(x + 0.2, [c["recall"] for c in stats], width=0.4, label="recall", color=PALETTE[1])
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set(ylim=(0, 1.15), title="per class (test)")
    ax.legend(ncols=2, loc="upper center")
    return fig


@styled
def metric_by_group(groups: Sequence[dict[str, Any]], metric: str, title: str) -> Figure:
    """Mean with its 95% CI per group (method), and the reference values as markers."""
    fig, (ax,) = figure(max(4.5, 0.9 * len(groups) + 2), 4.0, margins={"bottom": 0.34})
    x = np.arange(len(groups))
    means = [g["mean"] for g in groups]
    ax.errorbar(x, means, yerr=_ci_err(groups), fmt="o", color=PALETTE[0], capsize=4, label="mean, 95% CI")
    for g_i, g in enumerate(groups):
        ax.plot([g_i] * len(g["values"]), g["values"], ".", color=PALETTE[5], alpha=0.7)
    markers = {"official": ("s", PALETTE[3]), "seed": ("^", PALETTE[2]), "medmnist-plus": ("D", PALETTE[4])}
    for ref, (marker, colour) in markers.items():
        pts = [(i, g["references"].get(ref)) for i, g in enumerate(groups) if g["references"].get(ref) is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker, color=colour, markerfacecolor="none", label=ref)
    ax.set_xticks(x)
    ax.set_xticklabels([g["name"] for g in groups], rotation=20, ha="right", fontsize=8)
    ax.set(title=title, ylabel=f"test {metric.upper()}")
    _unit_ylim(ax)
    ax.legend(fontsize=8)
    return fig


@styled
def resolution_curve(points: Sequence[dict[str, Any]], metric: str, title: str) -> Figure:
    """Metric (mean, 95% CI) against image size, training time per run on a second axis."""
    fig, (ax,) = figure(5.0, 3.6, margins={"right": 0.84})
    by_model: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        by_model.setdefault(p["model"], []).append(p)
    for i, (model, pts) in enumerate(sorted(by_model.items())):
        pts = sorted(pts, key=lambda p: p["size"])
        sizes = [p["size"] for p in pts]
        ax.errorbar(
            sizes, [p["mean"] for p in pts], yerr=_ci_err(pts), marker="o", capsize=4, color=PALETTE[i], label=model
        )
    ax.set(xscale="log", xlabel="image size (px)", ylabel=f"test {metric.upper()}", title=title)
    _unit_ylim(ax)
    sizes = sorted({p["size"] for p in points})
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    ax2 = ax.twinx()
    for i, (_, pts) in enumerate(sorted(by_model.items())):
        pts = sorted(pts, key=lambda p: p["size"])
        ax2.plot([p["size"] for p in pts], [p["seconds"] for p in pts], linestyle="--", color=PALETTE[i], alpha=0.6)
    ax2.set_ylabel("training time per run (s, dashed)")
    ax2.grid(False)
    ax.legend(loc="lower right")
    return fig


@styled
def side_by_side(rows: Sequence[dict[str, Any]], metric: str, title: str) -> Figure:
    """Two or more models per dataset: mean with 95% CI, grouped by dataset."""
    datasets = sorted({r["dataset"] for r in rows})
    models = sorted({r["model"] for r in rows})
    fig, (ax,) = figure(max(4.5, 1.3 * len(datasets) + 2), 3.6)
    width = 0.8 / max(len(models), 1)
    for j, model in enumerate(models):
        for i, ds in enumerate(datasets):
            hit = [r for r in rows if r["dataset"] == ds and r["model"] == model]
            if not hit:
                continue
            r = hit[0]
            ax.bar(i + (j - (len(models) - 1) / 2) * width, r["mean"], width=width * 0.9, yerr=_ci_err([r]), capsize=3,
                   color=PALETTE[j], label=model if i == 0 else None)  # fmt: skip
    ax.set_xticks(range(len(datasets)))
    ax.set_xticklabels(datasets)
    ax.set(title=title, ylabel=f"test {metric.upper()}", ylim=(0, 1.05))
    ax.legend()
    return fig


@styled
def mistakes(images, truth: np.ndarray, scores: np.ndarray, names: Sequence[str], limit: int) -> Figure:
    """The most confident misclassified images as one mosaic, each labelled true -> predicted (confidence)."""
    pred, conf = scores.argmax(1), scores.max(1)
    wrong = np.flatnonzero(pred != truth)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:limit]
    c, h, w = images[0].shape
    aspect = w / h  # 1 for images; about 3 for volumes drawn as three slices side by side
    cols = 6 if aspect < 1.5 else 3
    rows = max(1, -(-len(wrong) // cols))
    margins = {"left": 0.01, "right": 0.99, "bottom": 0.01, "top": 0.99}
    fig, (ax,) = figure(cols * 1.45 * max(1.0, aspect / 1.5), rows * 1.75, margins=margins)
    ax.axis("off")
    if len(wrong) == 0:
        ax.text(0.5, 0.5, "no misclassified test images", ha="center", va="center")
        return fig
    gap = max(2, h // 8)
    mosaic = np.full((rows * (h + 3 * gap), cols * (w + gap), 3), 255, dtype=np.uint8)
    for n, i in enumerate(wrong):
        r, k = divmod(n, cols)
        img = images[int(i)].numpy().transpose(1, 2, 0)
        y, x = r * (h + 3 * gap) + 2 * gap, k * (w + gap)
        mosaic[y : y + h, x : x + w] = img if c == 3 else np.repeat(img, 3, axis=2)
        label = f"{names[truth[i]][:9]}→{names[pred[i]][:9]}\n{conf[i]:.2f}"
        ax.text(x + w / 2, y - gap * 0.2, label, ha="center", va="bottom", fontsize=6)
    ax.imshow(mosaic, interpolation="nearest")
    return fig


def _reliability_axis(ax: Any, calibration: dict[str, Any], title: str) -> None:
    conf, acc, count = calibration["bin_confidence"], calibration["bin_accuracy"], calibration["bin_count"]
    edges = np.linspace(0, 1, len(count) + 1)
    centers, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    heights = [a if a is not None else 0 for a in acc]
    ax.bar(centers, heights, width=width * 0.9, color=PALETTE[0], alpha=0.8, label="accuracy")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="perfect calibration")
    shown = [(c, a) for c, a in zip(conf, acc, strict=True) if c is not None]
    if shown:
        ax.plot(*zip(*shown, strict=True), "o", color=PALETTE[3], markersize=4, label="mean confidence")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.set_title(f"{title}, ECE {calibration['ece']:.3f}")


@styled
def reliability_before_after(before: dict[str, Any], after: dict[str, Any], method: str) -> Figure:
    """Reliability diagrams (test) of the raw and the calibrated probabilities, side by side."""
    fig, (ax_b, ax_a) = figure(4.2, 4.0, ncols=2, margins={"left": 0.08, "right": 0.98, "wspace": 0.3})
    _reliability_axis(ax_b, before, "raw (test)")
    _reliability_axis(ax_a, after, f"{method} scaling (test)")
    ax_b.legend(loc="upper left", fontsize=8)
    return fig


@styled
def risk_coverage(coverage: Sequence[float], risk: Sequence[float], aurc: float, source: str) -> Figure:
    """Selective prediction: the error rate of the most confident share of the test predictions."""
    fig, (ax,) = figure(4.8, 3.8)
    ax.plot(coverage, risk, color=PALETTE[0], marker="." if len(coverage) <= 40 else None)
    full = float(risk[-1]) if len(risk) else 0.0
    ax.axhline(full, color="grey", linestyle="--", linewidth=0.8, label=f"risk at full coverage {full:.3f}")
    ax.set(xlabel="coverage (share of test predictions kept)", ylabel="risk (error rate of those kept)", xlim=(0, 1))
    ax.set_ylim(bottom=0)
    ax.set_title(f"risk–coverage (test), AURC {aurc:.3f}")
    ax.legend(loc="lower left", fontsize=8, title=source, title_fontsize=8)
    return fig


@styled
def set_sizes(sizes: np.ndarray, n_classes: int, alpha: float, score: str, coverage: float) -> Figure:
    """Histogram of the conformal prediction-set sizes on test (0 = empty set)."""
    fig, (ax,) = figure(4.8, 3.6)
    counts = np.bincount(np.asarray(sizes, dtype=np.int64), minlength=n_classes + 1)[: n_classes + 1]
    ax.bar(np.arange(n_classes + 1), counts, color=PALETTE[2], width=0.8)
    ax.set_xticks(np.arange(n_classes + 1))
    ax.set(xlabel="classes in the prediction set", ylabel="test images")
    ax.set_title(f"{score.upper()} sets at ALPHA {alpha:g}: coverage {coverage:.3f}, mean size {np.mean(sizes):.2f}")
    return fig


@styled
def severity_curves(cells: Sequence[dict[str, Any]], clean: float) -> Figure:
    """Balanced error against severity, one line per corruption; the clean error dashed."""
    fig, (ax,) = figure(6.4, 4.0, margins={"right": 0.7})
    names = list(dict.fromkeys(str(c["corruption"]) for c in cells))
    markers = "os^Dv<>p*h"
    for i, name in enumerate(names):
        pts = sorted((int(c["severity"]), float(c["balanced_error"])) for c in cells if c["corruption"] == name)
        ax.plot(*zip(*pts, strict=True), marker=markers[i % len(markers)], color=PALETTE[i % len(PALETTE)], label=name)
    ax.axhline(clean, color="grey", linestyle="--", linewidth=1.5, label=f"clean {clean:.3f}")
    severities = sorted({int(c["severity"]) for c in cells})
    ax.set_xticks(severities)
    ax.set(xlabel="severity", ylabel="balanced error (test)", title="MedMNIST-C: balanced error by severity")
    _unit_ylim(ax)
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    return fig


@styled
def trust_by_group(groups: Sequence[dict[str, Any]], title: str) -> Figure:
    """Per group: clean and corrupted balanced error, ECE before and after calibration (means, 95% CI)."""
    keys = [(k, label) for k, label in (("clean_be", "clean BE"), ("corrupted_be", "corrupted BE"),
            ("ece", "ECE raw"), ("ece_calibrated", "ECE calibrated")) if any(g.get(k) for g in groups)]  # fmt: skip
    fig, (ax,) = figure(max(4.8, 1.2 * len(groups) + 2.5), 3.8, margins={"bottom": 0.3})
    width = 0.8 / max(len(keys), 1)
    for j, (key, label) in enumerate(keys):
        pts = [(i, g[key]) for i, g in enumerate(groups) if g.get(key)]
        x = [i + (j - (len(keys) - 1) / 2) * width for i, _ in pts]
        ax.bar(x, [p["mean"] for _, p in pts], width=width * 0.9, yerr=_ci_err([p for _, p in pts]), capsize=3,
               color=PALETTE[j], label=label)  # fmt: skip
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([g["name"] for g in groups], rotation=20, ha="right", fontsize=8)
    ax.set(title=title, ylabel="test (lower is better)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, ncols=2)
    return fig
