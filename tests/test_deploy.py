"""predict / explain / export / model cards (issue 13): real files, real onnxruntime, real grad-cam."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cli_run import run_cli
from medmnist_lab.data import load_split
from medmnist_lab.deploy.card import write_model_card
from medmnist_lab.deploy.export import export_model, read_torchscript_info
from medmnist_lab.deploy.images import InputSpec, Unreadable, conform, read_dicom, read_inputs
from medmnist_lab.deploy.predictor import Predictor
from medmnist_lab.engine import evaluate, fit, resolve_config

TINY = dict(width=8, batch_size=64, amp=False)


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def breast_run(real_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("deploy")
    cfg = resolve_config("breastmnist", root=str(real_root), out_dir=str(out), name="r", epochs=2, **TINY)
    return fit(cfg, progress=False, on_finish=write_model_card).run_dir


@pytest.fixture(scope="module")
def test_pngs(real_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real BreastMNIST test split written as PNG files, as a user would have them."""
    folder = tmp_path_factory.mktemp("pngs")
    images = load_split("breastmnist", "test", 28, real_root).images
    for i, image in enumerate(images):
        Image.fromarray(image[0].numpy()).save(folder / f"{i:04d}.png")
    return folder


@pytest.mark.slow
def test_predict_on_png_files_gives_the_predictions_of_evaluate(
    breast_run: Path, test_pngs: Path, real_root: Path, tmp_path: Path, capsys
) -> None:
    """The issue's 'done when': a BreastMNIST run, its checkpoint and its ONNX export, a folder of
    PNG files from the real test split -> the same predictions as `evaluate` on that split."""
    reference = evaluate(breast_run / "best.pt", "test", root=str(real_root)).result.scores
    names = ["malignant", "normal, benign"]
    onnx_file = tmp_path / "model.onnx"
    rc, _, err = run_cli(capsys, "export", breast_run / "best.pt", "--format", "onnx", "-o", onnx_file)
    assert rc == 0, err
    for model, tolerance in ((breast_run / "best.pt", 0.0), (onnx_file, 1e-4)):
        csv_out = tmp_path / f"{model.stem}.csv"
        rc, _, err = run_cli(capsys, "predict", model, test_pngs, "-o", csv_out)
        assert rc == 0, err
        got = rows(csv_out.read_text())
        assert [Path(r["path"]).name for r in got] == [f"{i:04d}.png" for i in range(len(reference))]
        probs = np.array([[float(r[f"p[{n}]"]) for n in names] for r in got])
        assert np.abs(probs - reference).max() <= tolerance + 1e-6  # CSV keeps 6 decimals
        assert [r["prediction"] for r in got] == [names[k] for k in reference.argmax(1)]
    # exactly, without the CSV's rounding: the checkpoint runs through evaluate's own code path
    pixels = np.stack(
        [item.pixels for item in read_inputs([test_pngs], Predictor.load(breast_run / "best.pt").info.input_spec)]
    )
    assert np.array_equal(Predictor.load(breast_run / "best.pt").probabilities(pixels), reference)


