"""Calibrated use (trust, point 3): `evaluate`, `predict` and `export` use the calibration.json
beside a checkpoint, say so, and `--uncalibrated` switches it off; on a tiny run of the real
BreastMNIST files."""

from __future__ import annotations

import csv
import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_run import run_cli
from medmnist_lab.data import load_split
from medmnist_lab.deploy.calibrate import CALIBRATION_FILE, calibrate, load_calibration
from medmnist_lab.deploy.export import read_torchscript_info
from medmnist_lab.deploy.images import read_inputs
from medmnist_lab.deploy.predictor import Predictor
from medmnist_lab.engine import evaluate, fit, resolve_config
from medmnist_lab.engine.calibration import find_calibration
from medmnist_lab.engine.scoring import split_logits
from medmnist_lab.metrics.conformal import conformal_sets, sets_from_thresholds
from medmnist_lab.metrics.official import scores_from_logits
from medmnist_lab.metrics.reliability import nll

TINY = dict(width=8, batch_size=32, amp=False)  # 4 epochs: a model with a finite, fitted temperature
NAMES = ["malignant", "normal, benign"]
ALPHA = 0.2


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def one_line_error(capsys, *argv) -> str:
    rc, out, err = run_cli(capsys, *argv)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("calibration:")]
    assert rc == 2, (rc, out, err)
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in out + err, err
    return lines[0]


