"""Training and scoring volumes: configs and recipes, the official shape transform, exact resume,
official re-scoring, on the real AdrenalMNIST3D file and synthetic files of the other five."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from medmnist_lab.cli.main import main
from medmnist_lab.data.registry import FLAGS_3D
from medmnist_lab.engine import evaluate, fit, resolve_config
from medmnist_lab.engine.batcher import DeviceBatcher
from medmnist_lab.engine.scoring import load_model
from medmnist_lab.errors import MedMNISTLabError
from synthetic import write_npz

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(width=4, epochs=2, batch_size=16, amp=False)


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def volumes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("volumes")
    for flag in FLAGS_3D:
        write_npz(root / f"{flag}.npz", flag, 28, counts=(32, 12, 12))
    return root


@pytest.fixture(scope="module")
def adrenal_root() -> Path:
    env = os.environ.get("MEDMNIST_ROOT")
    if not env or not (Path(env) / "adrenalmnist3d.npz").is_file():
        pytest.skip("the real AdrenalMNIST3D file is not in MEDMNIST_ROOT")
    return Path(env).resolve()


def test_official_and_fast_recipes_for_volumes():
    official = resolve_config("adrenalmnist3d")
    assert (official.conv, official.batch_size, official.mean, official.std) == ("acs", 32, 0.0, 2.0)
    assert official.shape_transform and official.epochs == 100 and official.optimizer == "adam"
    organ = resolve_config("organmnist3d")  # not a shape dataset: volumes in [0, 1], no shape transform
    assert (organ.std, organ.shape_transform, organ.batch_size) == (1.0, False, 32)
    fast = resolve_config("adrenalmnist3d", "fast", conv="2.5d")
    assert (fast.conv, fast.width, fast.stem, fast.epochs, fast.augment) == ("2.5d", 16, "strided", 12, "volume")
    assert fast.tta and fast.ema == 0.9 and fast.shape_transform
    assert resolve_config("breastmnist", "fast").conv is None  # 2D runs are unchanged
    assert resolve_config("breastmnist", "fast").batch_size == 64


@pytest.mark.parametrize(
    "dataset,overrides,message",
    [
        ("breastmnist", {"conv": "acs"}, "3D datasets only"),
        ("breastmnist", {"shape_transform": True}, "3D datasets only"),
        ("adrenalmnist3d", {"model": "timm:resnet10t"}, "has no 3D form"),
        ("adrenalmnist3d", {"conv": "4d"}, "convolution type"),
    ],
)
def test_bad_combinations_are_refused(dataset, overrides, message):
    with pytest.raises(MedMNISTLabError, match=message):
        resolve_config(dataset, **overrides)


def test_cli_conv_on_a_2d_dataset_is_one_line(capsys):
    assert main(["train", "breastmnist", "--conv", "acs"]) == 2
    err = capsys.readouterr().err
    assert "applies to the 3D datasets only" in err and "Traceback" not in err


def test_shape_transform_is_the_official_one():
    """Official: training volumes (v / 255) * u with u ~ U[0, 1), evaluation (v / 255) * 0.5. Ours:
    std 2 (v / 510) everywhere, and training volumes times 2u from the augmentation generator."""
    v = torch.randint(0, 256, (6, 1, 4, 4, 4), dtype=torch.uint8)
    y = torch.zeros(6, 1, dtype=torch.long)
    ev = next(iter(DeviceBatcher(v, y, 6, torch.device("cpu"), mean=0.0, std=2.0)))[0]
    assert torch.allclose(ev, v.float() / 255 * 0.5)
    g = torch.Generator().manual_seed(3)
    train = DeviceBatcher(v, y, 6, torch.device("cpu"), mean=0.0, std=2.0, aug_generator=g, random_scale=2.0)
    x = next(iter(train))[0]
    u = torch.rand(6, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(x, v.float() / 255 * u.view(-1, 1, 1, 1, 1), atol=1e-6)


@pytest.mark.parametrize("flag", FLAGS_3D)
def test_every_3d_dataset_trains_on_synthetic_volumes(flag, volumes_root, tmp_path, monkeypatch):
    conv = ("2.5d", "3d", "acs")[FLAGS_3D.index(flag) % 3]
    config = resolve_config(flag, root=str(volumes_root), out_dir=str(tmp_path), conv=conv, name="r", **TINY)
    result = fit(config, progress=False)
    assert result.test.metrics.auc == result.test.metrics.auc  # a number, not NaN
    model, state = load_model(result.run_dir / "best.pt")  # rebuilt from the checkpoint's config
    assert state["config"]["conv"] == conv and model.conv == conv
    assert model.eval()(torch.zeros(2, 1, 28, 28, 28)).shape == (2, model.fc.out_features)
    ev = evaluate(result.run_dir / "best.pt", "test")
    assert (ev.result.metrics.auc, ev.result.metrics.acc) == (result.test.metrics.auc, result.test.metrics.acc)
    assert rescored(result.run_dir, flag, volumes_root, monkeypatch) == (
        result.test.metrics.auc,
        result.test.metrics.acc,
    )


def test_resume_of_a_volume_run_is_exact(volumes_root, tmp_path):
    """The shape transform's random factors come from the augmentation generator, which the
    checkpoint carries: an interrupted run resumes to the same numbers."""
    cfg = dict(TINY, epochs=3, seed=2)
    full_config = resolve_config("adrenalmnist3d", root=str(volumes_root), out_dir=str(tmp_path), name="f", **cfg)
    full = fit(full_config, progress=False)

    def stop(epoch, record):
        if epoch == 0:
            raise Interrupt

    cut = resolve_config("adrenalmnist3d", root=str(volumes_root), out_dir=str(tmp_path), name="c", **cfg)
    with pytest.raises(Interrupt):
        fit(cut, progress=False, on_epoch_end=stop)
    resumed = fit(cut, resume=tmp_path / "adrenalmnist3d_28" / "resnet18" / "c", progress=False)
    assert resumed.summary.resumed_from_epoch == 1
    for split in ("train", "val", "test"):
        assert resumed.summary.metrics[split] == full.summary.metrics[split]


def rescored(run_dir: Path, flag: str, root: Path, monkeypatch) -> tuple[float, float]:
    """The official `medmnist.Evaluator` on the run's test prediction file (labels read from `root`)."""
    from medmnist.evaluator import Evaluator

    defaults = list(Evaluator.__init__.__defaults__)
    defaults[-1] = str(root)
    monkeypatch.setattr(Evaluator.__init__, "__defaults__", tuple(defaults))
    official = Evaluator.parse_and_evaluate(str(next(run_dir.glob(f"{flag}_test_*.csv"))))
    return official.AUC, official.ACC


