"""Experiment trackers: TensorBoard event files and MLflow runs, as optional extras.

`fit(config, trackers=[...])` calls each tracker's `start` once the run folder exists, `epoch` after
every epoch's checkpoint, and `finish` with the summary. What is logged:
- parameters: the resolved config (MLflow params; TensorBoard hparams and a config text);
- per epoch: train/loss, val/auc, val/acc, lr, images_per_s (step = the 0-based epoch);
- final: {train,val,test}/{auc,acc} of the best-validation checkpoint, best_epoch, wall time
  (TensorBoard `final/...`, MLflow `final_...`);
- artefacts (MLflow): config.yaml, history.jsonl, summary.json, the model card.
TensorBoard writes `{run_dir}/tensorboard/` (the official script's users point `tensorboard
--logdir` at it); MLflow writes to $MLFLOW_TRACKING_URI, else a local ./mlruns store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.registry import Registry


class Tracker(Protocol):
    def start(self, run_dir: Path, config: dict[str, Any]) -> None: ...
    def epoch(self, epoch: int, record: dict[str, Any]) -> None: ...
    def finish(self, summary: Any) -> None: ...
    def close(self) -> None: ...  # always called last; ends an unfinished run as failed


EXPERIMENT = "medmnist-lab"
EPOCH_KEYS = {
    "train_loss": "train/loss",
    "val_auc": "val/auc",
    "val_acc": "val/acc",
    "lr": "lr",
    "images_per_s": "images_per_s",
}


def final_metrics(summary: Any) -> dict[str, float]:
    out = {f"{split}/{m}": float(getattr(v, m)) for split, v in summary.metrics.items() for m in ("auc", "acc")}
    out["best_epoch"] = float(summary.best_epoch)
    out["wall_seconds"] = float(summary.wall_seconds)
    return out


def flat_params(config: dict[str, Any]) -> dict[str, str]:
    return {k: str(v)[:500] for k, v in config.items()}


class TensorBoardTracker:
    def __init__(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise MedMNISTLabError(
                "--log tensorboard needs the tensorboard extra: pip install 'medmnist-lab[tensorboard]'"
            ) from None
        self._writer_class = SummaryWriter
        self.writer: Any = None
        self.config: dict[str, Any] = {}

    def start(self, run_dir: Path, config: dict[str, Any]) -> None:
        self.writer = self._writer_class(log_dir=str(run_dir / "tensorboard"))
        self.config = config
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in config.items()), 0)

    def epoch(self, epoch: int, record: dict[str, Any]) -> None:
        for key, tag in EPOCH_KEYS.items():
            if key in record:
                self.writer.add_scalar(tag, record[key], epoch)
        self.writer.flush()

    def finish(self, summary: Any) -> None:
        metrics = final_metrics(summary)
        for tag, value in metrics.items():
            self.writer.add_scalar(f"final/{tag}", value, summary.best_epoch)
        hparams = {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in self.config.items()}
        hparams = {k: v for k, v in hparams.items() if v is not None}
        self.writer.add_hparams(hparams, {f"hparam/{k}": v for k, v in metrics.items()}, run_name="hparams")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class MLflowTracker:
    """MLflow's file store is frozen (MLflow 3 refuses it by default), so the local store is a
    SQLite database with its artefacts beside it, both under ./mlruns: view it with
    `mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db`."""

    def __init__(self) -> None:
        try:
            import mlflow
        except ImportError:
            raise MedMNISTLabError("--log mlflow needs the mlflow extra: pip install 'medmnist-lab[mlflow]'") from None
        self.mlflow = mlflow
        self.run_dir: Path | None = None
        try:  # set up before training starts, so that a bad store fails before any work
            artifacts = None
            if not os.environ.get("MLFLOW_TRACKING_URI"):
                local = (Path.cwd() / "mlruns").resolve()
                local.mkdir(parents=True, exist_ok=True)
                mlflow.set_tracking_uri(f"sqlite:///{local / 'mlflow.db'}")
                artifacts = (local / "artifacts").as_uri()
            if mlflow.get_experiment_by_name(EXPERIMENT) is None:
                mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts)
            mlflow.set_experiment(EXPERIMENT)
        except Exception as exc:  # MlflowException, database and network errors: one clear line
            raise MedMNISTLabError(f"MLflow store {mlflow.get_tracking_uri()} cannot be used: {exc}") from None

    def start(self, run_dir: Path, config: dict[str, Any]) -> None:
        self.run_dir = run_dir
        tags = {"run_dir": str(run_dir.resolve()), "dataset": str(config.get("dataset"))}
        self.mlflow.start_run(run_name=run_dir.name, tags=tags)
        self.mlflow.log_params(flat_params(config))

    def epoch(self, epoch: int, record: dict[str, Any]) -> None:
        self.mlflow.log_metrics(
            {tag.replace("/", "_"): float(record[k]) for k, tag in EPOCH_KEYS.items() if k in record}, step=epoch
        )

    def finish(self, summary: Any) -> None:
        # "final_" keeps them apart from the per-epoch series of the same name (val_auc, ...)
        self.mlflow.log_metrics({"final_" + k.replace("/", "_"): v for k, v in final_metrics(summary).items()})
        assert self.run_dir is not None
        for name in ("config.yaml", "history.jsonl", "summary.json", "model_card.md", "model_card.json"):
            if (self.run_dir / name).is_file():
                self.mlflow.log_artifact(str(self.run_dir / name))
        self.mlflow.end_run()

    def close(self) -> None:
        if self.mlflow.active_run() is not None:  # training stopped before finish()
            self.mlflow.end_run(status="FAILED")


TRACKERS: Registry[type] = Registry("tracker")
TRACKERS.add("tensorboard", TensorBoardTracker)
TRACKERS.add("mlflow", MLflowTracker)


def make_trackers(names: list[str]) -> list[Tracker]:
    return [TRACKERS.get(n)() for n in dict.fromkeys(names)]
