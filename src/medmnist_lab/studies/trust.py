"""A study's trust steps: after a cell trains, calibrate it on val and score it under corruptions.

A spec asks for them with a `trust` key (absent: nothing runs, the cells are as before):

    trust:
      calibrate: temperature     # or vector: fitted on val (deploy.calibrate), reported on test
      conformal: 0.1             # ALPHA of split-conformal prediction sets (null: none)
      score: lac                 # lac | aps | raps
      corruptions: all           # the dataset's MedMNIST-C corruptions, or a list of names (null: none)
      severities: 1-5            # "1-5", "1,3,5" or a list

The steps are library calls (`deploy.calibrate.calibrate`, `engine.robustness.evaluate_corruptions`)
in the cell's worker; they write calibration.json and robustness_best_test.json beside the cell's
checkpoint (for its report page) and add flat numbers to the cell's test metrics (`TRUST_METRICS`),
so `results table --metrics ece,ece_calibrated,...` and the study report read them like AUC.

The key settings are not part of a cell's hash (they do not change what is trained): a finished
cell whose row lacks the trust numbers is handed to a worker again, which runs only these steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medmnist_lab.errors import MedMNISTLabError

TRUST_KEYS: tuple[str, ...] = ("calibrate", "conformal", "score", "corruptions", "severities")
METHODS: tuple[str, ...] = ("temperature", "vector")  # metrics.reliability.METHODS (no torch here)
SCORES: tuple[str, ...] = ("lac", "aps", "raps")  # metrics.conformal.SCORES
DEFAULTS: dict[str, Any] = {
    "calibrate": "temperature",
    "conformal": None,
    "score": "lac",
    "corruptions": None,
    "severities": "1-5",
}
SEVERITY_KEYS: tuple[str, ...] = tuple(f"corrupted_be_s{s}" for s in range(1, 6))
# Test metrics a trust step adds to a cell (a metric is only there when its step ran).
TRUST_METRICS: tuple[str, ...] = (
    "ece",
    "ece_calibrated",
    "nll",
    "nll_calibrated",
    "brier",
    "brier_calibrated",
    "coverage",
    "set_size",
    "singleton_share",
    "clean_be",
    "corrupted_be",
    *SEVERITY_KEYS,
    "corrupted_ece",
)
# The columns `results table` adds by default when the rows have them.
TABLE_METRICS: tuple[str, ...] = ("ece", "ece_calibrated", "coverage", "set_size", "corrupted_be")
# Trust metrics that are shares or probabilities: their CIs are logit-scale (kept in [0, 1]).
UNIT_METRICS: tuple[str, ...] = tuple(m for m in TRUST_METRICS if m not in ("nll", "nll_calibrated", "set_size"))
LABELS: dict[str, str] = {
    "ece_calibrated": "ECE calibrated",
    "nll_calibrated": "NLL calibrated",
    "brier_calibrated": "Brier calibrated",
    "coverage": "coverage",
    "set_size": "set size",
    "singleton_share": "singleton share",
    "clean_be": "clean BE",
    "corrupted_be": "corrupted BE",
    "corrupted_ece": "corrupted ECE",
    **{k: f"corrupted BE s{k[-1]}" for k in SEVERITY_KEYS},
}


def metric_label(metric: str) -> str:
    """How tables and reports name a metric: AUC, ACC, ECE, ..., "ECE calibrated", "corrupted BE"."""
    return LABELS.get(metric, metric.upper())


def parse_trust(value: Any, source: str) -> dict[str, Any] | None:
    """The spec's `trust` mapping checked and completed with the defaults (None: no trust steps).
    Corruption names and severities are checked per dataset when the cells are planned."""
    if value is None:
        return None
    where = f"{source}: trust"
    if not isinstance(value, dict):
        raise MedMNISTLabError(
            f"{where} must be a mapping, e.g. {{calibrate: temperature, conformal: 0.1, corruptions: all}}; "
            f"got {value!r}"
        )
    unknown = sorted(set(value) - set(TRUST_KEYS))
    if unknown:
        raise MedMNISTLabError(f"{where}: unknown key {unknown[0]!r}; trust has: {', '.join(TRUST_KEYS)}")
    out = {**DEFAULTS, **value}
    if out["calibrate"] not in METHODS:
        raise MedMNISTLabError(f"{where}: calibrate must be one of {', '.join(METHODS)}; got {out['calibrate']!r}")
    alpha = out["conformal"]
    if alpha is not None:
        ok = isinstance(alpha, int | float) and not isinstance(alpha, bool) and 0.0 < alpha < 1.0
        if not ok:
            raise MedMNISTLabError(
                f"{where}: conformal is ALPHA in (0, 1), e.g. 0.1 for 90% coverage (or null for no sets); got {alpha!r}"
            )
        out["conformal"] = float(alpha)
    if out["score"] not in SCORES:
        raise MedMNISTLabError(f"{where}: score must be one of {', '.join(SCORES)}; got {out['score']!r}")
    corr = out["corruptions"]
    if corr is not None and not (isinstance(corr, str) and corr) and not _str_list(corr):
        raise MedMNISTLabError(f"{where}: corruptions is 'all', a list of names or null; got {corr!r}")
    sev = out["severities"]
    if not (isinstance(sev, str | int) and not isinstance(sev, bool)) and not _int_list(sev):
        raise MedMNISTLabError(f"{where}: severities is a range like 1-5 or a list like [1, 3, 5]; got {sev!r}")
    return out


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, str) and x for x in v)


def _int_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)


def _severities(trust: dict[str, Any]) -> list[int]:
    from medmnist_lab.augment.corruptions import parse_severities

    sev = trust["severities"]
    return parse_severities(str(sev) if isinstance(sev, int) else sev)


def check_cells(trust: dict[str, Any] | None, datasets: list[str], source: str) -> None:
    """Before any work: the corruptions and severities exist for every dataset of the study."""
    if trust is None or trust["corruptions"] is None:
        return
    from medmnist_lab.augment.corruptions import parse_corruptions

    try:
        _severities(trust)
        for flag in dict.fromkeys(datasets):
            parse_corruptions(flag, trust["corruptions"])
    except MedMNISTLabError as exc:
        raise MedMNISTLabError(f"{source}: trust: {exc}") from None


def has_trust_metrics(metrics: dict[str, Any], trust: dict[str, Any]) -> bool:
    """Whether a stored test-metrics dict already holds what `trust` asks for."""
    need = ["ece_calibrated"]
    if trust["conformal"] is not None:
        need.append("coverage")
    if trust["corruptions"] is not None:
        need.append("corrupted_be")
    return all(metrics.get(k) is not None for k in need)


def run_trust(checkpoint: Path, trust: dict[str, Any], root: str | None, device: str | None) -> dict[str, float]:
    """Calibrate `checkpoint` on val, score the corruptions on test (calibrated); the flat test metrics."""
    from medmnist_lab.deploy.calibrate import calibrate
    from medmnist_lab.engine.robustness import evaluate_corruptions, save_robustness

    outcome = calibrate(
        checkpoint, trust["calibrate"], conformal=trust["conformal"], score=trust["score"],
        root=root, device=device, overwrite=True,
    )  # fmt: skip
    print(f"calibration: {outcome.path} ({outcome.record['status']})", flush=True)
    for w in outcome.warnings:
        print(f"warning: {w}", flush=True)
    out = calibration_metrics(outcome.record)
    if trust["corruptions"] is not None:
        result = evaluate_corruptions(
            checkpoint, trust["corruptions"], _severities(trust), root=root, device=device, use_calibration=True
        )
        print(f"robustness: {save_robustness(result)}", flush=True)
        out.update(robustness_metrics(result.to_dict()))
    return out


def calibration_metrics(record: dict[str, Any]) -> dict[str, float]:
    """Flat test numbers of a calibration record: ECE/NLL/Brier before and after, conformal coverage."""
    test = record["scores"]["test"]
    before, after = test["before"], test["after"]
    out = {}
    for key in ("ece", "nll", "brier"):
        out[key], out[f"{key}_calibrated"] = float(before[key]), float(after[key])
    conformal = record.get("conformal")
    if conformal:
        report = conformal["test"]
        out["coverage"] = float(report["coverage"])
        out["set_size"] = float(report["mean_set_size"])
        out["singleton_share"] = float(report["singleton_share"])
    return out


def robustness_metrics(record: dict[str, Any]) -> dict[str, float]:
    """Flat numbers of a robustness record: clean BE, corrupted BE (mean over corruptions and
    severities), per severity (mean over corruptions), and the corrupted ECE."""
    cells = record["cells"]
    out = {
        "clean_be": float(record["clean"]["balanced_error"]),
        "corrupted_be": _mean([c["balanced_error"] for c in cells]),
        "corrupted_ece": _mean([c["ece"] for c in cells]),
    }
    for s in sorted({int(c["severity"]) for c in cells}):
        out[f"corrupted_be_s{s}"] = _mean([c["balanced_error"] for c in cells if int(c["severity"]) == s])
    return out


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")
