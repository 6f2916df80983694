"""HTML reports (issue 10): built from tiny real runs and a tiny real study, checked in a real
headless browser (Debian's chromium driven by Playwright), and the TensorBoard / MLflow trackers
checked with the real libraries."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import torch
import yaml

from medmnist_lab.cli.main import main

pytestmark = pytest.mark.slow  # the module site fixture trains runs and builds a report: ~100 s on 2 busy cores
SCREENSHOTS_ENV = "MEDMNIST_LAB_SCREENSHOTS"  # a folder: the test also copies its screenshots there
RUN_FIGURES = ("Learning curves", "Confusion matrix", "Precision and recall", "Reliability diagram", "ROC curves",
               "Misclassified test images", "The dataset")  # fmt: skip


def cli(*args: object) -> int:
    try:
        return int(main([str(a) for a in args]) or 0)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.fixture(scope="module")
def site(real_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny real runs (binary BreastMNIST, 5-class RGB RetinaMNIST), a damaged copy, a tiny real
    study (2 models x 2 augmentations x 2 seeds, run with `study run --report`), and `report` of all."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("site")
    runs = base / "runs"
    tiny = ["--width", "4", "--epochs", "2", "--batch-size", "64", "--precision", "fp32", "--no-progress",
            "--root", real_root]  # fmt: skip
    assert cli("train", "breastmnist", *tiny, "--out-dir", runs, "--name", "breast", "--report") == 0
    assert cli("train", "retinamnist", *tiny, "--out-dir", runs, "--name", "retina", "--subset", "300") == 0
    damaged = runs / "breastmnist_28" / "resnet18" / "damaged"
    shutil.copytree(runs / "breastmnist_28" / "resnet18" / "breast", damaged, ignore=shutil.ignore_patterns("report"))
    (damaged / "history.jsonl").unlink()
    text = (damaged / "summary.json").read_text()
    (damaged / "summary.json").write_text(text[: len(text) // 2])
    spec = base / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "base": {"dataset": "breastmnist", "epochs": 1, "width": 4, "subset": 64, "amp": False,
                         "root": str(real_root), "batch_size": 32},
                "axes": {"model": ["resnet18", "resnet50"], "augment": ["none", "simple"], "seed": [0, 1]},
            }
        )
    )  # fmt: skip
    study = base / "study"
    assert (
        cli("study", "run", spec, "--out-dir", study, "--workers", "1", "--threads", "1", "--no-progress", "--report")
        == 0
    )
    gan = study / "synthetic" / "gan-tiny"  # where a synthetic study keeps its GAN
    gan_args = ["--epochs", "1", "--width", "4", "--nz", "8", "--batch-size", "64", "--no-progress"]
    assert (
        cli("gan", "train", "breastmnist", "--root", real_root, "--out-dir", gan.parent, "--name", gan.name, *gan_args)
        == 0
    )
    classifier = runs / "breastmnist_28" / "resnet18" / "breast" / "best.pt"
    assert (
        cli(
            "gan", "evaluate", gan / "last.pt", "--classifier", classifier, "--no-cas", "--n", "64", "--root", real_root
        )
        == 0
    )
    out = base / "report"
    assert cli("report", runs, study, "--out-dir", out, "--no-progress", "--root", real_root) == 0
    return {"base": base, "runs": runs, "study": study, "out": out, "damaged": damaged}


def page_for(out: Path, folder: str, name: str) -> Path:
    found = [p for p in (out / folder).glob("*.html") if name in p.name]
    assert len(found) == 1, (name, sorted(p.name for p in (out / folder).glob("*.html")))
    return found[0]


def test_a_run_page_has_every_plot_as_png_and_svg(site: dict[str, Path]) -> None:
    for name in ("breast", "retina"):
        html = page_for(site["out"], "runs", f"-{name}").read_text()
        for caption in RUN_FIGURES:
            assert caption in html, (name, caption)
        assert "Missing or damaged" not in html
    assets = site["out"] / "assets"
    pngs = list(assets.glob("*.png"))
    assert pngs and all(p.stat().st_size > 1000 for p in pngs)
    plots = [p for p in pngs if not p.name.startswith(("montage-",)) and "mistakes" not in p.name]
    assert all(p.with_suffix(".svg").is_file() for p in plots if "augment" not in p.name and "gan" not in p.name)
    # `train --report` wrote the run's own report too
    assert (site["runs"] / "breastmnist_28" / "resnet18" / "breast" / "report" / "index.html").is_file()


def test_a_damaged_run_gets_a_page_that_says_what_is_missing(site: dict[str, Path]) -> None:
    html = page_for(site["out"], "runs", "-damaged").read_text()
    assert "Missing or damaged" in html
    assert "history.jsonl is missing: no learning curves" in html
    assert "summary.json is damaged or truncated" in html
    assert "ROC curves" in html and "Learning curves" not in html  # what can be drawn still is
    index = (site["out"] / "index.html").read_text()
    assert "damaged" in index and "breast" in index and "retina" in index


def test_the_study_page_has_cis_references_tests_and_figures(site: dict[str, Path]) -> None:
    html = page_for(site["out"], "studies", "study").read_text()
    for text in ("AUC 95% CI", "AUC official", "Paired differences to the baseline", "paired t-test",
                 "DeLong per seed", "Models side by side", "Augmentation preview: simple",
                 "test AUC per method, 95% CI", "GAN samples gan-tiny", "FID "):  # fmt: skip
        assert text in html, text
    assert html.count("../runs/") >= 8  # every study run links to its page
    assert (site["study"] / "report" / "index.html").is_file()  # `study run --report`


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("the browser test needs Debian's chromium: apt-get install chromium (.ci/run installs it)")
    return path


def test_the_report_in_a_real_headless_browser(site: dict[str, Path], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    out = site["out"]
    pages = [out / "index.html", *sorted((out / "runs").glob("*.html")), *sorted((out / "studies").glob("*.html"))]
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        tab.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        tab.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        tab.on("requestfailed", lambda r: errors.append(f"failed request: {r.url}"))
        for page in pages:
            tab.goto(page.as_uri())
            tab.wait_for_load_state("load")
            widths = tab.eval_on_selector_all("img", "imgs => imgs.map(i => [i.getAttribute('src'), i.naturalWidth])")
            assert widths or page.name == "index.html", page
            assert all(w > 0 for _, w in widths), (page.name, [s for s, w in widths if w == 0])
            for href in tab.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"):
                url = urlparse(href)
                assert url.scheme == "file", f"{page.name} links outside the report: {href}"
                assert Path(unquote(url.path)).is_file(), f"{page.name}: broken link {href}"
        assert not errors, errors
        # Sorting: click "test AUC" of the runs table on the index, then again.
        tab.goto((out / "index.html").as_uri())
        runs_table = tab.locator("#runs table")
        header = runs_table.locator("th", has_text="test AUC")
        column = list(runs_table.locator("th").all_inner_texts()).index("test AUC")

        def values() -> list[float]:
            cells = runs_table.locator(f"tbody tr td:nth-child({column + 1})").all_inner_texts()
            return [float(c) for c in cells if c.strip() not in ("–", "")]

        header.click()
        assert values() == sorted(values()) and len(values()) >= 10
        header.click()
        assert values() == sorted(values(), reverse=True)
        tab.screenshot(path=str(shots / "report-index.png"), full_page=True)
        tab.goto(page_for(out, "runs", "-breast").as_uri())
        tab.screenshot(path=str(shots / "report-run.png"), full_page=True)
        tab.goto(page_for(out, "studies", "study").as_uri())
        tab.screenshot(path=str(shots / "report-study.png"), full_page=True)
        browser.close()
    for shot in shots.glob("*.png"):
        assert shot.stat().st_size > 20_000
    if os.environ.get(SCREENSHOTS_ENV):  # refresh docs/ on request
        for shot in shots.glob("*.png"):
            shutil.copyfile(shot, Path(os.environ[SCREENSHOTS_ENV]) / shot.name)


def test_tensorboard_and_mlflow_trackers_with_the_real_libraries(
    real_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["train", "breastmnist", "--root", real_root, "--width", "4", "--epochs", "3", "--precision", "fp32",
            "--no-progress", "--out-dir", "runs", "--name", "tracked",
            "--log", "tensorboard", "--log", "mlflow"]  # fmt: skip
    assert cli(*args) == 0
    run = tmp_path / "runs" / "breastmnist_28" / "resnet18" / "tracked"
    summary = json.loads((run / "summary.json").read_text())
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "val/auc", "val/acc", "lr", "final/test/auc"} <= set(tags)
    assert [e.step for e in events.Scalars("val/auc")] == [0, 1, 2]
    assert events.Scalars("final/test/auc")[0].value == pytest.approx(summary["metrics"]["test"]["auc"], abs=1e-6)
    # MLflow: the default local store under ./mlruns
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    client = mlflow.tracking.MlflowClient()
    experiment = client.get_experiment_by_name("medmnist-lab")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == "tracked" and found.info.status == "FINISHED"
    assert found.data.params["dataset"] == "breastmnist" and found.data.params["epochs"] == "3"
    assert len(client.get_metric_history(found.info.run_id, "val_auc")) == 3
    assert found.data.metrics["final_test_auc"] == pytest.approx(summary["metrics"]["test"]["auc"])
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"summary.json", "config.yaml", "history.jsonl", "model_card.md"} <= artifacts


def test_the_runs_table_shows_every_field_the_study_varies() -> None:
    from medmnist_lab.report.site import run_table_rows
    from medmnist_lab.studies.rows import ResultRow

    base = {"dataset": "retinamnist", "size": 28, "model": "resnet18", "augment": "trivialaugment", "lr": 0.001}
    rows = [
        ResultRow(f"h{i}", {**base, "seed": seed, "synthetic": syn}, "done", {"test": {"auc": 0.7, "acc": 0.5}})
        for i, (seed, syn) in enumerate([(0, None), (0, "/studies/s/synthetic/retina-balanced.npz")])
    ]
    table = run_table_rows(rows)
    # the two runs differ in `synthetic` only: without its column they would read the same
    assert [r["synthetic"] for r in table] == [None, "retina-balanced.npz"]
    assert "lr" not in table[0]  # a field every run shares stays out
    assert list(table[0])[:6] == ["run", "dataset", "size", "model", "augment", "synthetic"]
