"""The robustness study (studies.trust): a spec's `trust` key calibrates every finished cell on val and
scores it under MedMNIST-C corruptions, by library calls in the worker; the numbers are stored with the
cell and `results table` shows them with CIs and paired tests. A tiny study on synthetic files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from medmnist_lab.cli.main import main
from medmnist_lab.studies.backends import BackendOptions
from medmnist_lab.studies.rows import ResultRow
from medmnist_lab.studies.runner import run_study
from medmnist_lab.studies.spec import expand, load_spec, parse_spec
from medmnist_lab.studies.store import ResultStore
from medmnist_lab.studies.tables import default_metrics
from medmnist_lab.studies.trust import TABLE_METRICS, check_cells
from synthetic import write_npz

pytestmark = pytest.mark.usefixtures("one_thread")
ONE_THREAD = BackendOptions(threads=1)
TRUST = {
    "calibrate": "temperature",
    "conformal": 0.1,
    "corruptions": ["pixelate", "speckle_noise"],
    "severities": [1, 5],
}


@pytest.fixture(scope="module")
def trust_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BreastMNIST-shaped synthetic file with 24 val images (ALPHA 0.1 needs at least 10)."""
    root = tmp_path_factory.mktemp("trust_root")
    write_npz(root / "breastmnist.npz", "breastmnist", 28, (48, 24, 24))
    return root


def trust_spec(root: Path, **kw) -> dict:
    return {
        "name": "tiny-robustness",
        "base": {"dataset": "breastmnist", "recipe": "fast", "epochs": 1, "width": 4, "amp": False,
                 "root": str(root)},
        "axes": {"augment": ["none", "medmnist-c"], "seed": [0, 1]},
        "trust": TRUST,
        **kw,
    }  # fmt: skip


