"""Official MedMNIST AUC/ACC (bit-identical to `medmnist.evaluator`), extra metrics, and
prediction files in the official submission format.

Exports are lazy (`medmnist_lab.lazy`): `metrics.stats` (tables) needs neither scikit-learn nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medmnist_lab.lazy import lazy_exports

if TYPE_CHECKING:
    from medmnist_lab.metrics.extra import ECE_BINS, calibration, extra_metrics
    from medmnist_lab.metrics.official import (
        Metrics,
        UndefinedAUCWarning,
        acc,
        auc,
        official_metrics,
        scores_from_logits,
    )
    from medmnist_lab.metrics.submission import check_run, submission_filename, write_submission

_EXPORTS = {
    "ECE_BINS": "medmnist_lab.metrics.extra",
    "calibration": "medmnist_lab.metrics.extra",
    "extra_metrics": "medmnist_lab.metrics.extra",
    "Metrics": "medmnist_lab.metrics.official",
    "UndefinedAUCWarning": "medmnist_lab.metrics.official",
    "acc": "medmnist_lab.metrics.official",
    "auc": "medmnist_lab.metrics.official",
    "official_metrics": "medmnist_lab.metrics.official",
    "scores_from_logits": "medmnist_lab.metrics.official",
    "check_run": "medmnist_lab.metrics.submission",
    "submission_filename": "medmnist_lab.metrics.submission",
    "write_submission": "medmnist_lab.metrics.submission",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = [
    "ECE_BINS",
    "Metrics",
    "UndefinedAUCWarning",
    "acc",
    "auc",
    "calibration",
    "check_run",
    "extra_metrics",
    "official_metrics",
    "scores_from_logits",
    "submission_filename",
    "write_submission",
]