@pytest.fixture(scope="module")
def run(real_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BreastMNIST run with a temperature + LAC calibration.json beside best.pt."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("calibrated_use")
    cfg = resolve_config("breastmnist", root=str(real_root), out_dir=str(out), name="r", epochs=4, **TINY)
    run_dir = fit(cfg, progress=False).run_dir
    calibrate(run_dir / "best.pt", "temperature", conformal=ALPHA, score="lac", root=str(real_root))
    return run_dir


@pytest.fixture(scope="module")
def pngs(real_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pngs")
    for i, image in enumerate(load_split("breastmnist", "test", 28, real_root).images):
        Image.fromarray(image[0].numpy()).save(folder / f"{i:04d}.png")
    return folder


@pytest.fixture(scope="module")
def reference(run: Path, real_root: Path) -> dict[str, np.ndarray]:
    """Applied by hand: the test logits divided by the record's temperature; the LAC sets that
    `metrics.conformal.conformal_sets` gives from the calibrated val and test probabilities."""
    record = json.loads((run / CALIBRATION_FILE).read_text())
    (t,) = record["parameters"]["temperature"]
    got = split_logits(run / "best.pt", ("val", "test"), root=str(real_root))
    scaled = {s: got.logits[s].double() * (1.0 / t) for s in ("val", "test")}  # z / T, as 1/T is stored
    probs = {s: scores_from_logits(scaled[s], got.task) for s in scaled}
    sets = conformal_sets(probs["val"], got.labels["val"], probs["test"], ALPHA, "lac", label_names=NAMES)
    assert sets.thresholds["all"] == pytest.approx(record["conformal"]["quantiles"]["all"], abs=1e-12)
    return {
        "t": np.array(t),
        "raw": scores_from_logits(got.logits["test"], got.task),
        "calibrated": probs["test"],
        "sets": sets.sets,
        "labels": got.labels["test"],
    }


@pytest.mark.slow
def test_evaluate_differs_exactly_by_the_calibration(run: Path, real_root: Path, reference, capsys) -> None:
    assert 0.05 < float(reference["t"]) < 20 and abs(float(reference["t"]) - 1.0) > 1e-3  # it changes something
    calibrated = evaluate(run / "best.pt", "test", root=str(real_root))
    raw = evaluate(run / "best.pt", "test", root=str(real_root), use_calibration=False)
    np.testing.assert_allclose(calibrated.result.scores, reference["calibrated"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(raw.result.scores, reference["raw"], rtol=0, atol=0)
    y = reference["labels"]
    task = "binary-class"
    assert nll(calibrated.result.scores, y, task) == pytest.approx(nll(reference["calibrated"], y, task), abs=1e-12)
    assert calibrated.result.metrics.acc == raw.result.metrics.acc  # temperature never changes a prediction
    # the command: one line saying which, and the record says so too
    rc, out, err = run_cli(capsys, "evaluate", run / "best.pt", "--root", real_root)
    assert rc == 0, err
    line = [x for x in out.splitlines() if x.startswith("calibration:")]
    assert len(line) == 1 and f"temperature scaling, T = {float(reference['t']):.4g}" in line[0]
    record = json.loads((run / "eval_best_test.json").read_text())
    assert record["calibration_applied"]["used"] and record["calibration_applied"]["temperature"] == [
        float(reference["t"])
    ]
    assert record["calibration_applied"]["conformal"]["score"] == "lac"
    rc, out, err = run_cli(capsys, "evaluate", run / "best.pt", "--root", real_root, "--uncalibrated")
    assert rc == 0, err
    assert "calibration: off (--uncalibrated)" in out
    record = json.loads((run / "eval_best_test.json").read_text())
    assert record["calibration_applied"] == {"used": False, "why": "--uncalibrated"}
    assert record["auc"] == raw.result.metrics.auc
    # --json: the line goes to stderr, the JSON says it too
    rc, out, err = run_cli(capsys, "evaluate", run / "best.pt", "--root", real_root, "--json")
    printed = json.loads(out[: out.rindex("\nsaved: ")])
    assert rc == 0 and printed["calibration_applied"]["used"] and "calibration: temperature" in err


@pytest.mark.slow
def test_predict_writes_calibrated_probabilities_sets_and_abstain(
    run: Path, pngs: Path, reference, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "p.csv"
    rc, _, err = run_cli(capsys, "predict", run / "best.pt", pngs, "-o", out, "--abstain-below", "0.8")
    assert rc == 0, err
    assert "calibration: temperature scaling" in err
    got = rows(out.read_text())
    assert list(got[0]) == [
        "path", "prediction", *(f"p[{n}]" for n in NAMES), "prediction_set", "abstain", "calibration", "note",
    ]  # fmt: skip
    probs = np.array([[float(r[f"p[{n}]"]) for n in NAMES] for r in got])
    assert np.abs(probs - reference["calibrated"]).max() <= 1e-6  # CSV keeps 6 decimals
    expected_sets = ["|".join(n for n, keep in zip(NAMES, row, strict=True) if keep) for row in reference["sets"]]
    assert [r["prediction_set"] for r in got] == expected_sets
    assert len(set(expected_sets)) > 1  # not all alike: the comparison means something
    abstain = reference["calibrated"].max(axis=1) < 0.8
    assert 0 < abstain.sum() < len(abstain)
    assert [r["abstain"] for r in got] == ["true" if a else "false" for a in abstain]
    assert {r["calibration"] for r in got} == {f"temperature {float(reference['t']):.6g}"}
    # exactly, without the CSV's rounding, and the sets by metrics.conformal from the stored threshold
    predictor = Predictor.load(run / "best.pt")
    pixels = np.stack([item.pixels for item in read_inputs([pngs], predictor.info.input_spec)])
    exact = predictor.probabilities(pixels)
    np.testing.assert_allclose(exact, reference["calibrated"], rtol=0, atol=1e-12)
    record = json.loads((run / CALIBRATION_FILE).read_text())
    assert np.array_equal(
        sets_from_thresholds(exact, "lac", record["conformal"]["quantiles"], NAMES), reference["sets"]
    )
    # JSON: lists and booleans, and the calibration
    out_json = tmp_path / "p.json"
    rc, _, err = run_cli(capsys, "predict", run / "best.pt", pngs, "-o", out_json, "--abstain-below", "0.8")
    assert rc == 0, err
    data = json.loads(out_json.read_text())
    assert data["calibration"]["used"] and data["calibration"]["method"] == "temperature"
    assert data["model"]["calibration"] == data["calibration"] and data["abstain_below"] == 0.8
    preds = data["predictions"]
    assert ["|".join(p["prediction_set"]) for p in preds] == expected_sets
    assert [p["abstain"] for p in preds] == abstain.tolist()
    # --uncalibrated: the raw numbers, no sets
    rc, text, err = run_cli(capsys, "predict", run / "best.pt", pngs, "--uncalibrated")
    assert rc == 0, err
    assert "calibration: off (--uncalibrated)" in err
    got = rows(text)
    assert "prediction_set" not in got[0] and "abstain" not in got[0]
    assert {r["calibration"] for r in got} == {"off (--uncalibrated)"}
    raw = np.array([[float(r[f"p[{n}]"]) for n in NAMES] for r in got])
    assert np.abs(raw - reference["raw"]).max() <= 1e-6


@pytest.mark.slow
def test_export_carries_the_temperature(run: Path, pngs: Path, reference, tmp_path: Path, capsys) -> None:
    import onnxruntime as ort

    onnx_file = tmp_path / "calibrated.onnx"
    rc, out, err = run_cli(capsys, "export", run / "best.pt", "--format", "onnx", "-o", onnx_file)
    assert rc == 0, err
    assert "calibration: temperature scaling" in out and "output calibrated probabilities" in out
    checkpoint = Predictor.load(run / "best.pt")
    pixels = np.stack([item.pixels for item in read_inputs([pngs], checkpoint.info.input_spec)])
    torch_probs = checkpoint.probabilities(pixels)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    onnx_probs = session.run(["probabilities"], {"images": pixels.astype(np.float32)})[0]
    parity = float(np.abs(onnx_probs - torch_probs).max())
    with capsys.disabled():
        print(f"\nONNX parity (calibrated, {len(pixels)} BreastMNIST test images): {parity:.3g}")
    assert parity <= 1e-4
    assert np.abs(onnx_probs - reference["raw"]).max() > 1e-3  # the graph is not the raw model
    onnx = Predictor.load(onnx_file)
    assert np.abs(onnx.probabilities(pixels) - torch_probs).max() <= 1e-4
    assert np.abs(onnx.probabilities(pixels, tta=True) - checkpoint.probabilities(pixels, tta=True)).max() <= 1e-4
    calibration = find_calibration(run / "best.pt")
    assert calibration is not None and onnx.info.calibration == calibration.to_dict()
    # predict on the export: the same sets as the checkpoint's
    rc, text, err = run_cli(capsys, "predict", onnx_file, pngs)
    assert rc == 0 and "calibration: temperature scaling" in err
    expected_sets = ["|".join(n for n, keep in zip(NAMES, row, strict=True) if keep) for row in reference["sets"]]
    assert [r["prediction_set"] for r in rows(text)] == expected_sets
    line = one_line_error(capsys, "predict", onnx_file, pngs, "--uncalibrated")
    assert "folded into the graph" in line
    # TorchScript
    ts_file = tmp_path / "calibrated.pt"
    rc, _, err = run_cli(capsys, "export", run / "best.pt", "--format", "torchscript", "-o", ts_file)
    assert rc == 0, err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream (see deploy/export.py)
        ts_probs = torch.jit.load(str(ts_file))(torch.from_numpy(pixels).float()).detach().numpy()
    assert np.abs(ts_probs - torch_probs).max() <= 1e-4
    assert read_torchscript_info(ts_file).calibration == calibration.to_dict()
    # --uncalibrated: the raw model
    raw_file = tmp_path / "raw.onnx"
    rc, out, err = run_cli(capsys, "export", run / "best.pt", "--format", "onnx", "-o", raw_file, "--uncalibrated")
    assert rc == 0 and "calibration: off (--uncalibrated)" in out
    raw = Predictor.load(raw_file)
    assert raw.info.calibration is None and raw.calibration is None
    assert np.abs(raw.probabilities(pixels) - reference["raw"]).max() <= 1e-4


@pytest.mark.slow
def test_bad_calibrations_are_one_line(run: Path, pngs: Path, real_root: Path, tmp_path: Path, capsys) -> None:
    # the calibration of best.pt beside last.pt: another checkpoint's, refused by every command
    last = run / "last.pt"
    with pytest.raises(Exception, match="other weights of this run"):
        load_calibration(last)
    for argv in (
        ("evaluate", last, "--root", real_root),
        ("predict", last, pngs),
        ("export", last, "--format", "onnx", "-o", tmp_path / "x.onnx"),
    ):
        line = one_line_error(capsys, *argv)
        assert "does not belong to" in line and "other weights of this run" in line and "--uncalibrated" in line
    assert not (tmp_path / "x.onnx").exists()
    assert run_cli(capsys, "evaluate", last, "--root", real_root, "--uncalibrated")[0] == 0
    # a damaged calibration.json: one line
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    shutil.copy(run / "best.pt", damaged / "best.pt")
    record = json.loads((run / CALIBRATION_FILE).read_text())
    for text, says in (
        ('{"format": "medmnist-lab/calibration/1", "checkp', "not a readable calibration record"),
        (json.dumps({**record, "parameters": {"method": "temperature"}}), "damaged calibration record"),
        (json.dumps({**record, "parameters": {"method": "temperature", "temperature": [0]}}), "damaged"),
        (json.dumps({**record, "conformal": {"alpha": 0.1}}), "conformal part is incomplete"),
    ):
        (damaged / CALIBRATION_FILE).write_text(text)
        for argv in (("evaluate", damaged / "best.pt", "--root", real_root), ("predict", damaged / "best.pt", pngs)):
            assert says in one_line_error(capsys, *argv)
    # --abstain-below outside (0, 1)
    for value in ("0", "1", "1.5", "-0.2", "nan"):
        line = one_line_error(capsys, "predict", run / "best.pt", pngs, "--abstain-below", value)
        assert f"--abstain-below {float(value)}" in line and "between 0 and 1" in line


class _FixedPredictor(Predictor):
    """A stand-in model: p(malignant) is the image's mean pixel / 255, with an APS calibration."""

    def __init__(self, conformal: dict) -> None:
        from medmnist_lab.deploy.predictor import ModelInfo
        from medmnist_lab.engine.calibration import Calibration
        from medmnist_lab.metrics.reliability import Scaling

        self.info = ModelInfo("breastmnist", "binary-class", NAMES, 28, 1, 1, False, 0.5, 0.5)
        self.calibration = Calibration(Scaling("temperature", (1.0,), (0.0,)), conformal, "c.json")

    def probabilities(self, images: np.ndarray, tta: bool = False, batch_size: int = 256) -> np.ndarray:
        p = images.reshape(len(images), -1).mean(axis=1) / 255.0
        return np.stack([p, 1 - p], axis=1)


def test_aps_sets_do_not_depend_on_the_batch_size(tmp_path: Path) -> None:
    from medmnist_lab.deploy.predict import predict_files

    for i, value in enumerate(np.linspace(10, 245, 9).astype(np.uint8)):
        Image.fromarray(np.full((28, 28), value, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    conformal = {"alpha": 0.1, "score": "aps", "mondrian": False, "quantiles": {"all": 0.8}, "seed": 3}
    predictor = _FixedPredictor(conformal)
    reports = [predict_files(predictor, [tmp_path], batch_size=b, abstain_below=0.7) for b in (2, 4, 100)]
    sets = [[p.prediction_set for p in r.predictions] for r in reports]
    assert sets[0] == sets[1] == sets[2]
    probs = np.array([p.probabilities for p in reports[0].predictions])
    expected = predictor.calibration.sets(probs, NAMES)
    assert sets[0] == [[n for n, keep in zip(NAMES, row, strict=True) if keep] for row in expected]
    assert [p.abstain for p in reports[0].predictions] == (probs.max(axis=1) < 0.7).tolist()
    text = reports[0].to_csv()
    assert rows(text)[0]["calibration"] == "temperature 1" and "prediction_set" in rows(text)[0]
