"""Official MedMNIST AUC/ACC (bit-identical to `medmnist.evaluator`), extra metrics, and
prediction files in the official submission format."""

from medmnist_lab.metrics.extra import ECE_BINS, calibration, extra_metrics
from medmnist_lab.metrics.official import (
    Metrics,
    UndefinedAUCWarning,
    acc,
    auc,
    official_metrics,
    scores_from_logits,
)
from medmnist_lab.metrics.submission import (
    check_run,
    submission_filename,
    write_submission,
)

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
