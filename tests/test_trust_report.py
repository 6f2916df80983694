"""Report pages of a robustness study (report/trust.py): reliability before/after calibration, the
risk-coverage curve, conformal set sizes and severity curves on run pages, the robustness table on the
study page; checked in the real headless browser as tests/test_report.py does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from medmnist_lab.cli.main import main
from medmnist_lab.data.arrays import load_split
from medmnist_lab.report import trust
from medmnist_lab.studies.backends import BackendOptions
from medmnist_lab.studies.runner import run_study
from medmnist_lab.studies.spec import parse_spec
from medmnist_lab.studies.store import ResultStore
from synthetic import write_npz
from test_report import chromium

pytestmark = pytest.mark.usefixtures("one_thread")
TRUST_FIGURES = (
    "Reliability diagrams (test) before and after calibration",
    "Risk–coverage curve (test)",
    "Conformal prediction-set sizes (test), LAC at ALPHA 0.1",
    "MedMNIST-C: balanced error (test) against severity",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny robustness study on a synthetic file (2 augmentations x 2 seeds, 2 corruptions at
    severities 1 and 5), `evaluate` on one cell (an eval record), and `report` of the study."""
    base = tmp_path_factory.mktemp("trust_site")
    root = base / "data"
    write_npz(root / "breastmnist.npz", "breastmnist", 28, (48, 24, 24))
    spec = {
        "name": "tiny-robustness",
        "base": {"dataset": "breastmnist", "recipe": "fast", "epochs": 1, "width": 4, "amp": False, "root": str(root)},
        "axes": {"augment": ["none", "medmnist-c"], "seed": [0, 1]},
        "trust": {"conformal": 0.1, "corruptions": ["pixelate", "speckle_noise"], "severities": [1, 5]},
    }
    study = base / "study"
    run_study(parse_spec(spec, "tiny.yaml"), study, progress=False, options=BackendOptions(threads=1))
    with ResultStore(study) as store:
        runs = sorted(Path(r.run_dir) for r in store.rows())
    assert len(runs) == 4
    assert main(["evaluate", str(runs[0] / "best.pt"), "--root", str(root), "--device", "cpu"]) == 0
    out = base / "report"
    assert main(["report", str(study), "--out-dir", str(out), "--no-progress", "--root", str(root)]) == 0
    return {"root": root, "study": study, "runs": runs, "out": out}


def test_run_pages_draw_the_trust_figures(site: dict[str, Path]) -> None:
    pages = sorted((site["out"] / "runs").glob("*.html"))
    assert len(pages) == 4
    for page in pages:
        html = page.read_text()
        for caption in TRUST_FIGURES:
            assert caption in html, (page.name, caption)
        assert "Missing or damaged" not in html, page.name
    evaluated = [p for p in pages if site["runs"][0].name in p.name]
    assert len(evaluated) == 1  # its curve is the eval record's (calibrated by the calibration.json)
    for page in pages:
        svg = (site["out"] / "assets" / f"{page.stem}-risk-coverage.svg").read_text()
        assert ("evaluate, calibrated" if page in evaluated else "stored predictions, calibrated") in svg
    assert all((site["out"] / "assets" / f"{p.stem}-{n}.svg").is_file() for p in pages
               for n in ("reliability-calibrated", "risk-coverage", "set-sizes", "severity"))  # fmt: skip


def test_figures_are_computed_from_the_stored_predictions_as_calibrate_did(site: dict[str, Path]) -> None:
    run = site["runs"][1]
    records = trust.read_records(run)
    assert records.calibration is not None and records.robustness is not None
    (csv,) = run.glob("breastmnist_test_*.csv")
    scores = np.loadtxt(csv, delimiter=",", ndmin=2)[:, 1:]
    labels = load_split("breastmnist", "test", 28, site["root"]).labels.numpy()
    before, after = trust.reliability_pair(records.calibration, labels, scores)
    test = records.calibration["scores"]["test"]
    assert before["ece"] == pytest.approx(test["before"]["ece"], abs=1e-9)
    assert after["ece"] == pytest.approx(test["after"]["ece"], abs=1e-6)
    sizes = trust.conformal_set_sizes(records.calibration, scores)
    assert sizes.mean() == pytest.approx(records.calibration["conformal"]["test"]["mean_set_size"])
    vector = {**records.calibration, "parameters": {"method": "vector", "weight": [1.0, 2.0], "bias": [0.0, 0.0]}}
    with pytest.raises(ValueError, match="needs the logits"):
        trust.calibrated_scores(vector, scores)


def test_the_study_page_has_the_robustness_table(site: dict[str, Path]) -> None:
    (page,) = (site["out"] / "studies").glob("*.html")
    html = page.read_text()
    for text in ("Robustness and calibration (test)", "clean BE mean ± std", "corrupted BE 95% CI",
                 "ECE calibrated mean ± std", "coverage mean ± std", "clean vs corrupted balanced error",
                 "Paired differences to the baseline"):  # fmt: skip
        assert text in html, text
    assert ">corrupted BE<" in html  # a paired comparison of the corrupted balanced error


def test_a_damaged_record_is_listed_and_the_rest_still_drawn(site: dict[str, Path], tmp_path: Path) -> None:
    from medmnist_lab.report.runs import draw_run, read_run

    run = tmp_path / "run"
    shutil.copytree(site["runs"][2], run)
    (run / "calibration.json").write_text("{not json")
    page = read_run(run, "damaged")
    assets = tmp_path / "assets"
    assets.mkdir()
    draw_run(page, assets, str(site["root"]), {})
    assert any("calibration.json is unreadable" in p for p in page.problems)
    captions = " ".join(f.caption for f in page.figures)
    assert "MedMNIST-C" in captions and "ROC curves" in captions and "before and after" not in captions
    json.loads((run / "robustness_best_test.json").read_text())  # untouched


def test_the_trust_pages_in_a_real_headless_browser(site: dict[str, Path]) -> None:
    from playwright.sync_api import sync_playwright

    out = site["out"]
    pages = [*sorted((out / "runs").glob("*.html")), *sorted((out / "studies").glob("*.html"))]
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
            shown = tab.eval_on_selector_all(
                "figure",
                "fs => fs.map(f => [f.querySelector('figcaption').innerText, f.querySelector('img').naturalWidth])",
            )
            assert all(w > 0 for _, w in shown), (page.name, [c for c, w in shown if w == 0])
            captions = " ".join(c for c, _ in shown)
            wanted = TRUST_FIGURES if "/runs/" in page.as_uri() else ("clean vs corrupted balanced error",)
            for caption in wanted:
                assert caption.lower() in captions.lower(), (page.name, caption)
            assert tab.locator("section.problems").count() == 0, page.name
            for href in tab.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"):
                url = urlparse(href)
                assert url.scheme == "file" and Path(unquote(url.path)).is_file(), f"{page.name}: broken link {href}"
        browser.close()
    assert not errors, errors
