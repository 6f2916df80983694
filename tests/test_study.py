"""Studies: specs and their errors, cells and hashes, the store, resume paths, search, import, CLI.

Process-level behaviour (Ray, kill -9, Ctrl-C, concurrent workers) is in test_study_process.py.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from medmnist_lab.cli.main import main
from medmnist_lab.engine import fit, resolve_config
from medmnist_lab.engine.summary import RunSummary
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.studies.backends import BackendOptions
from medmnist_lab.studies.runner import run_study
from medmnist_lab.studies.spec import apply_overrides, cell_hash, expand, load_spec, parse_set, parse_spec
from medmnist_lab.studies.store import ResultStore
from medmnist_lab.studies.worker import CellTask, run_cell

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"epochs": 2, "width": 4, "amp": False}
# One torch thread per cell: tiny nets on a shared 2-core machine spin-wait with two (see conftest).
ONE_THREAD = BackendOptions(threads=1)


def write_spec(path: Path, **spec) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


def tiny_spec(root: Path, **kw) -> dict:
    return {
        "name": "t",
        "base": {**TINY, "root": str(root), **kw.pop("base", {})},
        "axes": kw.pop("axes", {"dataset": ["breastmnist"], "model": ["resnet18", "resnet50"], "seed": [0, 1]}),
        **kw,
    }


def db_rows(study: Path) -> tuple[list, list]:
    with sqlite3.connect(study / "results.db") as db:
        return db.execute("SELECT hash, status FROM runs").fetchall(), db.execute(
            "SELECT hash, split FROM metrics"
        ).fetchall()


def test_expansion_include_exclude_and_hash_identity(synthetic_root, tmp_path):
    spec = parse_spec(
        tiny_spec(
            synthetic_root,
            include=[{"dataset": "dermamnist", "model": "resnet18", "seed": 0}],
            exclude=[{"model": "resnet50", "seed": 1}],
        )
    )
    cells = expand(spec, tmp_path)
    labels = sorted(c.label for c in cells)
    assert len(cells) == 4 and "dermamnist_28 resnet18 medmnist-v2 seed 0" in labels
    assert not any("resnet50" in label and "seed 1" in label for label in labels)
    # where a run goes is not what it is: same hash in another folder, with another root or name
    again = expand(spec, tmp_path / "elsewhere")
    assert [c.hash for c in cells] == [c.hash for c in again]
    cfg = cells[0].config.to_dict()
    assert cell_hash({**cfg, "root": "/x", "name": "y", "out_dir": "z"}) == cell_hash(cfg)
    assert cell_hash({**cfg, "lr": 0.002}) != cell_hash(cfg)
    # two spellings of one config are one cell
    dup = parse_spec(tiny_spec(synthetic_root, axes={"dataset": ["breastmnist", "BreastMNIST"], "model": ["resnet18"]}))
    assert len(expand(dup, tmp_path)) == 1


def test_overrides_replace_axes():
    spec = load_spec("resnet18-vs-50")
    assert len(expand_points(spec)) == 12 * 2 * 5
    small = apply_overrides(spec, parse_set(["epochs=1", "model=resnet50", "lr=1e-3"]), ["breastmnist"], [0, 1])
    assert small.base["epochs"] == 1 and small.base["model"] == "resnet50" and "model" not in small.axes
    assert small.axes["dataset"] == ["breastmnist"] and small.axes["seed"] == [0, 1]
    assert isinstance(small.base["lr"], float)
    with pytest.raises(MedMNISTLabError, match="did you mean 'epochs'"):
        parse_set(["epoch=1"])
    with pytest.raises(MedMNISTLabError, match="FIELD=VALUE"):
        parse_set(["epochs"])


def test_sizes_override_lets_the_resolution_study_run_on_a_volume_dataset(tmp_path):
    # the resolution study's size axis (28..224) is for 2D files; a 3D dataset has 28 and 64 only
    spec = apply_overrides(load_spec("resolution"), datasets=["adrenalmnist3d"])
    with pytest.raises(MedMNISTLabError, match=r"size 128 is not available.*--sizes replaces the size axis"):
        expand(spec, tmp_path)
    spec = apply_overrides(load_spec("resolution"), datasets=["adrenalmnist3d"], seeds=[0], sizes=[28, 64])
    cells = expand(spec, tmp_path)
    assert sorted((c.config.size, c.config.model) for c in cells) == [
        (28, "resnet18"),
        (28, "resnet50"),
        (64, "resnet18"),
        (64, "resnet50"),
    ]
    assert all(c.config.conv == "acs" for c in cells)  # `fast` on a volume dataset: ACS, as in `train`


def expand_points(spec):
    from medmnist_lab.studies.spec import grid_points

    return grid_points(spec)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"base": {"epoch": 1}}, "unknown config field 'epoch'"),
        ({"axes": {"modle": ["resnet18"]}}, "unknown config field 'modle'"),
        ({"base": {"epochs": 0}}, "epochs"),
        ({"axes": {"dataset": ["breastmnist"], "model": ["resnet19"]}}, "unknown model 'resnet19'"),
        ({"axes": {"dataset": ["breastmnist"], "seed": []}}, "empty list"),
        ({"exclude": [{"dataset": "breastmnist"}]}, "grid is empty"),
        ({"axes": {"dataset": ["octmnist"]}}, "data files missing"),
        ({"axes": {"dataset": ["breastmnist"], "lr": {"log_uniform": [0, 1]}}, "trials": 2}, "LOW > 0"),
        ({"axes": {"dataset": ["breastmnist"], "lr": {"log_uniform": [1e-4, 1e-1]}}}, "needs 'trials"),
        ({"colour": 1}, "unknown key 'colour'"),
    ],
)
def test_bad_specs_fail_clearly_and_touch_no_results(spec, message, synthetic_root, one_cell_study, tmp_path, capsys):
    study = tmp_path / "study"
    shutil.copytree(one_cell_study, study)
    before = (study / "results.db").read_bytes(), db_rows(study)
    bad = tiny_spec(synthetic_root)
    for key in ("base", "axes"):
        if key in spec:
            bad[key] = {**(bad[key] if key == "base" else {}), **spec[key]}
    bad.update({k: v for k, v in spec.items() if k not in ("base", "axes")})
    capsys.readouterr()
    assert main(["study", "run", str(write_spec(tmp_path / "bad.yaml", **bad)), "--out-dir", str(study)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert db_rows(study) == before[1] and (study / "results.db").read_bytes() == before[0]


@pytest.fixture(scope="module")
def one_cell_study(synthetic_root, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("one_cell")
    good = write_spec(tmp / "good.yaml", **tiny_spec(synthetic_root, axes={"dataset": ["breastmnist"]}))
    assert (
        main(
            [
                "study",
                "run",
                str(good),
                "--out-dir",
                str(tmp / "study"),
                "--set",
                "epochs=1",
                "--no-progress",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    return tmp / "study"


def test_unknown_builtin_and_missing_file(capsys, tmp_path):
    assert main(["study", "run", "resnet18-vs-05", "--out-dir", str(tmp_path / "s")]) == 2
    assert "did you mean 'resnet18-vs-50'" in capsys.readouterr().err
    assert main(["study", "run", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "broken.yaml").write_text("base: [1,\n")
    assert main(["study", "run", str(tmp_path / "broken.yaml")]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_run_rerun_skips_finished_and_keeps_one_row_per_cell(synthetic_root, tmp_path):
    spec = parse_spec(tiny_spec(synthetic_root))
    report = run_study(spec, tmp_path / "s", progress=False, options=ONE_THREAD)
    assert (report.cells, report.done, report.skipped, report.still_failed) == (4, 4, 0, [])
    runs, metrics = db_rows(tmp_path / "s")
    assert len(runs) == 4 and {s for _, s in runs} == {"done"} and len(metrics) == 12
    # default retention: best weights only
    folders = [Path(p).parent for p in map(str, (tmp_path / "s" / "runs").rglob("best.pt"))]
    assert len(folders) == 4 and not list((tmp_path / "s" / "runs").rglob("last.pt"))
    again = run_study(spec, tmp_path / "s", progress=False, options=ONE_THREAD)
    assert (again.done, again.skipped) == (0, 4)
    assert db_rows(tmp_path / "s") == (runs, metrics)
    assert len(list((tmp_path / "s" / "specs").glob("*.yaml"))) == 2  # each invocation's spec kept
    assert len(list((tmp_path / "s" / "logs").glob("*.log"))) == 4


def test_worker_resumes_restarts_and_reads_back(synthetic_root, tmp_path):
    """The three ways a cell's folder can look after a crash, each taken by the worker."""
    cfg = resolve_config("breastmnist", root=str(synthetic_root), out_dir=str(tmp_path / "ref"), name="c", **TINY)
    full = fit(cfg, progress=False)

    # 1. interrupted after epoch 0: resumed from last.pt, same metrics as uninterrupted
    cut = resolve_config("breastmnist", root=str(synthetic_root), out_dir=str(tmp_path / "cut"), name="c", **TINY)

    def stop(epoch, record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(cut, progress=False, on_epoch_end=stop)
    task = CellTask("h1", cut.to_dict(), str(tmp_path / "log1"), study_dir=str(tmp_path))
    out = run_cell(task)
    assert out["status"] == "done" and "resuming" in (tmp_path / "log1").read_text()
    resumed = RunSummary.from_dict(out["summary"])
    assert resumed.resumed_from_epoch == 1
    assert {s: (m.auc, m.acc) for s, m in resumed.metrics.items()} == {
        s: (m.auc, m.acc) for s, m in full.summary.metrics.items()
    }
    # 2. finished, but the result never reached the store: read back, not retrained
    mtime = (Path(out["run_dir"]) / "summary.json").stat().st_mtime
    again = run_cell(task)
    assert again["summary"] == out["summary"] and (Path(out["run_dir"]) / "summary.json").stat().st_mtime == mtime
    # 3. died before its first checkpoint: the folder is started again in place
    dead = resolve_config("breastmnist", root=str(synthetic_root), out_dir=str(tmp_path / "dead"), name="c", **TINY)
    folder = tmp_path / "dead" / "breastmnist_28" / "resnet18" / "c"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("half")
    out = run_cell(CellTask("h3", dead.to_dict(), str(tmp_path / "log3")))
    assert out["status"] == "done" and "starting it again" in (tmp_path / "log3").read_text()


def test_failed_cell_is_recorded_not_crashing_the_study(synthetic_root, tmp_path, capsys):
    spec = parse_spec(tiny_spec(synthetic_root, axes={"dataset": ["breastmnist"], "seed": [0]}))
    study = tmp_path / "s"
    # a training npz that exists at planning time but is not a valid file
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    spec = apply_overrides(spec, {"train_npz": str(bad)})
    report = run_study(spec, study, progress=False, max_attempts=2, options=ONE_THREAD)
    assert report.still_failed and report.done == 0
    runs, metrics = db_rows(study)
    assert runs == [(report.still_failed[0], "failed")] and metrics == []
    with ResultStore(study) as store:
        assert "bad.npz" in store.error(report.still_failed[0])


def test_median_pruning_stops_a_trial(synthetic_root, tmp_path):
    cfg = resolve_config("breastmnist", root=str(synthetic_root), out_dir=str(tmp_path), name="p", **TINY)
    task = CellTask("hp", cfg.to_dict(), str(tmp_path / "log"), median_curve=[1.01, 1.01], prune_after=0)
    out = run_cell(task)
    assert out["status"] == "pruned" and "below the median" in out["error"]
    assert not (tmp_path / "breastmnist_28" / "resnet18" / "p" / "last.pt").exists()  # final: no resume state


@pytest.mark.slow
def test_search_runs_trials_chooses_on_validation_and_resumes(synthetic_root, tmp_path, capsys):
    pytest.importorskip("optuna")
    spec_path = write_spec(
        tmp_path / "search.yaml",
        **tiny_spec(
            synthetic_root,
            axes={"dataset": ["breastmnist"], "lr": {"log_uniform": [1e-4, 1e-1]}},
            trials=3,
        ),
    )
    study = tmp_path / "s"
    assert main(["study", "run", str(spec_path), "--out-dir", str(study), "--no-progress", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "chosen trial" in out
    with ResultStore(study) as store:
        rows = store.rows(search="dataset=breastmnist")
        assert len(rows) == 3 and len({r.config["lr"] for r in rows}) == 3
        assert all(1e-4 <= r.config["lr"] <= 1e-1 for r in rows)
        best = max(rows, key=lambda r: (r.value("val", "auc"), [-ord(c) for c in r.hash]))
        assert best.hash in out
    # rerun: the 3 trials are done, nothing new is asked
    assert main(["study", "run", str(spec_path), "--out-dir", str(study), "--no-progress", "--threads", "1"]) == 0
    with ResultStore(study) as store:
        assert len(store.rows()) == 3
    # the table shows the chosen trial only: one row, n = 1
    capsys.readouterr()
    assert main(["results", "table", str(study), "--format", "json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert len(table["records"]) == 1 and table["records"][0]["n"] == 1
    # more trials on the command line extend the same search
    assert (
        main(
            [
                "study",
                "run",
                str(spec_path),
                "--out-dir",
                str(study),
                "--trials",
                "4",
                "--no-progress",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    with ResultStore(study) as store:
        assert len(store.rows()) == 4


@pytest.mark.slow
def test_import_existing_runs_matches_study_cells(synthetic_root, tmp_path, capsys):
    spec = parse_spec(tiny_spec(synthetic_root, axes={"dataset": ["breastmnist"], "seed": [0, 1]}))
    run_study(spec, tmp_path / "s", progress=False, options=ONE_THREAD)
    assert main(["results", "import", str(tmp_path / "s" / "runs"), "-o", str(tmp_path / "imported.db")]) == 0
    with ResultStore(tmp_path / "s") as a, ResultStore(tmp_path / "imported.db") as b:
        ra = {r.hash: r.metrics["test"] for r in a.rows()}
        rb = {r.hash: r.metrics["test"] for r in b.rows()}
    assert ra == rb and len(ra) == 2
    # importing twice adds no rows; a version-0 summary (first version of the engine) imports too
    run = next((tmp_path / "s" / "runs").rglob("summary.json")).parent
    legacy = json.loads((run / "summary.json").read_text())
    for key in ("format", "version", "config"):
        legacy.pop(key)
    old = tmp_path / "old" / "run"
    old.mkdir(parents=True)
    (old / "summary.json").write_text(json.dumps(legacy))
    (old / "config.yaml").write_text((run / "config.yaml").read_text())
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "summary.json").write_text("{")
    capsys.readouterr()
    target = str(tmp_path / "imported.db")
    assert main(["results", "import", str(old), str(tmp_path / "junk"), str(run.parent), "-o", target]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "truncated" in captured.err
    with ResultStore(tmp_path / "imported.db") as b:
        assert len(b.rows()) == 2  # the legacy copy is the same cell as the study's run


@pytest.mark.slow
def test_a_run_imported_while_the_study_runs_is_not_trained_again(synthetic_root, tmp_path):
    import threading
    import time

    from medmnist_lab.studies.importer import import_runs

    spec = parse_spec(tiny_spec(synthetic_root, axes={"dataset": ["breastmnist"], "seed": [0, 1]}))
    elsewhere = tmp_path / "elsewhere"  # seed 1 trained beforehand, outside the study
    run_study(apply_overrides(spec, seeds=[1]), elsewhere, progress=False, options=ONE_THREAD)
    study = tmp_path / "s"
    seed0, seed1 = (c.hash for c in expand(spec, study))
    imported: list[str] = []

    def import_once_seed_0_trains() -> None:  # what a user's `results import` does meanwhile
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (study / "results.db").exists():
                with ResultStore(study) as store:
                    if (store.status(seed0) or ("",))[0] == "running":
                        imported.extend(import_runs([elsewhere / "runs"], store, study="t").imported)
                        return
            time.sleep(0.05)

    t = threading.Thread(target=import_once_seed_0_trains)
    t.start()
    report = run_study(spec, study, progress=False, options=ONE_THREAD)
    t.join()
    assert imported == [seed1]
    assert (report.done, report.skipped) == (1, 1)
    with ResultStore(study) as store:
        assert store.status(seed1)[0] == "done"
        assert next(r for r in store.rows() if r.hash == seed1).run_dir.startswith(str(elsewhere))
    assert len(list((study / "runs").rglob("summary.json"))) == 1  # seed 0 only


@pytest.mark.slow
def test_importing_runs_outside_a_studys_grid_says_so(synthetic_root, tmp_path, capsys):
    spec = parse_spec(tiny_spec(synthetic_root, axes={"dataset": ["breastmnist"], "seed": [0]}))
    run_study(spec, tmp_path / "s", progress=False, options=ONE_THREAD)
    run_study(apply_overrides(spec, seeds=[0, 7]), tmp_path / "other", progress=False, options=ONE_THREAD)
    capsys.readouterr()
    # seed 0 is a cell of the study; seed 7 is not, and would enter its tables unannounced
    assert main(["results", "import", str(tmp_path / "other" / "runs"), "-o", str(tmp_path / "s")]) == 0
    err = capsys.readouterr().err
    assert "note: 1 of the imported runs are not cells of the study's spec" in err and "specs" in err
    assert main(["results", "import", str(tmp_path / "s" / "runs"), "-o", str(tmp_path / "s")]) == 0
    assert "note:" not in capsys.readouterr().err  # the study's own runs: nothing to say
    # a later invocation with other seeds widens the study: seed 7 is one of its cells now
    run_study(apply_overrides(spec, seeds=[7]), tmp_path / "s", progress=False, options=ONE_THREAD)
    assert main(["results", "import", str(tmp_path / "other" / "runs"), "-o", str(tmp_path / "s")]) == 0
    assert "note:" not in capsys.readouterr().err


@pytest.mark.slow
def test_cli_list_show_and_dry_run(synthetic_root, tmp_path, capsys):
    assert main(["study", "list"]) == 0
    out = capsys.readouterr().out
    for name, cells in (("resnet18-vs-50", 120), ("resolution", 40), ("augment", 70), ("synthetic", 10)):
        assert f"{name}" in out and f" {cells} " in out
    assert main(["study", "show", "augment"]) == 0
    assert "trivialaugment" in capsys.readouterr().out
    spec = write_spec(tmp_path / "s.yaml", **tiny_spec(synthetic_root))
    assert main(["study", "run", str(spec), "--out-dir", str(tmp_path / "st"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("breastmnist_28 resnet") == 4 and "of work left" in out
    assert not (tmp_path / "st").exists()  # a dry run writes nothing
    assert main(["study", "run", str(spec), "--address", "auto"]) == 2
    assert "--backend ray" in capsys.readouterr().err


@pytest.mark.slow
def test_synthetic_gan_balanced_cells_on_real_breastmnist(real_root, tmp_path):
    """`synthetic: gan-balanced` trains one GAN for the dataset, samples class-balancing images,
    and every seed's cell trains on them (a tiny GAN and classifier)."""
    spec = parse_spec(
        {
            "name": "syn",
            "base": {**TINY, "epochs": 1, "root": str(real_root), "dataset": "breastmnist", "subset": 64},
            "axes": {"synthetic": [None, "gan-balanced:epochs=1:width=4"], "seed": [0, 1]},
        }
    )
    report = run_study(spec, tmp_path / "s", progress=False, options=ONE_THREAD)
    assert report.done == 4 and not report.still_failed
    npz = list((tmp_path / "s" / "synthetic").glob("*.npz"))
    assert len(npz) == 1
    with ResultStore(tmp_path / "s") as store:
        rows = store.rows()
    with_syn = [r for r in rows if r.config["synthetic"]]
    assert len(with_syn) == 2 and all(r.config["synthetic"].startswith("gan-balanced") for r in with_syn)
    for r in with_syn:  # the run itself records the file it trained on
        summary = RunSummary.read(r.run_dir)
        assert summary.config["synthetic"] == str(npz[0]) and summary.data["n_synthetic"] > 0


def test_cli_keep_choices_match_the_engine():
    from medmnist_lab.cli.common import KEEP_CHOICES
    from medmnist_lab.engine.runfolder import KEEP_CHOICES as ENGINE_KEEP

    assert KEEP_CHOICES == ENGINE_KEEP


def test_median_curve_needs_five_finished_trials_and_takes_per_epoch_medians(synthetic_root, tmp_path):
    pytest.importorskip("optuna")
    from medmnist_lab.studies.search import STARTUP_TRIALS, plan_searches

    spec = parse_spec(
        tiny_spec(synthetic_root, axes={"dataset": ["breastmnist"], "lr": {"log_uniform": [1e-4, 1e-1]}}, trials=9)
    )
    (search,) = plan_searches(spec, tmp_path)
    with ResultStore(tmp_path) as store:
        search.attach(store, "t", max_attempts=3)
        curves = [[0.5, 0.6], [0.7, 0.9], [0.6, 0.8], [0.9, 0.7], [0.8, float("nan")], [0.1, 0.2]]
        for i, curve in enumerate(curves):
            cell = search.ask()
            run_dir = tmp_path / f"run{i}"
            run_dir.mkdir()
            (run_dir / "history.jsonl").write_text("".join(json.dumps({"val_auc": v}) + "\n" for v in curve))
            summary = {"metrics": {"val": {"auc": max(curve[0], 0)}, "test": {"auc": 0.5}}}
            outcome = {"status": "done", "summary": summary, "run_dir": str(run_dir)}
            store.record(cell.hash, outcome)
            search.tell(cell.hash, outcome)
            if i + 1 < STARTUP_TRIALS:
                assert search.median_curve() == []  # too few finished trials to prune on
        # epoch 0: median of 0.5, 0.7, 0.6, 0.9, 0.8, 0.1; epoch 1: NaN left out
        assert search.median_curve() == [pytest.approx(0.65), pytest.approx(0.7)]
        # the chosen trial is the best on validation (0.9), never on test
        chosen = search.chosen()
        assert store.rows(search=search.key)[3].hash == chosen
