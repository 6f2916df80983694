"""predict / export for 3D models: .npy, .npz, NIfTI and DICOM-series volumes, resampling, ONNX and
TorchScript parity on volumes, calibrated use, and one clear line for every bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cli_run import run_cli
from medmnist_lab.cli.main import main
from medmnist_lab.deploy.export import export_model, read_torchscript_info
from medmnist_lab.deploy.images import InputSpec
from medmnist_lab.deploy.predict import predict_files
from medmnist_lab.deploy.predictor import OnnxPredictor, Predictor
from medmnist_lab.deploy.volumes import read_dicom_series, read_volumes, resample
from medmnist_lab.engine import evaluate, fit, resolve_config
from synthetic import write_npz

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = InputSpec("adrenalmnist3d", 28, 1, spatial_dims=3)


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def probs(row: dict[str, str]) -> list[float]:
    return [float(row[k]) for k in row if k.startswith("p[")]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data3d")
    write_npz(folder / "adrenalmnist3d.npz", "adrenalmnist3d", 28, counts=(32, 12, 12))
    write_npz(folder / "breastmnist.npz", "breastmnist", 28, counts=(32, 12, 12))
    return folder


def tiny_run(flag: str, root: Path, out: Path) -> Path:
    cfg = resolve_config(flag, "fast", root=str(root), out_dir=str(out), width=4, epochs=1, name="t")
    return fit(cfg, progress=False).run_dir / "best.pt"


@pytest.fixture(scope="module")
def ckpt(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return tiny_run("adrenalmnist3d", root, tmp_path_factory.mktemp("runs3d"))


@pytest.fixture(scope="module")
def ckpt2d(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return tiny_run("breastmnist", root, tmp_path_factory.mktemp("runs2d"))


@pytest.fixture(scope="module")
def test_volumes(root: Path) -> np.ndarray:
    with np.load(root / "adrenalmnist3d.npz") as npz:
        return npz["test_images"]  # (12, 28, 28, 28) uint8


@pytest.fixture(scope="module")
def evaluated(ckpt: Path, root: Path) -> np.ndarray:
    return evaluate(ckpt, "test", root=str(root)).result.scores


def test_npy_volume_and_stack_give_evaluates_probabilities(ckpt, test_volumes, evaluated, tmp_path, capsys):
    np.save(tmp_path / "stack.npy", test_volumes)
    np.save(tmp_path / "one.npy", test_volumes[3])
    np.save(tmp_path / "channel.npy", test_volumes[:2, None])  # (N, 1, D, H, W), as load_split gives
    rc, out, err = run_cli(
        capsys, "predict", ckpt, tmp_path / "stack.npy", tmp_path / "one.npy", tmp_path / "channel.npy"
    )
    assert rc == 0, err
    got = rows(out)
    assert [r["path"] for r in got[:2]] == [f"{tmp_path / 'stack.npy'}#0", f"{tmp_path / 'stack.npy'}#1"]
    np.testing.assert_allclose([probs(r) for r in got[:12]], evaluated, atol=1e-6)  # CSV: 6 decimals
    np.testing.assert_allclose(probs(got[12]), evaluated[3], atol=1e-6)
    np.testing.assert_allclose([probs(r) for r in got[13:]], evaluated[:2], atol=1e-6)
    assert all(r["note"] == "" for r in got) and "predicted 15 volume(s), 0 skipped" in err


def test_npz_official_layout_and_arrays(ckpt, root, test_volumes, evaluated, tmp_path):
    predictor = Predictor.load(ckpt)
    report = predict_files(predictor, [root / "adrenalmnist3d.npz"])
    names = [p.path for p in report.predictions]
    assert len(names) == 56 and names[-12] == f"{root / 'adrenalmnist3d.npz'}#test/0"
    np.testing.assert_allclose([p.probabilities for p in report.predictions[-12:]], evaluated, atol=1e-7)
    np.savez(tmp_path / "arrays.npz", vol=test_volumes[5], more=test_volumes[:2], spacing=np.ones(3))
    report = predict_files(predictor, [tmp_path / "arrays.npz"])
    assert [p.path.split("#")[1] for p in report.predictions] == ["vol", "more/0", "more/1"]
    np.testing.assert_allclose([p.probabilities for p in report.predictions], evaluated[[5, 0, 1]], atol=1e-7)


def test_nifti_at_the_models_size_and_resampled(ckpt, test_volumes, evaluated, tmp_path, capsys):
    nib.save(nib.Nifti1Image(test_volumes[0], np.eye(4)), tmp_path / "same.nii.gz")
    # Each voxel repeated 2x along every axis: the resampling (box average to 2S, then trilinear
    # 2S -> S) averages each pair back into the original voxel, so the volume comes back exactly.
    doubled = test_volumes[1].repeat(2, 0).repeat(2, 1).repeat(2, 2)
    nib.save(nib.Nifti1Image(doubled, np.eye(4)), tmp_path / "doubled.nii")
    rng = np.random.default_rng(0)
    odd = (rng.normal(100, 300, size=(40, 36, 32))).astype(np.float32)  # CT-like float values
    nib.save(nib.Nifti1Image(odd, np.eye(4)), tmp_path / "odd.nii.gz")
    rc, out, err = run_cli(capsys, "predict", ckpt, tmp_path, "--format", "json")
    assert rc == 0, err
    preds = {Path(p["path"]).name: p for p in json.loads(out)["predictions"]}
    np.testing.assert_allclose(list(preds["same.nii.gz"]["probabilities"].values()), evaluated[0], atol=1e-7)
    np.testing.assert_allclose(list(preds["doubled.nii"]["probabilities"].values()), evaluated[1], atol=1e-7)
    assert "resampled from 56x56x56 (trilinear)" in preds["doubled.nii"]["note"]
    note = preds["odd.nii.gz"]["note"]
    assert "float32 values" in note and "mapped to 0..255" in note and "from 40x36x32 (trilinear) (aspect" in note
    [item] = read_volumes([tmp_path / "odd.nii.gz"], SPEC)
    assert item.pixels.shape == (1, 28, 28, 28) and item.pixels.dtype == np.uint8
    assert item.pixels.min() <= 60 and item.pixels.max() >= 180  # the whole 0..255 range, averaged


def test_resample_keeps_axis_order_and_constants():
    ramp = np.broadcast_to(np.arange(40, dtype=np.float64)[:, None, None], (40, 36, 32))
    out = resample(ramp, 28)
    assert out.shape == (28, 28, 28) and np.ptp(out[:, 3, 5]) > 30 and np.ptp(out[5, :, :]) < 1e-4
    assert np.allclose(resample(np.full((300, 9, 5), 77.0), 28), 77.0)  # box then trilinear, 300 -> 56 -> 28


def write_slice(
    path: Path, pixels: np.ndarray, *, series: str, position=None, orientation=None, number=None, rescale=None
):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    ds.SeriesInstanceUID = series
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    if number is not None:
        ds.InstanceNumber = int(number)
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


# An oblique slice plane: rows along (1, 1, 0)/sqrt2, columns along z; the normal is (1, -1, 0)/sqrt2.
OBLIQUE = (2**-0.5, 2**-0.5, 0.0, 0.0, 0.0, 1.0)


def write_series(
    folder: Path, volume: np.ndarray, *, positions=True, seed=0, series=None, orientation=OBLIQUE, rescale=None
):
    """Slice d of `volume` at 2.5 d mm along the normal; files and InstanceNumbers in a shuffled order."""
    folder.mkdir(parents=True)
    series = series or generate_uid()
    rng = np.random.default_rng(seed)
    names = rng.permutation(len(volume))
    normal = np.cross(orientation[:3], orientation[3:])
    for d, name in enumerate(names):
        where = np.array([10.0, -4.0, 7.0]) + 2.5 * d * normal
        # Without positions the InstanceNumber is the order; with them it is shuffled (must not be used).
        number = d + 1 if not positions else int(rng.integers(1, 1000))
        write_slice(
            folder / f"IM{name:03d}.dcm",
            volume[d],
            series=series,
            position=where if positions else None,
            orientation=orientation if positions else None,
            number=number,
            rescale=rescale,
        )
    return folder


def test_dicom_series_sorted_along_the_normal_or_by_instance_number(ckpt, test_volumes, evaluated, tmp_path, capsys):
    volume = test_volumes[2].copy()
    volume[0, 0, 0], volume[-1, -1, -1] = 0, 255  # min-max onto 0..255 is then the identity
    series = write_series(tmp_path / "scans" / "patient1", volume)
    read, note = read_dicom_series(series)
    assert np.array_equal(read, volume) and "sorted by ImagePositionPatient along the slice normal" in note
    numbered = write_series(tmp_path / "scans" / "patient2", volume[:6], positions=False)
    read, note = read_dicom_series(numbered)
    assert np.array_equal(read, volume[:6]) and "sorted by InstanceNumber" in note
    # CT-like: stored v, modality LUT 2 v - 1024; mapped from its min..max back onto 0..255
    write_series(tmp_path / "scans" / "patient3", volume, seed=3, rescale=(2, -1024))
    np.save(tmp_path / "volume.npy", volume)
    rc, out, err = run_cli(capsys, "predict", ckpt, tmp_path / "scans", tmp_path / "volume.npy")
    assert rc == 0, err
    got = {Path(r["path"]).name: r for r in rows(out)}
    assert probs(got["patient1"]) == probs(got["volume.npy"])
    assert probs(got["patient3"]) == probs(got["volume.npy"])
    assert "DICOM series of 28 slices" in got["patient1"]["note"] and "-1024..-514 mapped" in got["patient3"]["note"]
    assert "DICOM series of 6 slices" in got["patient2"]["note"] and "resampled from 6x28x28" in got["patient2"]["note"]


@pytest.fixture(scope="module")
def onnx_file(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx3d") / "best.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "-o", str(out)]) == 0
    return out


def parity_volumes(test_volumes: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, size=(5, 1, 28, 28, 28), dtype=np.uint8)
    return np.concatenate([test_volumes[:, None], noise])


@pytest.mark.slow  # the export takes ~20 s on one thread
def test_onnx_export_parity_on_volumes(ckpt, onnx_file, test_volumes, tmp_path, capsys):
    torch_pred, onnx_pred = Predictor.load(ckpt), Predictor.load(onnx_file)
    assert isinstance(onnx_pred, OnnxPredictor) and onnx_pred.info.spatial_dims == 3
    assert tuple(onnx_pred.session.get_inputs()[0].shape[1:]) == (1, 28, 28, 28)
    volumes = parity_volumes(test_volumes)
    expected = torch_pred.probabilities(volumes)
    for batch in (1, 7, 17):  # a dynamic batch dimension; the spatial size is the model's
        diff = np.abs(onnx_pred.probabilities(volumes, batch_size=batch) - expected).max()
        assert diff <= 1e-4, (batch, diff)
    for tta in (False, True):  # the fast recipe trained with tta: the mirror is in the graph already
        assert (
            np.abs(onnx_pred.probabilities(volumes, tta=tta) - torch_pred.probabilities(volumes, tta=tta)).max() <= 1e-4
        )
    np.save(tmp_path / "v.npy", test_volumes[:4])
    rc, out, err = run_cli(capsys, "predict", onnx_file, tmp_path / "v.npy")
    assert rc == 0, err
    np.testing.assert_allclose([probs(r) for r in rows(out)], expected[:4], atol=1e-4)


@pytest.mark.slow
def test_torchscript_export_on_volumes(ckpt, test_volumes, tmp_path):
    path, info = export_model(ckpt, "torchscript", tmp_path / "m.pt")
    assert info.spatial_dims == 3 and read_torchscript_info(path).input_shape == (1, 28, 28, 28)
    volumes = parity_volumes(test_volumes)
    scripted = torch.jit.load(str(path))
    with torch.no_grad():
        got = scripted(torch.from_numpy(volumes).float()).numpy()
    assert np.abs(got - Predictor.load(ckpt).probabilities(volumes)).max() <= 1e-4


def test_calibrated_sets_and_abstain_on_volumes(ckpt, test_volumes, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(ckpt.parent, run)
    rc, _, err = run_cli(capsys, "calibrate", run / "best.pt", "--conformal", "0.2")
    assert rc == 0, err
    np.save(tmp_path / "v.npy", test_volumes[:3])
    rc, out, err = run_cli(capsys, "predict", run / "best.pt", tmp_path / "v.npy", "--abstain-below", "0.9")
    assert rc == 0, err
    got = rows(out)
    assert len(got) == 3 and {"prediction_set", "abstain", "calibration"} <= set(got[0])
    assert got[0]["calibration"].startswith("temperature") and "calibration.json" in err


def write_png(path: Path) -> Path:
    Image.fromarray(np.full((28, 28), 90, np.uint8)).save(path)
    return path


def test_bad_inputs_one_line_each_and_the_rest_predicted(ckpt, test_volumes, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "image.npy", test_volumes[0, 0])  # a 2D array
    write_png(tmp_path / "scan.png")  # given as a file (in a folder, a 3D model only looks for volumes)
    nib.save(nib.Nifti1Image(np.stack([test_volumes[0]] * 3, -1), np.eye(4)), bad / "four.nii.gz")
    nib.save(nib.Nifti1Image(test_volumes[0, 0], np.eye(4)), bad / "flat.nii")
    (bad / "broken.nii.gz").write_bytes(b"not a nifti file")
    (bad / "empty.npy").write_bytes(b"")
    write_slice(tmp_path / "single.dcm", test_volumes[0, 0], series="1.2.3")
    volume = test_volumes[1]
    mixed = write_series(bad / "mixed", volume[:4])
    write_slice(mixed / "other.dcm", volume[5], series=generate_uid(), position=(0, 0, 99), orientation=OBLIQUE)
    tilted = write_series(bad / "tilted", volume[:4], series="1.2.826.0.1.7")  # one slice in another plane:
    write_slice(
        tilted / "tilt.dcm", volume[5], series="1.2.826.0.1.7", position=(0, 0, 9), orientation=(1, 0, 0, 0, 1, 0)
    )
    empty = tmp_path / "nothing"
    empty.mkdir()
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    write_png(pngs / "a.png")
    np.save(tmp_path / "good.npy", volume)
    out = tmp_path / "out.csv"
    out.write_text("kept\n")
    rc, _, err = run_cli(capsys, "predict", ckpt, bad, tmp_path / "good.npy", "-o", out)
    assert rc == 2 and "exists" in err and out.read_text() == "kept\n"  # never written over
    rc, text, err = run_cli(
        capsys,
        "predict",
        ckpt,
        bad,
        tmp_path / "scan.png",
        tmp_path / "single.dcm",
        empty,
        pngs,
        tmp_path / "missing.nii",
        tmp_path / "good.npy",
    )
    assert rc == 1 and "Traceback" not in err
    assert [r["path"] for r in rows(text)] == [str(tmp_path / "good.npy")]
    lines = {
        line.split(": ", 1)[0].removeprefix("skipped ").strip(): line
        for line in err.splitlines()
        if line.startswith("skipped")
    }
    expect = {
        bad / "image.npy": "a 2D image (28x28), but adrenalmnist3d is a 3D dataset",
        tmp_path / "scan.png": "a 2D image file, but adrenalmnist3d is a 3D dataset",
        bad / "four.nii.gz": "a 4D NIfTI holding 3 volumes (28x28x28x3); give one volume per file",
        bad / "flat.nii": "a 2D NIfTI (28x28)",
        bad / "broken.nii.gz": "not a readable NIfTI file",
        bad / "empty.npy": "empty file",
        mixed: "mixed series: 2 SeriesInstanceUIDs",
        tilted: "mixed orientations: 2 different ImageOrientationPatient",
        empty: "an empty folder",
        pngs: "holds only 2D image files (1, e.g. a.png)",
        tmp_path / "missing.nii": "no such file or folder",
        tmp_path / "single.dcm": "a single DICOM file; for a 3D model give the folder",
    }
    assert set(lines) == {str(p) for p in expect}, err
    for path, reason in expect.items():
        assert reason in lines[str(path)], lines[str(path)]
    assert "predicted 1 volume(s), 12 skipped" in err


def test_volumes_given_to_a_2d_model_and_usage_errors(ckpt, ckpt2d, root, test_volumes, tmp_path, capsys):
    np.save(tmp_path / "v.npy", test_volumes[0])
    nib.save(nib.Nifti1Image(test_volumes[0], np.eye(4)), tmp_path / "v.nii.gz")
    write_png(tmp_path / "ok.png")
    rc, out, err = run_cli(
        capsys,
        "predict",
        ckpt2d,
        tmp_path / "v.npy",
        tmp_path / "v.nii.gz",
        root / "adrenalmnist3d.npz",
        tmp_path / "ok.png",
    )
    assert rc == 1 and "Traceback" not in err and len(rows(out)) == 1
    skipped = [line for line in err.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 3 and all("but breastmnist is a 2D dataset" in line for line in skipped), err
    assert "volumes" in skipped[2]  # the 3D npz says what it holds
    rc, _, err = run_cli(capsys, "predict", ckpt, tmp_path / "v.npy", "--explain", tmp_path / "cams")
    assert rc == 2 and "does not apply to a 3D model" in err and "Traceback" not in err


@pytest.mark.skipif(
    not (Path(os.environ.get("MEDMNIST_ROOT", "/nonexistent")) / "adrenalmnist3d.npz").is_file(),
    reason="the real AdrenalMNIST3D file is not in MEDMNIST_ROOT",
)
def test_real_adrenal_test_split_as_npy_gives_evaluates_probabilities(ckpt, tmp_path):
    real = Path(os.environ["MEDMNIST_ROOT"]).resolve()
    with np.load(real / "adrenalmnist3d.npz") as npz:  # read in place, never copied
        np.save(tmp_path / "test.npy", npz["test_images"])
    report = predict_files(Predictor.load(ckpt), [tmp_path / "test.npy"])
    assert not report.failed and all(p.note == "" for p in report.predictions)
    expected = evaluate(ckpt, "test", root=str(real)).result.scores
    np.testing.assert_allclose([p.probabilities for p in report.predictions], expected, atol=1e-7)


def test_nifti_without_nibabel_is_one_clear_line(test_volumes, tmp_path, monkeypatch):
    nib.save(nib.Nifti1Image(test_volumes[0], np.eye(4)), tmp_path / "v.nii")
    monkeypatch.setitem(sys.modules, "nibabel", None)  # `import nibabel` now raises ImportError
    [item] = read_volumes([tmp_path / "v.nii"], SPEC)
    assert item.error == "NIfTI files need the nifti extra: pip install 'medmnist-lab[nifti]'"