@pytest.mark.slow
def test_real_adrenalmnist3d_scores_equal_the_official_evaluator(adrenal_root, tmp_path, monkeypatch):
    config = resolve_config(
        "adrenalmnist3d",
        "fast",
        root=str(adrenal_root),
        out_dir=str(tmp_path),
        name="real",
        epochs=1,
        subset=96,
        width=4,
    )
    result = fit(config, progress=False)
    ev = evaluate(result.run_dir / "best.pt", "test")
    assert (ev.result.metrics.auc, ev.result.metrics.acc) == (result.test.metrics.auc, result.test.metrics.acc)
    official = rescored(result.run_dir, "adrenalmnist3d", adrenal_root, monkeypatch)
    assert (result.test.metrics.auc, result.test.metrics.acc) == official
    csv = next(result.run_dir.glob("adrenalmnist3d_test_*.csv"))
    assert len(csv.read_text().splitlines()) == 298  # every real test volume scored
    assert json.loads((result.run_dir / "summary.json").read_text())["metrics"]["test"]["auc"] == official[0]


def test_auto_precision_trains_volumes_in_fp32_on_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 training of the converted ResNets turned their weights NaN in the first epoch on a
    bf16 CPU (real AdrenalMNIST3D, `fast`): auto keeps volumes in fp32 there; an explicit bf16 wins."""
    from medmnist_lab.engine import device as dev

    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: True)  # as on an AMD EPYC with avx512_bf16
    cpu = torch.device("cpu")
    assert dev.resolve_precision(cpu, None, "auto").name == "bfloat16"  # 2D: unchanged
    assert dev.resolve_precision(cpu, None, "auto", volumes=True).name == "fp32"
    assert dev.resolve_precision(cpu, None, "bf16", volumes=True).name == "bfloat16"
    assert dev.resolve_precision(cpu, True, "auto", volumes=True).name == "bfloat16"  # --amp on asks for it
    config = resolve_config("adrenalmnist3d", "fast", conv="acs")
    assert dev.scoring_precision(cpu, "auto", config).name == "fp32"
