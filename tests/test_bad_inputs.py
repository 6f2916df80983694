"""A catalogue of bad inputs across every command (issue 12, point 7a).

Each case asserts: a non-zero exit, exactly one line on stderr that starts with `error:` and names
the bad value, no traceback, and no file that existed before changed or removed (SHA-256 of every
file of the workspace before and after). Files a user hands in (checkpoints, npz files) get a
message about that file, never download advice.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medmnist_lab.cli.main import main
from medmnist_lab.engine import fit, resolve_config
from medmnist_lab.gan.config import GANConfig
from medmnist_lab.gan.train import train_gan
from synthetic import write_npz


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace: a data root, a finished run, a GAN checkpoint, existing outputs, bad files."""
    torch.set_num_threads(1)
    ws = tmp_path_factory.mktemp("ws")
    data = ws / "data"
    for flag in ("breastmnist", "chestmnist", "retinamnist"):
        write_npz(data / f"{flag}.npz", flag, 28)
    tiny = dict(epochs=2, width=4, batch_size=16, amp=False)
    cfg = resolve_config("breastmnist", root=str(data), out_dir=str(ws / "runs"), name="done", **tiny)
    fit(cfg, progress=False)
    train_gan(
        GANConfig("breastmnist", epochs=1, width=4, nz=8, batch_size=16, out=str(ws / "gan"), root=str(data)),
        progress=False,
    )
    Image.new("RGB", (4, 4)).save(ws / "existing.png")
    write_npz(ws / "existing.npz", "breastmnist", 28)
    (ws / "existing.json").write_text("{}")
    (ws / "text.pt").write_text("this is not a checkpoint\n")
    (ws / "empty.pt").write_bytes(b"")
    torch.save({"format": "medmnist-lab/1", "config": {"dataset": "breastmnist"}}, ws / "partial.pt")
    (ws / "empty.npz").write_bytes(b"")
    np.savez(ws / "zero.npz", train_images=np.zeros((0, 28, 28), np.uint8), train_labels=np.zeros((0, 1), np.uint8))
    (ws / "notes.txt").write_text("a file, not a folder")
    (ws / "adir").mkdir()
    (ws / "bad.yaml").write_text("name: bad\nbase: {dataset: breastmnist, epochz: 3}\n")
    (ws / "spec.yaml").write_text("name: ok\nbase: {dataset: breastmnist, epochs: 1, width: 4}\n")
    (ws / "model.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")  # what an ONNX file starts with
    with warnings.catch_warnings():  # torch.jit is deprecated, but `export --format torchscript` writes these
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(ws / "exported.pt"))  # a TorchScript archive named .pt
    return ws


RUN = "runs/breastmnist_28/resnet18/done"
GAN = "gan/last.pt"
ROOT = ["--root", "{ws}/data"]
TRAIN = ["train", "breastmnist", *ROOT, "--out-dir", "{ws}/scratch", "--no-progress", "--width", "4"]
PREVIEW = ["augment", "preview", "breastmnist", "--policy", "simple", "-o", "{ws}/new.png", *ROOT]
EXPAND = ["augment", "expand", "breastmnist", "--policy", "simple", "--factor", "1", *ROOT]
SAMPLE = ["gan", "sample", "{ws}/" + GAN]
GAN_EVAL = ["gan", "evaluate", "{ws}/" + GAN, "--classifier", "{ws}/" + RUN + "/best.pt", "--no-cas", *ROOT]
MONTAGE = ["datasets", "montage", "breastmnist", *ROOT]
GAN_OUT = ["--out-dir", "{ws}", "--name", "g1"]
STUDY_OUT = ["--out-dir", "{ws}/st"]

