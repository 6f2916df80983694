"""The one run folder lifecycle (engine/runfolder.py): each state read from folders that tiny real
runs wrote (the classifier on the real BreastMNIST file, the GAN on synthetic files), and the one
resumability check accepting and refusing config changes for both trainers."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

import medmnist_lab.engine.train as engine_train
from medmnist_lab.cli.main import main
from medmnist_lab.engine import fit, resolve_config
from medmnist_lab.engine.checkpoint import load_checkpoint
from medmnist_lab.engine.config import RunConfig
from medmnist_lab.engine.runfolder import RunFolder, RunState, check_resume, resume_target
from medmnist_lab.engine.summary import RunSummary
from medmnist_lab.engine.train import RESUMABLE_CHANGES
from medmnist_lab.errors import CheckpointError, MedMNISTLabError
from medmnist_lab.gan.config import RESUMABLE_CHANGES as GAN_RESUMABLE_CHANGES
from medmnist_lab.gan.config import GANConfig
from medmnist_lab.gan.summaries import GANEpochStats, GANRunSummary
from medmnist_lab.gan.train import train_gan
from synthetic import write_npz

pytestmark = pytest.mark.usefixtures("one_thread")

GAN_TINY = dict(width=4, nz=8, batch_size=16)


class _Stop(Exception):
    """Raised from an epoch callback: the run is interrupted there, as by a kill."""


def _stop_after(last_epoch: int):
    def stop(epoch: int, record: object) -> None:
        if epoch == last_epoch:
            raise _Stop

    return stop


def _classifier(real_root: Path, out: Path, name: str, **kw) -> RunConfig:
    tiny = dict(width=4, epochs=2, subset=64, batch_size=32, amp=False)
    return resolve_config("breastmnist", root=str(real_root), out_dir=str(out), name=name, **{**tiny, **kw})


def _run_dir(out: Path, name: str) -> Path:
    return out / "breastmnist_28" / "resnet18" / name


# --- the classifier --------------------------------------------------------------------------


def test_classifier_folder_goes_through_every_state(real_root: Path, tmp_path: Path) -> None:
    cfg = _classifier(real_root, tmp_path, "r")
    run = _run_dir(tmp_path, "r")
    folder = RunFolder(run)
    assert folder.state() is RunState.NEW  # no folder yet
    with pytest.raises(MedMNISTLabError, match=r"--resume .*: no such run folder; nothing to resume"):
        fit(cfg, resume=run, progress=False)

    with pytest.raises(_Stop):
        fit(cfg, progress=False, on_epoch_end=_stop_after(0))
    assert folder.state() is RunState.INTERRUPTED
    assert folder.resume_state(run / "last.pt", run) is RunState.INTERRUPTED
    with pytest.raises(MedMNISTLabError, match=r"already exists; pass --resume .* to continue it, or another --name"):
        fit(cfg, progress=False)  # a new run over trained work is refused

    resumed = fit(cfg, resume=run, progress=False)
    assert folder.state() is RunState.FINISHED and resumed.summary.resumed_from_epoch == 1
    assert folder.resume_state(run / "last.pt", run) is RunState.FINISHED  # continuable with more epochs


def test_classifier_run_that_died_before_its_first_checkpoint_starts_again(
    real_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _classifier(real_root, tmp_path, "d", epochs=1)
    run = _run_dir(tmp_path, "d")
    real_epoch = engine_train.train_one_epoch

    def dies(*a: object, **kw: object) -> float:
        raise _Stop  # in the first epoch: config.yaml and an empty history are all there is

    monkeypatch.setattr(engine_train, "train_one_epoch", dies)
    with pytest.raises(_Stop):
        fit(cfg, progress=False)
    monkeypatch.setattr(engine_train, "train_one_epoch", real_epoch)
    folder = RunFolder(run)
    assert {p.name for p in run.iterdir()} == {".lock", "config.yaml", "history.jsonl"}
    assert folder.state() is RunState.DIED_EARLY and not folder.has_work()
    assert folder.resume_state(run / "last.pt", run) is RunState.DIED_EARLY
    # --resume (as `train --resume` after a kill) and the same command both start it again in place
    shutil.copytree(run, tmp_path / "copy" / "breastmnist_28" / "resnet18" / "d")
    again = fit(cfg, resume=run, progress=False)
    assert again.summary.resumed_from_epoch is None and folder.state() is RunState.FINISHED
    same = fit(dataclasses.replace(cfg, out_dir=str(tmp_path / "copy")), progress=False)
    assert same.summary.resumed_from_epoch is None and same.summary.metrics == again.summary.metrics


def test_classifier_refusals_name_the_state(real_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MedMNISTLabError) as err:
        RunFolder(empty).resume_state(empty / "last.pt", empty)
    assert (
        str(err.value) == f"--resume {empty}: not a run folder ({empty / 'last.pt'} does not exist; nothing to resume)"
    )
    assert main(["train", "--resume", str(empty), "--no-progress"]) == 2
    assert "not a run folder" in capsys.readouterr().err

    cfg = _classifier(real_root, tmp_path, "b", epochs=1)
    fit(cfg, progress=False, keep="best")
    run = _run_dir(tmp_path, "b")
    assert RunFolder(run).state() is RunState.FINISHED and not (run / "last.pt").exists()
    with pytest.raises(MedMNISTLabError, match=r"\(it finished with --keep best: only its weights were kept\); "):
        fit(dataclasses.replace(cfg, epochs=2), resume=run, progress=False)
    # the CLI asks the same lifecycle before reading any config: one error, no "starting it again" note
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert "this run cannot be continued" in err and "starting it again" not in out


def test_classifier_resumability_check(real_root: Path, tmp_path: Path) -> None:
    cfg = _classifier(real_root, tmp_path, "c")
    first = fit(cfg, progress=False)
    run, last = first.run_dir, first.run_dir / "last.pt"
    with pytest.raises(CheckpointError) as err:
        fit(dataclasses.replace(cfg, lr=0.5, epochs=3), resume=run, progress=False)
    assert f"cannot resume {last}: settings differ (lr=0.001 in the checkpoint vs 0.5 now); " in str(err.value)
    assert str(err.value).endswith("only epochs, root, device may change")
    with pytest.raises(MedMNISTLabError, match=r"--epochs 1 is fewer than the 2 epochs .*last\.pt has already trained"):
        fit(dataclasses.replace(cfg, epochs=1), resume=run, progress=False)
    with pytest.raises(MedMNISTLabError, match=r"has finished: .* already has 2 epochs; pass --epochs above 2"):
        fit(cfg, resume=run, progress=False)
    # more epochs and another device spelling: the same experiment, trained further
    more = fit(dataclasses.replace(cfg, epochs=3, device="cpu"), resume=run, progress=False)
    assert more.summary.resumed_from_epoch == 2 and more.summary.epochs == 3

    # the check alone, on the checkpoint's own config: as many epochs as trained continue only an
    # unfinished run (one killed before summary.json: the resume writes it)
    saved = RunConfig.from_dict(load_checkpoint(last)["config"]).to_dict()
    assert saved["epochs"] == 3 and set(RESUMABLE_CHANGES) == {"epochs", "root", "device"}
    check_resume(saved, saved, RESUMABLE_CHANGES, last, done=3, finished=False)
    check_resume(saved, {**saved, "root": "/elsewhere", "epochs": 5}, RESUMABLE_CHANGES, last, done=3, finished=True)
    with pytest.raises(MedMNISTLabError, match="already has 3 epochs"):
        check_resume(saved, saved, RESUMABLE_CHANGES, last, done=3, finished=True)
    with pytest.raises(CheckpointError, match=r"width=4 in the checkpoint vs 8 now; seed=0 in the checkpoint vs 1"):
        check_resume(saved, {**saved, "width": 8, "seed": 1}, RESUMABLE_CHANGES, last, done=3, finished=False)


def test_resume_target_reads_a_folder_or_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pt").write_bytes(b"x")
    folder, ckpt = resume_target(tmp_path / "run")
    assert (folder.path, ckpt) == (tmp_path / "run", tmp_path / "run" / "last.pt")
    folder, ckpt = resume_target(tmp_path / "run" / "best.pt")
    assert (folder.path, ckpt) == (tmp_path / "run", tmp_path / "run" / "best.pt")
    assert RunFolder(tmp_path / "run").state(ckpt) is RunState.INTERRUPTED  # the checkpoint named
    folder, ckpt = resume_target(tmp_path / "gone" / "last.pt")  # missing: .pt names a file
    assert (folder.path, ckpt) == (tmp_path / "gone", tmp_path / "gone" / "last.pt")
    folder, ckpt = resume_target(tmp_path / "gone")
    assert (folder.path, ckpt) == (tmp_path / "gone", tmp_path / "gone" / "last.pt")


# --- the GAN ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gan_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gan_data")
    write_npz(root / "breastmnist.npz", "breastmnist", 28)
    return root


def _gan(root: Path, out: Path, **kw) -> GANConfig:
    return GANConfig("breastmnist", root=str(root), out=str(out), **{**GAN_TINY, **kw})


def test_gan_folder_goes_through_every_state(gan_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "g"
    cfg = _gan(gan_root, run, epochs=3, checkpoint_every=1, sample_every=9)
    folder = RunFolder(run)
    assert folder.state() is RunState.NEW
    with pytest.raises(MedMNISTLabError, match="no such run folder; nothing to resume"):
        train_gan(cfg, resume=True, progress=False)
    with pytest.raises(_Stop):
        train_gan(cfg, progress=False, on_epoch_end=_stop_after(0))
    assert folder.state() is RunState.INTERRUPTED
    with pytest.raises(MedMNISTLabError, match=r"already exists; pass --resume .* or choose another --name"):
        train_gan(cfg, progress=False)
    done = train_gan(cfg, resume=run, progress=False)
    assert folder.state() is RunState.FINISHED and done.summary.resumed_from_epoch == 1
    assert [h.epoch for h in done.history] == [0, 1, 2]


def test_gan_resumability_check(gan_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "g"
    cfg = _gan(gan_root, run, epochs=1)
    train_gan(cfg, progress=False)
    with pytest.raises(CheckpointError) as err:
        train_gan(dataclasses.replace(cfg, epochs=2, lr=1e-3, width=8), resume=True, progress=False)
    msg = str(err.value)
    assert msg.startswith(f"cannot resume {run / 'last.pt'}: settings differ (")
    assert "width=4 in the checkpoint vs 8 now; lr=0.0002 in the checkpoint vs 0.001 now" in msg
    assert msg.endswith(f"only {', '.join(GAN_RESUMABLE_CHANGES)} may change")
    with pytest.raises(MedMNISTLabError, match=r"has finished: .*last\.pt already has 1 epochs; pass --epochs above 1"):
        train_gan(cfg, resume=True, progress=False)
    # more epochs, other grid and checkpoint intervals, another device spelling: accepted
    more = train_gan(
        dataclasses.replace(cfg, epochs=2, sample_every=1, checkpoint_every=2, device="cpu"),
        resume=True,
        progress=False,
    )
    assert more.summary.resumed_from_epoch == 1 and [h.epoch for h in more.history] == [0, 1]
    with pytest.raises(MedMNISTLabError, match=r"--epochs 1 is fewer than the 2 epochs"):
        train_gan(cfg, resume=True, progress=False)


def test_gan_killed_before_its_summary_finishes_on_resume(gan_root: Path, tmp_path: Path) -> None:
    """Every epoch checkpointed, summary.json not yet written (a kill right there): the lifecycle
    says INTERRUPTED, and a resume with the same epochs trains none and writes the summary."""
    run = tmp_path / "g"
    cfg = _gan(gan_root, run, epochs=2)
    full = train_gan(cfg, progress=False)
    (run / "summary.json").unlink()
    assert RunFolder(run).state() is RunState.INTERRUPTED
    again = train_gan(cfg, resume=True, progress=False)
    assert again.summary.resumed_from_epoch == 2 and again.history == full.history
    assert GANRunSummary.read(run).final == full.summary.final


def test_gan_run_that_died_before_its_first_checkpoint_starts_again(
    gan_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "g"
    cfg = _gan(gan_root, run, epochs=2, checkpoint_every=2, sample_every=1)
    with pytest.raises(_Stop):
        train_gan(cfg, progress=False, on_epoch_end=_stop_after(0))  # before epoch 1's checkpoint
    folder = RunFolder(run)
    assert {p.name for p in run.iterdir()} == {".lock", "config.yaml", "history.jsonl", "samples"}
    assert folder.state() is RunState.DIED_EARLY
    # `gan train --resume RUN` takes the config.yaml it left and starts it again in place
    assert main(["gan", "train", "--resume", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"note: {run} has no checkpoint (it stopped before its first one): starting it again there" in out
    summary = GANRunSummary.read(run)
    assert summary.resumed_from_epoch is None and summary.config["out"] == str(run)
    lines = [GANEpochStats.from_dict(json.loads(x)) for x in (run / "history.jsonl").read_text().splitlines()]
    assert [h.epoch for h in lines] == [0, 1] and folder.state() is RunState.FINISHED


# --- the study cells -------------------------------------------------------------------------


def test_synthetic_cell_resumes_a_gan_killed_before_its_summary(real_root: Path, tmp_path: Path) -> None:
    from medmnist_lab.studies import synthetic

    # the real BreastMNIST: its classes are unbalanced, so balancing samples are drawn
    cfg = resolve_config("breastmnist", root=str(real_root), device="cpu", synthetic="gan-balanced:epochs=1:width=4")
    made = synthetic.resolve(cfg, tmp_path)
    npz = Path(made.synthetic)
    (gan_dir,) = (tmp_path / "synthetic").glob("gan-*")
    assert RunFolder(gan_dir).state() is RunState.FINISHED
    first = GANRunSummary.read(gan_dir)
    # reused when finished: neither trained nor sampled again
    assert synthetic.resolve(cfg, tmp_path) == made and GANRunSummary.read(gan_dir) == first
    npz.unlink()
    (gan_dir / "summary.json").unlink()  # killed between the last checkpoint and the summary
    assert synthetic.resolve(cfg, tmp_path) == made and npz.is_file()
    assert GANRunSummary.read(gan_dir).resumed_from_epoch == 1


def test_study_worker_reads_the_lifecycle(real_root: Path, tmp_path: Path) -> None:
    from medmnist_lab.studies.worker import CellTask, run_cell

    cfg = _classifier(real_root, tmp_path, "w", epochs=1)
    run = _run_dir(tmp_path, "w")
    run.mkdir(parents=True)
    (run / "notes.txt").write_text("not a run")  # NEW, but not a run's folder: refused, not deleted
    out = run_cell(CellTask("hw", cfg.to_dict(), str(tmp_path / "log"), study_dir=str(tmp_path)))
    assert out["status"] == "failed" and "holds files that are not a run's (notes.txt)" in out["error"]
    assert (run / "notes.txt").is_file()
    (run / "notes.txt").unlink()
    out = run_cell(CellTask("hw", cfg.to_dict(), str(tmp_path / "log"), study_dir=str(tmp_path)))
    assert out["status"] == "done" and RunFolder(run).state() is RunState.FINISHED
    assert RunSummary.from_dict(out["summary"]).resumed_from_epoch is None