@pytest.fixture(scope="module")
def study(trust_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trust_study") / "study"
    report = run_study(parse_spec(trust_spec(trust_root), "tiny.yaml"), out, progress=False, options=ONE_THREAD)
    assert report.done == 4 and not report.still_failed
    return out


def test_every_cell_is_calibrated_and_scored_under_corruptions(study: Path) -> None:
    with ResultStore(study) as store:
        rows = store.rows(statuses=["done"])
    assert len(rows) == 4
    for r in rows:
        test = r.metrics["test"]
        for key in ("ece", "ece_calibrated", "nll", "nll_calibrated", "coverage", "set_size", "clean_be",
                    "corrupted_be", "corrupted_be_s1", "corrupted_be_s5", "corrupted_ece"):  # fmt: skip
            assert isinstance(test[key], float), key
        assert "corrupted_be_s3" not in test  # only the severities asked for
        run = Path(r.run_dir)
        cal = json.loads((run / "calibration.json").read_text())
        rob = json.loads((run / "robustness_best_test.json").read_text())
        assert cal["method"] == "temperature" and cal["conformal"]["alpha"] == 0.1
        assert test["ece_calibrated"] == cal["scores"]["test"]["after"]["ece"]
        assert test["coverage"] == cal["conformal"]["test"]["coverage"]
        assert rob["severities"] == [1, 5] and sorted(rob["corruptions"]) == ["pixelate", "speckle_noise"]
        assert rob["calibration_applied"]["used"]  # corrupted scores are of the calibrated model
        bes = [c["balanced_error"] for c in rob["cells"]]
        assert test["corrupted_be"] == pytest.approx(np.mean(bes))
        assert test["corrupted_be_s5"] == pytest.approx(np.mean([c["balanced_error"] for c in rob["cells"]
                                                                 if c["severity"] == 5]))  # fmt: skip
        assert test["clean_be"] == pytest.approx(rob["clean"]["balanced_error"])


def test_the_table_has_the_trust_columns_with_cis_and_paired_tests(study: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["results", "table", str(study), "--baseline", "augment=none"]) == 0
    out = capsys.readouterr().out
    for text in ("test ECE (", "test ECE calibrated (", "test coverage (", "test set size (", "test corrupted BE (",
                 "Δ ECE calibrated paired t-test", "Δ corrupted BE vs baseline", "(2 pairs)"):  # fmt: skip
        assert text in out, text
    assert "test corrupted BE (mean ± std [95% CI, logit-t])" in out  # a share: a bounded interval
    assert (
        main(["results", "table", str(study), "--metrics", "corrupted_be_s5,nll_calibrated", "--format", "json"]) == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["metrics"] == ["corrupted_be_s5", "nll_calibrated"]
    assert main(["results", "table", str(study), "--metrics", "corrupted_be_s3"]) == 2
    err = capsys.readouterr().err
    assert "unknown metric 'corrupted_be_s3'" in err and "corrupted_be_s5" in err and err.count("\n") == 1


def test_default_metrics_add_trust_columns_only_when_rows_have_them() -> None:
    plain = [ResultRow("a", {"seed": 0}, "done", {"test": {"auc": 0.9, "acc": 0.8, "ece": 0.1}})]
    assert default_metrics(plain) == ["auc", "acc"]  # every run has a training-time ECE: not a trust study
    trust = [
        ResultRow("b", {"seed": 0}, "done", {"test": {"auc": 0.9, "acc": 0.8, **dict.fromkeys(TABLE_METRICS, 0.1)}})
    ]
    assert default_metrics(trust) == ["auc", "acc", *TABLE_METRICS]


def test_a_finished_cell_without_trust_numbers_gets_only_the_trust_steps(trust_root: Path, tmp_path: Path) -> None:
    one = {"axes": {"seed": [0]}}
    out = tmp_path / "s"
    plain = parse_spec({k: v for k, v in trust_spec(trust_root, **one).items() if k != "trust"}, "plain.yaml")
    run_study(plain, out, progress=False, options=ONE_THREAD)
    (row,) = ResultStore(out).rows()
    assert "ece_calibrated" not in row.metrics["test"]
    history = Path(row.run_dir) / "history.jsonl"
    stamp = history.stat().st_mtime_ns
    report = run_study(parse_spec(trust_spec(trust_root, **one), "t.yaml"), out, progress=False, options=ONE_THREAD)
    assert report.done == 1
    (row,) = ResultStore(out).rows()
    assert row.status == "done" and "corrupted_be" in row.metrics["test"]
    assert history.stat().st_mtime_ns == stamp  # not trained again
    again = run_study(parse_spec(trust_spec(trust_root, **one), "t.yaml"), out, progress=False, options=ONE_THREAD)
    assert again.skipped == 1 and again.done == 0


def test_an_imported_run_gets_the_trust_steps_where_it_lies(trust_root: Path, tmp_path: Path) -> None:
    """A run trained outside the study and brought in by `results import` is not trained again:
    its trust steps run in its own folder."""
    from medmnist_lab.engine import fit, resolve_config

    config = resolve_config(
        "breastmnist", "fast", root=str(trust_root), out_dir=str(tmp_path / "runs"), name="mine",
        epochs=1, width=4, amp=False, augment="none", seed=0,
    )  # fmt: skip
    run = fit(config, progress=False).run_dir
    stamp = (run / "history.jsonl").stat().st_mtime_ns
    out = tmp_path / "s"
    assert main(["results", "import", str(run), "-o", str(out)]) == 0
    spec = trust_spec(trust_root, axes={"augment": ["none"], "seed": [0]})
    report = run_study(parse_spec(spec, "t.yaml"), out, progress=False, options=ONE_THREAD)
    assert report.done == 1
    (row,) = ResultStore(out).rows()
    assert Path(row.run_dir) == run and "corrupted_be" in row.metrics["test"]
    assert (run / "history.jsonl").stat().st_mtime_ns == stamp  # not trained again
    assert (run / "calibration.json").is_file() and not (out / "runs").exists()


@pytest.mark.parametrize(
    ("trust", "message"),
    [
        ({"calibrate": "temperature", "colour": 1}, "trust: unknown key 'colour'; trust has: calibrate"),
        ({"conformal": 1.5}, "trust: conformal is ALPHA in (0, 1)"),
        ({"conformal": 0}, "trust: conformal is ALPHA in (0, 1)"),
        ({"calibrate": "platt"}, "trust: calibrate must be one of temperature, vector"),
        ({"score": "top"}, "trust: score must be one of lac, aps, raps"),
        ({"corruptions": ["fog"]}, "unknown corruption for breastmnist 'fog'"),
        ({"corruptions": "all", "severities": "0-9"}, "severities '0-9' are not valid"),
        ("yes", "trust must be a mapping"),
    ],
)
def test_bad_trust_values_are_one_clear_line(trust, message, trust_root: Path, tmp_path: Path, capsys) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(trust_spec(trust_root, trust=trust)))
    capsys.readouterr()
    assert main(["study", "run", str(spec), "--out-dir", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "study" / "results.db").exists()  # refused before any work


def test_a_dry_run_says_the_trust_steps_are_not_estimated(trust_root: Path, tmp_path: Path, capsys) -> None:
    spec = tmp_path / "t.yaml"
    spec.write_text(yaml.safe_dump(trust_spec(trust_root, axes={"seed": [0]})))
    assert main(["study", "run", str(spec), "--out-dir", str(tmp_path / "st"), "--dry-run", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "trust steps (temperature scaling, LAC sets at ALPHA 0.1, MedMNIST-C corruptions" in out
    assert "not in the estimates" in out and not (tmp_path / "st").exists()


def test_the_builtin_robustness_study(tmp_path: Path) -> None:
    spec = load_spec("robustness")
    assert spec.trust == {"calibrate": "temperature", "conformal": 0.1, "score": "lac", "corruptions": "all",
                          "severities": "1-5"}  # fmt: skip
    cells = expand(spec, tmp_path)
    assert len(cells) == 18
    assert {(c.config.dataset, c.config.augment, c.config.recipe) for c in cells} == {
        (d, a, "fast") for d in ("breastmnist", "retinamnist") for a in ("none", "trivialaugment", "medmnist-c")
    }
    assert {c.config.seed for c in cells} == {0, 1, 2}
    check_cells(spec.trust, [c.config.dataset for c in cells], spec.source)  # every dataset has its corruptions
    assert "trust" in yaml.safe_load(yaml.safe_dump(spec.to_dict()))  # saved with the study's specs/
    assert "trust" not in load_spec("augment").to_dict()  # the other studies are unchanged


def test_a_copied_study_reads_the_same_numbers(study: Path, tmp_path: Path) -> None:
    """The trust numbers live in results.db: a copy of the store alone gives the same table."""
    shutil.copy(study / "results.db", tmp_path / "copy.db")
    with ResultStore(tmp_path / "copy.db") as store:
        rows = store.rows()
    assert all("corrupted_be" in r.metrics["test"] for r in rows)