# (id, argv, text the one error line must contain, text it must not contain)
CASES: list[tuple[str, list[str], str, str | None]] = [
    # datasets
    ("info-unknown", ["datasets", "info", "nosuchset"], "nosuchset", None),
    ("info-size", ["datasets", "info", "breastmnist", "--size", "30"], "30", None),
    ("list-root-is-file", ["datasets", "list", "--root", "{ws}/notes.txt"], "is a file", None),
    ("download-mirror", ["datasets", "download", "breastmnist", "--mirror", "not-a-url", *ROOT], "not-a-url", None),
    ("download-size", ["datasets", "download", "breastmnist", "--size", "99"], "99", None),
    ("download-unknown", ["datasets", "download", "breastmnistt", *ROOT], "breastmnistt", None),
    ("verify-unknown", ["datasets", "verify", "nosuch", *ROOT], "nosuch", None),
    ("verify-root-missing", ["datasets", "verify", "--root", "{ws}/no-data"], "no-data", None),
    ("verify-root-empty", ["datasets", "verify", "--root", "{ws}/adir"], "datasets download", None),
    ("verify-no-local-file", ["datasets", "verify", "dermamnist", *ROOT], "datasets download dermamnist", None),
    ("montage-exists", [*MONTAGE, "-o", "{ws}/existing.png"], "already exists", None),
    ("montage-is-folder", [*MONTAGE, "-o", "{ws}/adir"], "must end in", None),
    ("montage-parent-file", [*MONTAGE, "-o", "{ws}/notes.txt/x.png"], "is a file", None),
    ("montage-ancestor-file", [*MONTAGE, "-o", "{ws}/notes.txt/new/x.png"], "no folder can be created", None),
    ("montage-suffix", [*MONTAGE, "-o", "{ws}/x.gif"], "x.gif", None),
    ("montage-cell", [*MONTAGE, "-o", "{ws}/n.png", "--cell", "-5"], "-5", None),
    ("montage-per-class", [*MONTAGE, "-o", "{ws}/n.png", "--per-class", "0"], "0", None),
    ("montage-seed", [*MONTAGE, "-o", "{ws}/n.png", "--seed", "-1"], "-1", None),
    ("montage-split", [*MONTAGE, "-o", "{ws}/n.png", "--split", "nope"], "nope", None),
    ("montage-missing-data", ["datasets", "montage", "dermamnist", *ROOT, "-o", "{ws}/n.png"], "dermamnist", None),
    # augment
    ("preview-policy", [*PREVIEW[:4], "nosuch", *PREVIEW[5:]], "nosuch", None),
    ("preview-nan", [*PREVIEW, "--augment-set", "rotate=nan"], "nan", None),
    ("preview-inf", [*PREVIEW, "--augment-set", "rotate=inf"], "inf", None),
    ("preview-range", [*PREVIEW, "--augment-set", "rotate=-999"], "-999", None),
    ("preview-unknown-magnitude", [*PREVIEW, "--augment-set", "bogus=1"], "bogus", None),
    ("preview-malformed-set", [*PREVIEW, "--augment-set", "rotate"], "rotate", None),
    ("preview-n", [*PREVIEW, "--n", "100000"], "100000", None),
    ("preview-copies", [*PREVIEW, "--copies", "0"], "0", None),
    ("preview-exists", [*PREVIEW[:6], "{ws}/existing.png", *ROOT], "already exists", None),
    ("expand-factor-0", [*EXPAND[:6], "0", *ROOT, "-o", "{ws}/x.npz"], "0", None),
    ("expand-factor-huge", [*EXPAND[:6], "1000", *ROOT, "-o", "{ws}/x.npz"], "1000", None),
    ("expand-dataset-file", [*EXPAND, "-o", "{ws}/data/breastmnist.npz", "--overwrite"], "dataset file", None),
    ("expand-exists", [*EXPAND, "-o", "{ws}/existing.npz"], "already exists", None),
    ("expand-suffix", [*EXPAND, "-o", "{ws}/out.txt"], "out.txt", None),
    ("expand-mix", [*EXPAND[:4], "simple+mixup", *EXPAND[5:], "-o", "{ws}/x.npz"], "mix", None),
    ("list-size-without-v", ["augment", "list", "--size", "64"], "--size", None),
    # train
    ("train-unknown", ["train", "nosuch", *ROOT], "nosuch", None),
    ("train-lr-nan", [*TRAIN, "--lr", "nan"], "nan", None),
    ("train-lr-inf", [*TRAIN, "--lr", "inf"], "inf", None),
    ("train-lr-negative", [*TRAIN, "--lr", "-1"], "-1", None),
    ("train-momentum-range", [*TRAIN, "--momentum", "1.5"], "1.5", None),
    ("train-momentum-adam", [*TRAIN, "--momentum", "0.5"], "momentum", None),
    ("train-gamma-cosine", [*TRAIN, "--gamma", "0.5", "--schedule", "cosine"], "gamma", None),
    ("train-milestones-nan", [*TRAIN, "--milestones", "0.5,nan"], "nan", None),
    ("train-smoothing", [*TRAIN, "--label-smoothing", "1"], "1", None),
    ("train-weight-decay", [*TRAIN, "--weight-decay", "-0.1"], "-0.1", None),
    ("train-epochs", [*TRAIN, "--epochs", "0"], "0", None),
    ("train-warmup", [*TRAIN, "--warmup", "-1"], "-1", None),
    ("train-seed", [*TRAIN, "--seed", "-5"], "-5", None),
    ("train-model", [*TRAIN, "--model", "resnet99"], "resnet99", None),
    ("train-recipe", [*TRAIN, "--recipe", "nosuch"], "nosuch", None),
    ("train-augment", [*TRAIN, "--augment", "nosuch"], "nosuch", None),
    ("train-augment-set-alone", [*TRAIN, "--augment-set", "rotate=30"], "augment", None),
    ("train-ratio-alone", [*TRAIN, "--synthetic-ratio", "0.5"], "synthetic", None),
    ("train-ratio-nan", [*TRAIN, "--synthetic-ratio", "nan"], "nan", None),
    ("train-npz-empty", [*TRAIN, "--train-npz", "{ws}/empty.npz"], "empty.npz", "download"),
    ("train-npz-zero", [*TRAIN, "--train-npz", "{ws}/zero.npz"], "0 samples", "download"),
    ("train-npz-missing", [*TRAIN, "--train-npz", "{ws}/missing.npz"], "missing.npz", "download"),
    ("train-synthetic-text", [*TRAIN, "--synthetic", "{ws}/notes.txt"], "notes.txt", "download"),
    ("train-subset", [*TRAIN, "--subset", "100000"], "100000", None),
    ("train-out-dir-file", [*TRAIN, "--out-dir", "{ws}/notes.txt"], "notes.txt", None),
    ("train-name-taken", [*TRAIN, "--out-dir", "{ws}/runs", "--name", "done"], "already exists", None),
    ("train-name-path", [*TRAIN, "--name", "../evil"], "evil", None),
    ("train-size", [*TRAIN, "--size", "30"], "30", None),
    ("train-amp", [*TRAIN, "--amp", "maybe"], "maybe", None),
    ("train-eval-batch-memory", [*TRAIN, "--eval-batch-size", "100000000"], "GiB", None),
    ("train-set-unknown", [*TRAIN, "--set", "epochz=3"], "epochz", None),
    ("train-set-nan", [*TRAIN, "--set", "lr=nan"], "nan", None),
    ("train-set-and-option", [*TRAIN, "--epochs", "2", "--set", "epochs=3"], "both set epochs", None),
    ("train-set-dataset", [*TRAIN, "--set", "dataset=retinamnist"], "DATASET", None),
    ("train-set-augment", [*TRAIN, "--set", "augment=nosuch"], "nosuch", None),
    ("resume-set", ["train", "--resume", "{ws}/" + RUN, "--set", "lr=0.1"], "--set", None),
    ("resume-changes-lr", ["train", "--resume", "{ws}/" + RUN, "--lr", "0.1"], "--lr", None),
    ("resume-finished", ["train", "--resume", "{ws}/" + RUN], "finished", None),
    ("resume-fewer-epochs", ["train", "--resume", "{ws}/" + RUN, "--epochs", "1"], "fewer", None),
    ("resume-missing", ["train", "--resume", "{ws}/nothing-here"], "nothing-here", None),
    ("resume-text-file", ["train", "--resume", "{ws}/text.pt"], "text file", None),
    ("resume-other-dataset", ["train", "retinamnist", "--resume", "{ws}/" + RUN], "retinamnist", None),
    ("no-dataset", ["train"], "DATASET", None),
    # evaluate
    ("evaluate-text", ["evaluate", "{ws}/text.pt"], "text file", "download"),
    ("evaluate-empty", ["evaluate", "{ws}/empty.pt"], "empty file", "download"),
    ("evaluate-partial", ["evaluate", "{ws}/partial.pt"], "lacks", "download"),
    ("evaluate-missing", ["evaluate", "{ws}/missing.pt"], "missing.pt", None),
    ("evaluate-onnx", ["evaluate", "{ws}/model.onnx"], "medmnist-lab predict {ws}/model.onnx IMAGES", "text file"),
    ("evaluate-torchscript", ["evaluate", "{ws}/exported.pt"], "exported TorchScript model", "weights_only"),
    ("evaluate-folder", ["evaluate", "{ws}/" + RUN], "did you mean {ws}/" + RUN + "/best.pt", "does not exist"),
    ("evaluate-empty-folder", ["evaluate", "{ws}/adir"], "is a folder", "does not exist"),
    ("evaluate-split", ["evaluate", "{ws}/" + RUN + "/best.pt", "--split", "nope"], "nope", None),
    ("evaluate-dataset", ["evaluate", "{ws}/" + RUN + "/best.pt", "--dataset", "retinamnist"], "retinamnist", None),
    ("evaluate-gan-checkpoint", ["evaluate", "{ws}/" + GAN], "not a medmnist-lab checkpoint", None),
    ("evaluate-ensemble-twice", ["evaluate", "{ws}/" + RUN + "/best.pt", "{ws}/" + RUN + "/best.pt"], "twice", None),
    (
        "evaluate-ensemble-exists",
        ["evaluate", "{ws}/" + RUN + "/best.pt", "{ws}/" + RUN + "/last.pt", "-o", "{ws}/existing.json"],
        "exists",
        None,
    ),
    (
        "evaluate-ensemble-predictions",
        ["evaluate", "{ws}/" + RUN + "/best.pt", "{ws}/" + RUN + "/last.pt", "--predictions"],
        "--predictions",
        None,
    ),
    ("evaluate-output-one", ["evaluate", "{ws}/" + RUN + "/best.pt", "-o", "{ws}/e.json"], "-o/--output", None),
    # predict and export
    ("predict-text", ["predict", "{ws}/text.pt", "{ws}/existing.png"], "text file", "download"),
    ("predict-torchscript", ["predict", "{ws}/exported.pt", "{ws}/existing.png"], "TorchScript", "weights_only"),
    ("predict-no-inputs", ["predict", "{ws}/" + RUN + "/best.pt", "{ws}/adir"], "adir", None),
    (
        "predict-exists",
        ["predict", "{ws}/" + RUN + "/best.pt", "{ws}/existing.png", "-o", "{ws}/existing.json"],
        "exists",
        None,
    ),
    ("predict-suffix", ["predict", "{ws}/" + RUN + "/best.pt", "{ws}/existing.png", "-o", "{ws}/p.txt"], "p.txt", None),
    ("predict-batch", ["predict", "{ws}/" + RUN + "/best.pt", "{ws}/existing.png", "--batch-size", "0"], "0", None),
    ("calibrate-alpha-high", ["calibrate", "{ws}/" + RUN + "/best.pt", "--conformal", "1.5", *ROOT], "1.5", None),
    ("calibrate-alpha-zero", ["calibrate", "{ws}/" + RUN + "/best.pt", "--conformal", "0", *ROOT], "(0, 1)", None),
    (
        "calibrate-too-few",
        ["calibrate", "{ws}/" + RUN + "/best.pt", "--conformal", "0.0001", *ROOT],
        "needs at least 10000 val images",
        "download",
    ),
    ("calibrate-method", ["calibrate", "{ws}/" + RUN + "/best.pt", "--method", "platt", *ROOT], "platt", None),
    ("calibrate-mondrian-alone", ["calibrate", "{ws}/" + RUN + "/best.pt", "--mondrian", *ROOT], "--conformal", None),
    ("calibrate-exists", ["calibrate", "{ws}/" + RUN + "/best.pt", "-o", "{ws}/existing.json", *ROOT], "exists", None),
    ("calibrate-onnx", ["calibrate", "{ws}/model.onnx"], "ONNX", None),
    ("export-format", ["export", "{ws}/" + RUN + "/best.pt", "--format", "tflite"], "tflite", None),
    ("export-partial", ["export", "{ws}/partial.pt", "--format", "onnx", "-o", "{ws}/p.onnx"], "lacks", None),
    (
        "export-exists",
        ["export", "{ws}/" + RUN + "/best.pt", "--format", "onnx", "-o", "{ws}/existing.json"],
        ".onnx",
        None,
    ),
    # gan
    ("gan-multilabel", ["gan", "train", "chestmnist", *ROOT, *GAN_OUT], "chestmnist", None),
    ("gan-mode", ["gan", "train", "breastmnist", "--mode", "nosuch", *ROOT, *GAN_OUT], "nosuch", None),
    ("gan-lr-nan", ["gan", "train", "breastmnist", "--lr", "nan"], "nan", None),
    ("gan-beta1", ["gan", "train", "breastmnist", "--beta1", "1.5"], "1.5", None),
    ("gan-loss", ["gan", "train", "breastmnist", "--loss", "wgan", *ROOT, *GAN_OUT], "wgan", None),
    ("gan-out-file", ["gan", "train", "breastmnist", *ROOT, "--out-dir", "{ws}", "--name", "notes.txt"], "notes", None),
    ("gan-out-dir-file", ["gan", "train", "breastmnist", *ROOT, "--out-dir", "{ws}/notes.txt"], "notes.txt", None),
    ("gan-out-taken", ["gan", "train", "breastmnist", *ROOT, "--out-dir", "{ws}", "--name", "gan"], "already", None),
    ("gan-name-path", ["gan", "train", "breastmnist", *ROOT, "--name", "../evil"], "evil", None),
    ("gan-no-dataset", ["gan", "train", *ROOT], "DATASET", None),
    ("gan-resume-nothing", ["gan", "train", "breastmnist", *ROOT, "--resume", "{ws}/g2"], "g2", None),
    ("gan-resume-and-name", ["gan", "train", "--resume", "{ws}/gan", "--name", "g3"], "--name", None),
    ("gan-resume-changes-lr", ["gan", "train", "--resume", "{ws}/gan", "--lr", "0.1", "--epochs", "9"], "lr", None),
    ("gan-resume-classifier", ["gan", "train", "--resume", "{ws}/" + RUN], "GAN checkpoint", None),
    ("sample-zero", [*SAMPLE, "--per-class", "0", "-o", "{ws}/s.npz"], "0", None),
    ("sample-exists", [*SAMPLE, "--per-class", "2", "-o", "{ws}/existing.npz"], "exists", None),
    ("sample-dataset-file", [*SAMPLE, "--balance", "-o", "{ws}/data/retinamnist.npz"], "data", None),
    ("sample-memory", [*SAMPLE, "--per-class", "1000000000", "-o", "{ws}/s.npz"], "GiB", None),
    ("sample-ratio-nan", [*SAMPLE, "--ratio", "nan", "-o", "{ws}/s.npz"], "nan", None),
    ("sample-classifier", ["gan", "sample", "{ws}/" + RUN + "/best.pt", "--balance", "-o", "{ws}/s.npz"], "GAN", None),
    ("sample-text", ["gan", "sample", "{ws}/text.pt", "--balance", "-o", "{ws}/s.npz"], "text file", "download"),
    ("gan-eval-exists", ["gan", "evaluate", "{ws}/" + GAN, "-o", "{ws}/existing.json", *ROOT], "already exists", None),
    (
        "gan-eval-unused-option",
        [*GAN_EVAL, "--classifier-epochs", "3"],
        "--classifier-epochs",
        None,
    ),
    (
        "gan-eval-memory",
        [*GAN_EVAL, "--n", "1000000000"],
        "GiB",
        None,
    ),
    # report and trackers
    ("report-missing", ["report", "{ws}/nothing", "--out-dir", "{ws}/rep"], "nothing", None),
    ("report-not-db", ["report", "{ws}/notes.txt", "--out-dir", "{ws}/rep"], "notes.txt", None),
    ("report-empty", ["report", "{ws}/adir", "--out-dir", "{ws}/rep"], "adir", None),
    ("report-out-file", ["report", "{ws}/runs", "--out-dir", "{ws}/existing.png"], "existing.png", None),
    ("report-no-out-dir", ["report", "{ws}/runs"], "--out-dir", None),
    ("train-log", [*TRAIN, "--log", "wandb"], "wandb", None),
    # study and results
    ("study-unknown", ["study", "run", "nosuchstudy"], "nosuchstudy", None),
    ("study-bad-spec", ["study", "run", "{ws}/bad.yaml", *STUDY_OUT], "epochz", None),
    ("study-set-nan", ["study", "run", "{ws}/spec.yaml", "--set", "lr=nan", "--dry-run", *STUDY_OUT], "nan", None),
    (
        "study-trials-grid",
        ["study", "run", "{ws}/spec.yaml", "--trials", "3", "--dry-run", *STUDY_OUT],
        "--trials",
        None,
    ),
    ("study-seeds", ["study", "run", "{ws}/spec.yaml", "--seeds", "-1", "--dry-run", *STUDY_OUT], "-1", None),
    ("study-sizes", ["study", "run", "{ws}/spec.yaml", "--sizes", "100", "--dry-run", *STUDY_OUT], "size 100", None),
    ("study-root-missing-data", ["study", "run", "{ws}/spec.yaml", "--root", "{ws}/adir", *STUDY_OUT], "adir", None),
    (
        "study-root-and-set-root",
        ["study", "run", "{ws}/spec.yaml", *ROOT, "--set", "root=/x", "--dry-run", *STUDY_OUT],
        "--root",
        None,
    ),
    ("study-workers", ["study", "run", "{ws}/spec.yaml", "--workers", "0"], "0", None),
    ("results-table-missing", ["results", "table", "{ws}/no-study"], "no-study", None),
    ("results-table-run", ["results", "table", "{ws}/" + RUN], "results import {ws}/" + RUN + " -o STUDY_DIR", None),
    ("results-table-runs", ["results", "table", "{ws}/runs"], "results table STUDY_DIR", None),
    ("results-import-nothing", ["results", "import", "{ws}/adir", "-o", "{ws}/imp"], "adir", None),
]


