"""Run pages of volume runs: the montage and the misclassified test volumes drawn as slices."""

from __future__ import annotations

from pathlib import Path

import pytest

from medmnist_lab.engine import fit, resolve_config
from medmnist_lab.report.site import build_report
from synthetic import write_npz

pytestmark = pytest.mark.usefixtures("one_thread")


def test_report_of_a_volume_run_draws_slices(tmp_path: Path):
    write_npz(tmp_path / "organmnist3d.npz", "organmnist3d", 28, counts=(33, 22, 22))
    config = resolve_config(
        "organmnist3d", "fast", root=str(tmp_path), out_dir=str(tmp_path / "runs"), name="r", epochs=1, width=4
    )
    run = fit(config, progress=False).run_dir
    built = build_report([run], tmp_path / "rep", root=str(tmp_path), progress=False)
    page = built.runs[0]
    assert page.problems == []
    captions = " ".join(f.caption for f in page.figures)
    assert "Misclassified test volumes (middle slices" in captions
    assert "training volumes (middle slices" in captions
    assert (tmp_path / "rep" / "assets" / "montage-organmnist3d-28.png").is_file()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["gan", "train", "adrenalmnist3d", "--epochs", "1"], "the DCGAN generates 2D images"),
        (["augment", "expand", "adrenalmnist3d", "--policy", "volume", "--factor", "1", "-o", "x.npz"], "writes 2D"),
    ],
)
def test_2d_only_tools_refuse_volumes(argv, message, tmp_path, capsys, monkeypatch):
    from medmnist_lab.cli.main import main

    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
