"""A model card (Markdown and JSON) beside a run's checkpoints: what the model is, what it was
trained on, how well it does, and what it must not be used for.

Written by `fit` when a run finishes; `write_model_card(run_dir)` makes one for an older run.
Every number comes from the run's own summary.json; the official MedMNIST v2 numbers of the same
model and size are shown beside them where the table has them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from medmnist_lab.data.registry import CITATION, get_dataset
from medmnist_lab.engine.config import cell_hash
from medmnist_lab.engine.summary import RunSummary
from medmnist_lab.metrics.references import get_reference
from medmnist_lab.outputs import atomic_path

FORMAT = "medmnist-lab/model-card"
VERSION = 1
INTENDED_USE = (
    "Research and teaching: benchmarking training methods on MedMNIST, comparing models, trying "
    "augmentation or synthetic data, and learning how medical image classifiers behave."
)
LIMITATIONS = [
    "Not for diagnosis or any clinical decision: it was never validated clinically, and its errors are unknown "
    "outside the MedMNIST test split.",
    "Research data at low resolution: images were downsampled to {size} px from the public source dataset; "
    "details that matter clinically may be lost.",
    "One source dataset ({dataset}): images from other scanners, sites, populations or preprocessing may be "
    "scored very differently (distribution shift); the probabilities are not calibrated for them.",
    "One training run (seed {seed}): the spread over seeds is not reflected in a single model's metrics.",
]


def card_data(run_dir: Path, summary: RunSummary) -> dict[str, Any]:
    info = get_dataset(summary.dataset, warn_alias=False)
    config = summary.config or {}
    official = get_reference("official")
    metrics = {
        split: {
            "auc": m.auc,
            "acc": m.acc,
            **{k: m.extras[k] for k in ("balanced_accuracy", "macro_f1", "ece") if k in m.extras},
        }
        for split, m in summary.metrics.items()
    }
    return {
        "format": FORMAT,
        "version": VERSION,
        "run": summary.run,
        "model": {
            "architecture": summary.model,
            "width": config.get("width"),
            "stem": config.get("stem") or "by image size",
            "checkpoint": str(run_dir / "best.pt"),
            "config_hash": cell_hash(config) if config else None,
        },
        "data": {
            "dataset": info.flag,
            "description": info.description,
            "task": info.task,
            "labels": list(info.label_names),
            "size": summary.size,
            "channels": info.n_channels,
            "splits": dict(info.n_samples),
            "training_data": summary.data,
            "license": info.license,
            "citation": CITATION,
        },
        "recipe": {
            "name": summary.recipe,
            **{
                k: config.get(k)
                for k in ("epochs", "batch_size", "optimizer", "lr", "schedule", "augment", "label_smoothing")
            },
            "seed": summary.seed,
            "best_epoch": summary.best_epoch,
            "selection": "best validation AUC; the test split was scored once, at the end",
        },
        "metrics": metrics,
        "official_reference": {m: official.value(info.flag, summary.model, summary.size, m) for m in ("auc", "acc")},
        "intended_use": INTENDED_USE,
        "limitations": [text.format(size=summary.size, dataset=info.flag, seed=summary.seed) for text in LIMITATIONS],
        "how_to_use": [
            f"medmnist-lab predict {run_dir / 'best.pt'} IMAGES_OR_FOLDER -o predictions.csv",
            f"medmnist-lab export {run_dir / 'best.pt'} --format onnx",
        ],
    }


def card_markdown(card: dict[str, Any]) -> str:
    d, r, m = card["data"], card["recipe"], card["metrics"]
    ref = card["official_reference"]
    rows = "\n".join(f"| {split} | {v['auc']:.4f} | {v['acc']:.4f} |" for split, v in m.items())
    if ref.get("auc") is not None:
        name = f"official v2 table ({card['model']['architecture']}, {d['size']} px)"
        rows += f"\n| {name} | {ref['auc']:.3f} | {ref['acc']:.3f} |"
    limits = "\n".join(f"- {text}" for text in card["limitations"])
    return f"""# Model card: {card["run"]}

**{card["model"]["architecture"]}** (width {card["model"]["width"]}) trained on **{d["dataset"]}** at {d["size"]} px
({d["task"]}; labels: {", ".join(d["labels"])}).

## Intended use
{card["intended_use"]}

## Limitations
{limits}

## Data
{d["description"]}

Splits (official): {", ".join(f"{k} {v}" for k, v in d["splits"].items())}. License: {d["license"]}.

## Recipe
`{r["name"]}`: {r["epochs"]} epochs, batch {r["batch_size"]}, {r["optimizer"]} lr {r["lr"]}, schedule {r["schedule"]},
augmentation {r["augment"]}, label smoothing {r["label_smoothing"]}, seed {r["seed"]}; best epoch {r["best_epoch"]}
({r["selection"]}).

## Metrics
| split | AUC | ACC |
|---|---|---|
{rows}

## Use
```
{chr(10).join(card["how_to_use"])}
```

Cite: {d["citation"]}
"""


def write_model_card(run_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """model_card.md and model_card.json in `run_dir` (from its summary.json); returns both paths."""
    run_dir = Path(run_dir)
    card = card_data(run_dir, RunSummary.read(run_dir))
    md, js = run_dir / "model_card.md", run_dir / "model_card.json"
    with atomic_path(js) as tmp:
        tmp.write_text(json.dumps(card, indent=2))
    with atomic_path(md) as tmp:
        tmp.write_text(card_markdown(card))
    return md, js