def snapshot(ws: Path) -> dict[str, str]:
    return {str(p.relative_to(ws)): hashlib.sha256(p.read_bytes()).hexdigest() for p in ws.rglob("*") if p.is_file()}


def test_the_catalogue_is_large_and_covers_every_command() -> None:
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)
    commands = {" ".join(a for a in argv[:2] if not a.startswith(("-", "{"))) for _, argv, _, _ in CASES}
    for command in ("datasets info", "datasets download", "datasets montage", "augment preview", "augment expand",
                    "train breastmnist", "evaluate", "gan train", "gan sample", "gan evaluate", "study run",
                    "results table", "results import"):  # fmt: skip
        assert any(c.startswith(command.split()[0]) for c in commands), command


@pytest.mark.parametrize(("argv", "needle", "absent"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(
    argv: list[str], needle: str, absent: str | None, ws: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("MEDMNIST_ROOT", str(ws / "data"))  # the data root that outputs must never touch
    monkeypatch.chdir(ws)
    args = [a.format(ws=ws) for a in argv]
    before = snapshot(ws)
    try:
        rc = main(args)
    except SystemExit as exc:  # argparse's usage errors
        rc = exc.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc not in (0, None), f"exit 0 for {args}: {out}"
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in out + err
    assert needle.format(ws=ws) in lines[0], lines[0]
    if absent is not None:
        assert absent not in lines[0].lower(), lines[0]
    after = snapshot(ws)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"changed or removed: {changed}"


def test_overwrite_replaces_an_output_but_never_a_dataset_file(ws: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(ws)
    out = ws / "again.png"
    args = ["datasets", "montage", "breastmnist", "--root", str(ws / "data"), "--per-class", "2", "-o", str(out)]
    assert main(args) == 0
    first = out.read_bytes()
    assert main([*args, "--seed", "1"]) == 2  # exists: refused
    assert out.read_bytes() == first
    assert main([*args, "--seed", "1", "--overwrite"]) == 0
    assert out.read_bytes() != first
    data = json.dumps(sorted(snapshot(ws / "data").items()))
    rc = main(["augment", "expand", "breastmnist", "--policy", "simple", "--factor", "1", "--root", str(ws / "data"),
               "-o", str(ws / "data" / "breastmnist.npz"), "--overwrite"])  # fmt: skip
    assert rc == 2 and json.dumps(sorted(snapshot(ws / "data").items())) == data
    capsys.readouterr()
