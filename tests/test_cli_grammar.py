"""One command-line grammar: the new spellings work, the old ones still do for a release with a
one-line notice, and outputs go into folders that do not exist yet (made when written)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from medmnist_lab.cli.main import build_parser, main

GAN_TINY = ["--width", "4", "--nz", "8", "--batch-size", "16", "--no-progress"]
NOTE = "is deprecated and will be removed in the next release; use"


def run(capsys, *argv) -> tuple[int, str, str]:
    """`main(argv)`: its exit code (argparse's too), stdout and stderr."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def parse(capsys, *argv: str) -> tuple[argparse.Namespace, str]:
    args = build_parser().parse_args(list(argv))
    return args, capsys.readouterr().err


def notes(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("note:") and NOTE in line]


# --- old spellings: parsed into the new option's value, with one notice --------------------------


@pytest.mark.parametrize(
    ("argv", "dest", "value", "old", "new"),
    [
        (["report", "runs", "-o", "site"], "out_dir", Path("site"), "-o", "--out-dir"),
        (["report", "runs", "--output", "site"], "out_dir", Path("site"), "--output", "--out-dir"),
        (["study", "run", "spec.yaml", "-o", "st"], "out_dir", Path("st"), "-o", "--out-dir"),
        (["gan", "train", "breastmnist", "--out", "g"], "out", Path("g"), "--out", "--out-dir DIR --name NAME"),
        (
            ["augment", "preview", "breastmnist", "--policy", "simple", "-o", "p.png", "--set", "rotate=30"],
            "augment_set",
            ["rotate=30"],
            "--set",
            "--augment-set",
        ),
    ],
)
def test_an_old_spelling_sets_the_new_option_with_a_notice(capsys, argv, dest, value, old, new) -> None:
    args, err = parse(capsys, *argv)
    assert getattr(args, dest) == value
    assert notes(err) == [f"note: {old} is deprecated and will be removed in the next release; use {new}"]


def test_new_spellings_print_no_notice(capsys) -> None:
    expand = ["augment", "expand", "breastmnist", "--policy", "simple", "--factor", "1", "-o", "x.npz"]
    for argv in (
        ["report", "runs", "--out-dir", "site"],
        ["study", "run", "spec.yaml", "--out-dir", "st", "--root", "data"],
        ["gan", "train", "breastmnist", "--out-dir", "g", "--name", "n"],
        ["gan", "train", "--resume", "g/n", "--epochs", "200"],  # with --out-dir/--name it is refused (below)
        [*expand, "--augment-set", "a=1"],
        ["train", "breastmnist", "--set", "ema=0.9", "--augment-set", "rotate=3"],
    ):
        _, err = parse(capsys, *argv)
        assert err == "", argv


def test_old_and_new_augment_set_spellings_add_up(capsys) -> None:
    args, err = parse(
        capsys, "augment", "preview", "breastmnist", "--policy", "simple", "-o", "p.png",
        "--augment-set", "rotate=30", "--set", "fill=0", "--augment-set", "p_hflip=0",
    )  # fmt: skip
    assert args.augment_set == ["rotate=30", "fill=0", "p_hflip=0"] and len(notes(err)) == 1


def test_report_needs_one_output_folder(capsys) -> None:
    assert run(capsys, "report", "runs")[0] == 2
    rc, _, err = run(capsys, "report", "runs", "-o", "a", "--out-dir", "b")
    assert rc == 2 and "not allowed with" in err


# --- end to end: the GAN's folder options, old and new ------------------------------------------


def test_gan_train_out_dir_name_and_resume_dir(capsys, synthetic_root: Path, tmp_path: Path, one_thread) -> None:
    common = ["--root", synthetic_root, *GAN_TINY]
    rc, out, err = run(
        capsys, "gan", "train", "breastmnist", "--epochs", "1", "--out-dir", tmp_path, "--name", "g", *common
    )
    assert rc == 0 and (tmp_path / "g" / "last.pt").is_file() and not notes(err), err
    # the new --resume RUN_DIR: the run's own settings (per-class? width? from its checkpoint), more epochs
    rc, out, err = run(capsys, "gan", "train", "--resume", tmp_path / "g", "--epochs", "2", "--no-progress")
    assert rc == 0 and "epochs: 2" in out and not notes(err), err
    # --out-dir/--name name a new run's folder: not with --resume RUN_DIR, even when they name RUN_DIR
    argv = ["gan", "train", "breastmnist", "--out-dir", tmp_path, "--name", "g", "--resume", tmp_path / "g"]
    rc, _, err = run(capsys, *argv, "--epochs", "3", *common)
    assert rc == 2 and "--out-dir and --name name the folder of a new run" in err, err
    # the old spellings: --out (the folder itself) and a bare --resume, each with its notice
    rc, out, err = run(
        capsys, "gan", "train", "breastmnist", "--out", tmp_path / "g", "--resume", "--epochs", "3", *common
    )
    assert rc == 0 and "epochs: 3" in out, err
    assert [n.split(" is ")[0] for n in notes(err)] == ["note: --out", "note: --resume without a folder"]
    assert f"use --resume {tmp_path / 'g'}" in err
    rc, _, err = run(capsys, "gan", "train", "breastmnist", "--out", tmp_path / "h", "--name", "x", *common)
    assert rc == 2 and "--out is the old spelling of --out-dir/--name" in err
    assert not (tmp_path / "h").exists()
    assert yaml.safe_load((tmp_path / "g" / "config.yaml").read_text())["out"] == str(tmp_path / "g")


def test_gan_train_resume_then_dataset_is_the_old_bare_resume(
    capsys, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread
) -> None:
    """`gan train --resume DATASET ...` (the old flag before the positional) resumes the run in the
    folder the options name, with the one notice of a bare --resume; a real folder wins."""
    from medmnist_lab.cli.gan import _dataset_named

    monkeypatch.chdir(tmp_path)
    common = ["--root", synthetic_root, *GAN_TINY]
    rc, _, err = run(capsys, "gan", "train", "breastmnist", "--epochs", "1", *common)
    assert rc == 0 and not notes(err), err
    rc, out, err = run(capsys, "gan", "train", "--resume", "BreastMNIST", "--epochs", "2", *common)
    assert rc == 0 and "epochs: 2" in out, err
    assert notes(err) == [
        "note: --resume without a folder is deprecated and will be removed in the next release; "
        f"use --resume {Path('runs/gan/breastmnist-28px-conditional-seed0')}"
    ]
    assert _dataset_named(Path("OrganMNIST_Axial")) == "OrganMNIST_Axial"  # v1 aliases, any case
    assert _dataset_named(Path("nosuch")) is None and _dataset_named(Path("runs/breastmnist")) is None
    rc, _, err = run(capsys, "gan", "train", "dermamnist", "--resume", "breastmnist", *common)
    assert rc == 2 and "--resume breastmnist is no run folder but a dataset, and DATASET dermamnist" in err, err
    (tmp_path / "dermamnist").mkdir()  # a folder of that name is RUN_DIR
    rc, _, err = run(capsys, "gan", "train", "--resume", "dermamnist", *common)
    assert rc == 2 and f"{Path('dermamnist/last.pt')} does not exist; nothing to resume" in err, err
    assert not notes(err)


def test_gan_sample_into_a_new_folder(capsys, synthetic_root: Path, tmp_path: Path, one_thread) -> None:
    rc, _, err = run(capsys, "gan", "train", "breastmnist", "--epochs", "1", "--out-dir", tmp_path / "runs",
                     "--root", synthetic_root, *GAN_TINY)  # fmt: skip
    assert rc == 0, err
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name == "breastmnist-28px-conditional-seed0"
    out = tmp_path / "new" / "folder" / "s.npz"
    rc, _, err = run(capsys, "gan", "sample", run_dir / "last.pt", "--per-class", "2", "-o", out)
    assert rc == 0 and out.is_file(), err


# --- train --set, study run --root -------------------------------------------------------------


def test_train_set_acts_as_the_option_or_sets_a_field_without_one(capsys) -> None:
    from medmnist_lab.cli.train import apply_set

    args, _ = parse(capsys, "train", "breastmnist", "--set", "epochs=3", "--set", "mean=0.4", "--set", "size=64")
    assert apply_set(args) == {"mean": 0.4} and args.epochs == 3 and args.size == 64


def test_train_set_end_to_end(capsys, synthetic_root: Path, tmp_path: Path, one_thread) -> None:
    rc, _, err = run(
        capsys, "train", "breastmnist", "--root", synthetic_root, "--out-dir", tmp_path, "--name", "r",
        "--set", "epochs=1", "--set", "width=4", "--set", "batch_size=16", "--set", "ema=0.5", "--no-progress",
    )  # fmt: skip
    assert rc == 0, err
    config = yaml.safe_load((tmp_path / "breastmnist_28" / "resnet18" / "r" / "config.yaml").read_text())
    assert (config["epochs"], config["width"], config["batch_size"], config["ema"]) == (1, 4, 16, 0.5)


def test_study_root_is_set_root_and_changes_no_hash(capsys, synthetic_root: Path, tmp_path: Path) -> None:
    from medmnist_lab.cli.study import _spec_from_args
    from medmnist_lab.studies.spec import expand

    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nbase: {dataset: breastmnist, epochs: 1, width: 4}\naxes: {seed: [0, 1]}\n")
    plain, _ = parse(capsys, "study", "run", str(spec), "--set", f"root={synthetic_root}")
    rooted, _ = parse(capsys, "study", "run", str(spec), "--root", str(synthetic_root))
    cells = {name: expand(_spec_from_args(a), tmp_path) for name, a in (("set", plain), ("root", rooted))}
    assert [c.config.root for c in cells["root"]] == [str(synthetic_root)] * 2
    assert [c.hash for c in cells["root"]] == [c.hash for c in cells["set"]]
    bare, _ = parse(capsys, "study", "run", str(spec))
    assert [c.hash for c in expand(_spec_from_args(bare), tmp_path)] == [c.hash for c in cells["root"]]


def test_study_device_is_set_device_for_every_cell(capsys, synthetic_root: Path, tmp_path: Path) -> None:
    from medmnist_lab.cli.study import _spec_from_args
    from medmnist_lab.errors import MedMNISTLabError
    from medmnist_lab.studies.spec import expand

    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nbase: {dataset: breastmnist, epochs: 1, width: 4}\naxes: {seed: [0, 1]}\n")
    flag, _ = parse(capsys, "study", "run", str(spec), "--device", "cuda:1")
    sets, _ = parse(capsys, "study", "run", str(spec), "--set", "device=cuda:1")
    cells = {name: expand(_spec_from_args(a), tmp_path) for name, a in (("flag", flag), ("set", sets))}
    assert [c.config.device for c in cells["flag"]] == ["cuda:1"] * 2
    assert [c.hash for c in cells["flag"]] == [c.hash for c in cells["set"]]
    bare, _ = parse(capsys, "study", "run", str(spec))  # a device is part of a cell's identity
    assert not {c.hash for c in expand(_spec_from_args(bare), tmp_path)} & {c.hash for c in cells["flag"]}
    both, _ = parse(capsys, "study", "run", str(spec), "--device", "cpu", "--set", "device=cuda")
    with pytest.raises(MedMNISTLabError, match="give one of them"):
        _spec_from_args(both)
    with pytest.raises(SystemExit):
        parse(capsys, "study", "run", str(spec), "--device", "gpu")
    assert "'gpu' is not a device; valid: auto, cpu, cuda, cuda:N, mps" in capsys.readouterr().err


# --- outputs: missing folders are made when the file is written --------------------------------


def test_single_file_outputs_create_their_folders(capsys, synthetic_root: Path, tmp_path: Path) -> None:
    root = ["--root", synthetic_root]
    for argv, out in (
        (["datasets", "montage", "breastmnist", *root], tmp_path / "m" / "a" / "x.png"),
        (
            ["augment", "preview", "breastmnist", "--policy", "simple", "--n", "2", *root],
            tmp_path / "p" / "b" / "x.png",
        ),
        (["augment", "expand", "breastmnist", "--policy", "simple", "--factor", "1", *root], tmp_path / "e" / "x.npz"),
    ):
        rc, _, err = run(capsys, *argv, "-o", out)
        assert rc == 0 and out.is_file(), err


def test_a_refused_output_creates_no_folder(capsys, tmp_path: Path) -> None:
    out = tmp_path / "new" / "x.png"
    rc, _, err = run(capsys, "datasets", "montage", "dermamnist", "--root", tmp_path / "empty", "-o", out)
    assert rc == 2 and "dermamnist" in err and not (tmp_path / "new").exists()


# --- Grad-CAM overlay names ---------------------------------------------------------------------


def test_overlay_names_have_one_suffix() -> None:
    from medmnist_lab.deploy.explain import overlay_stem

    assert overlay_stem("scans/case 1.png") == "case_1"
    assert overlay_stem("/data/x.tiff") == "x"
    assert overlay_stem("breast.npz#test/3") == "breast_test_3"
    assert "." not in overlay_stem("a.b.c.dcm")