@pytest.mark.slow
def test_export_parity_and_metadata_resnet18_and_resnet50(synthetic_root: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    images = load_split("dermamnist", "test", 28, synthetic_root).images.numpy()  # RGB, 7 classes
    for model in ("resnet18", "resnet50"):
        cfg = resolve_config(
            "dermamnist", root=str(synthetic_root), out_dir=str(tmp_path), name=model, model=model, epochs=1, width=4,
            batch_size=16, amp=False,
        )  # fmt: skip
        run = fit(cfg, progress=False).run_dir
        torch_probs = Predictor.load(run / "best.pt").probabilities(images)
        onnx_path, info = export_model(run / "best.pt", "onnx", tmp_path / f"{model}.onnx")
        ts_path, _ = export_model(run / "best.pt", "torchscript", tmp_path / f"{model}.pt")
        onnx = Predictor.load(onnx_path)
        for batch in (1, 7, len(images)):  # a dynamic batch dimension
            assert np.abs(onnx.probabilities(images[:batch], batch_size=batch) - torch_probs[:batch]).max() <= 1e-4
        scripted = torch.jit.load(str(ts_path))
        ts_probs = scripted(torch.from_numpy(images[:5]).float()).detach().numpy()
        assert np.abs(ts_probs - torch_probs[:5]).max() <= 1e-4
        summary = json.loads((run / "summary.json").read_text())
        for meta in (onnx.info, read_torchscript_info(ts_path)):
            assert meta == info
            assert meta.dataset == "dermamnist" and meta.task == "multi-class" and meta.size == 28
            assert meta.channels == 3 and len(meta.label_names) == 7 and (meta.mean, meta.std) == (0.5, 0.5)
            assert meta.metrics["test"]["auc"] == summary["metrics"]["test"]["auc"]
            assert meta.config_hash and len(meta.config_hash) == 16 and meta.config["model"] == model


@pytest.mark.slow
def test_bad_files_each_get_a_reason_and_the_batch_goes_on(breast_run: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    gray = (np.arange(28 * 28).reshape(28, 28) % 256).astype(np.uint8)
    Image.fromarray(gray).save(folder / "a_ok.png")
    (folder / "b_text.png").write_text("not an image")
    (folder / "c_empty.png").write_bytes(b"")
    Image.new("L", (1, 1)).save(folder / "d_tiny.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(folder / "e_16bit.tif")
    Image.fromarray(gray).convert("CMYK").save(folder / "f_cmyk.jpg")
    Image.new("RGB", (28, 28), (200, 10, 10)).save(folder / "g_colour.png")
    Image.fromarray(gray).convert("RGBA").save(folder / "h_rgba.png")
    Image.fromarray(gray).convert("P").save(folder / "i_palette.bmp")
    Image.fromarray(np.kron(gray, np.ones((2, 3), np.uint8))).save(folder / "j_big.png")  # 84x56
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    rc, out, err = run_cli(capsys, "predict", breast_run / "best.pt", folder)
    assert rc == 1  # some inputs failed; the rest were predicted
    got = {Path(r["path"]).name: r for r in rows(out)}
    assert sorted(got) == ["a_ok.png", "e_16bit.tif", "f_cmyk.jpg", "h_rgba.png", "i_palette.bmp", "j_big.png"]
    assert "16-bit" in got["e_16bit.tif"]["note"] and "CMYK" in got["f_cmyk.jpg"]["note"]
    assert (
        "alpha" in got["h_rgba.png"]["note"] and "resized from 84x56 (aspect ratio changed)" in got["j_big.png"]["note"]
    )
    # 16-bit data written as value x 257 comes back exactly: the same probabilities as the 8-bit file
    assert got["e_16bit.tif"]["p[malignant]"] == got["a_ok.png"]["p[malignant]"]
    reasons = {
        line.split(":")[0].removeprefix("skipped ").split("/")[-1]: line
        for line in err.splitlines()
        if line.startswith("skipped")
    }
    assert "is it really a PNG" in reasons["b_text.png"] and "empty file" in reasons["c_empty.png"]
    assert "1x1 px is too small" in reasons["d_tiny.png"] and "colour (RGB) image" in reasons["g_colour.png"]
    assert "Traceback" not in err and "predicted 6 image(s), 4 skipped" in err


def test_npz_inputs_channels_and_rgb_models(synthetic_root: Path) -> None:
    spec = InputSpec("retinamnist", 28, 3)
    items = list(read_inputs([synthetic_root / "retinamnist.npz"], spec))
    assert items[0].name.endswith("retinamnist.npz#train/0") and items[-1].name.endswith("#test/15")
    assert len(items) == 40 + 16 + 16 and all(i.pixels.shape == (3, 28, 28) for i in items)
    with pytest.raises(Unreadable, match="grayscale image, but retinamnist images are RGB"):
        conform(np.zeros((28, 28), np.uint8), spec)
    as_rgb = InputSpec("breastmnist", 28, 1, as_rgb=True)  # a grayscale dataset trained with --as-rgb
    pixels, _ = conform(np.full((28, 28), 7, np.uint8), as_rgb)
    assert pixels.shape == (3, 28, 28) and (pixels == 7).all()
    wrong = list(read_inputs([synthetic_root / "breastmnist.npz"], spec))
    assert len(wrong) == 1 and "this model needs uint8 (N, 28, 28, 3)" in wrong[0].error


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2") -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_files_are_read_with_their_values_mapped_to_8_bit(tmp_path: Path) -> None:
    values = (np.arange(32 * 32).reshape(32, 32) * 3).astype(np.uint16)  # 0..3069, 12-bit-like
    arr, note = read_dicom(write_dicom(tmp_path / "a.dcm", values))
    assert arr.dtype == np.uint8 and arr.min() == 0 and arr.max() == 255 and "0..3069 mapped to 0..255" in note
    inverted, _ = read_dicom(write_dicom(tmp_path / "b.dcm", values, "MONOCHROME1"))
    assert np.array_equal(inverted, 255 - arr)
    assert pydicom.dcmread(tmp_path / "a.dcm").Rows == 32
    (tmp_path / "bad.dcm").write_text("not dicom")
    items = list(read_inputs([tmp_path / "bad.dcm", tmp_path / "a.dcm"], InputSpec("breastmnist", 28, 1)))
    assert "not a readable DICOM image" in items[0].error
    assert items[1].pixels.shape == (1, 28, 28) and "resized from 32x32" in items[1].note


@pytest.mark.slow
def test_explain_writes_a_grad_cam_overlay_per_image(breast_run: Path, test_pngs: Path, tmp_path: Path, capsys) -> None:
    picks = tmp_path / "picks"
    picks.mkdir()
    for name in ("0000.png", "0001.png", "0002.png"):
        (picks / name).write_bytes((test_pngs / name).read_bytes())
    cams = tmp_path / "cams"
    rc, out, err = run_cli(capsys, "predict", breast_run / "best.pt", picks, "--explain", cams)
    assert rc == 0, err
    files = sorted(cams.glob("*.png"))
    predicted = [r["prediction"] for r in rows(out)]
    assert len(files) == 3 and [f.name[:6] for f in files] == ["000000", "000001", "000002"]
    for i, (f, label) in enumerate(zip(files, predicted, strict=True)):
        # the input's name without its suffix, then the label: one suffix, never .png.png
        assert f.name == f"{i:06d}_{i:04d}_{label.replace(', ', '_').replace(' ', '_')}.png"
        with Image.open(f) as img:
            assert img.size == (224, 224) and img.mode == "RGB"
            assert len(np.unique(np.asarray(img).reshape(-1, 3), axis=0)) > 20  # a heat map, not a flat image
    onnx_file = tmp_path / "m.onnx"
    export_model(breast_run / "best.pt", "onnx", onnx_file)
    rc, _, err = run_cli(capsys, "predict", onnx_file, picks, "--explain", tmp_path / "cams2")
    assert rc == 2 and "--explain needs a PyTorch checkpoint" in err


@pytest.mark.slow
def test_model_card_beside_every_finished_run(breast_run: Path) -> None:
    card = json.loads((breast_run / "model_card.json").read_text())
    summary = json.loads((breast_run / "summary.json").read_text())
    assert card["format"] == "medmnist-lab/model-card" and card["data"]["dataset"] == "breastmnist"
    assert card["metrics"]["test"]["auc"] == summary["metrics"]["test"]["auc"]
    assert card["official_reference"] == {"auc": 0.901, "acc": 0.863}
    assert any("Not for diagnosis" in text for text in card["limitations"])
    md = (breast_run / "model_card.md").read_text()
    assert "## Intended use" in md and "## Limitations" in md and f"{summary['metrics']['test']['auc']:.4f}" in md


@pytest.mark.slow
def test_predict_and_export_usage_errors(breast_run: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "taken.csv").write_text("keep me")
    (tmp_path / "not.pt").write_text("hello")
    cases = [
        (["predict", breast_run / "best.pt", tmp_path / "empty"], "no image, DICOM or npz files found"),
        (["predict", breast_run / "best.pt", tmp_path / "empty", "-o", tmp_path / "taken.csv"], "already exists"),
        (["predict", breast_run / "best.pt", tmp_path, "-o", tmp_path / "x.csv", "--format", "json"], "--format"),
        (["predict", tmp_path / "not.pt", tmp_path / "empty"], "text file"),
        (["predict", tmp_path / "missing.onnx", tmp_path / "empty"], "does not exist"),
        (["export", breast_run / "best.pt", "--format", "onnx", "-o", tmp_path / "x.onnx.txt"], "must end in .onnx"),
        (["export", tmp_path / "not.pt", "--format", "torchscript", "-o", tmp_path / "y.pt"], "text file"),
        (["export", breast_run / "best.pt", "--format", "tflite"], "tflite"),
    ]
    for args, text in cases:
        rc, _, err = run_cli(capsys, *args)
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and text in lines[0], (args, err)
    assert (tmp_path / "taken.csv").read_text() == "keep me"


@pytest.mark.slow
def test_an_ema_and_tta_model_exports_with_its_test_time_flip(synthetic_root: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = resolve_config(
        "breastmnist", root=str(synthetic_root), out_dir=str(tmp_path), name="tta", epochs=2, width=4,
        batch_size=16, amp=False, ema=0.9, tta=True,
    )  # fmt: skip
    run = fit(cfg, progress=False).run_dir
    images = load_split("breastmnist", "test", 28, synthetic_root).images.numpy()
    torch_probs = Predictor.load(run / "best.pt").probabilities(images)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["tta"] is True
    onnx_path, _ = export_model(run / "best.pt", "onnx", tmp_path / "tta.onnx")
    assert np.abs(Predictor.load(onnx_path).probabilities(images) - torch_probs).max() <= 1e-4
