"""Result tables, reference numbers and trial selection, on synthetic ResultRows (no training)."""

from __future__ import annotations

import csv
import io
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as st
from sklearn.metrics import roc_auc_score

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.metrics.official import Metrics
from medmnist_lab.metrics.references import REFERENCES, get_reference
from medmnist_lab.metrics.stats import delong_test, format_p, paired_difference, summarize
from medmnist_lab.metrics.submission import write_submission
from medmnist_lab.studies import tables
from medmnist_lab.studies.rows import ResultRow
from medmnist_lab.studies.table_format import build_table
from medmnist_lab.studies.tables import best_trial, compute_table, default_group_by

TEST_AUC = {  # (model, seed) -> test AUC; resnet50 gains about +0.02 on every seed
    ("resnet18", 0): 0.900,
    ("resnet18", 1): 0.880,
    ("resnet18", 2): 0.910,
    ("resnet50", 0): 0.921,
    ("resnet50", 1): 0.899,
    ("resnet50", 2): 0.931,
}
TEST_ACC = {  # noise only: no consistent difference
    ("resnet18", 0): 0.800,
    ("resnet18", 1): 0.790,
    ("resnet18", 2): 0.820,
    ("resnet50", 0): 0.810,
    ("resnet50", 1): 0.775,
    ("resnet50", 2): 0.822,
}


def make_row(
    model: str,
    seed: int,
    auc: float | None = None,
    acc: float | None = None,
    *,
    status: str = "done",
    dataset: str = "dermamnist",
    size: int = 28,
    run_dir: str | None = None,
    val_auc: float = 0.9,
    **config: Any,
) -> ResultRow:
    auc = TEST_AUC.get((model, seed), 0.5) if auc is None else auc
    acc = TEST_ACC.get((model, seed), 0.5) if acc is None else acc
    cfg = {
        "dataset": dataset,
        "size": size,
        "model": model,
        "seed": seed,
        "lr": 1e-3,
        "milestones": [0.5, 0.75],  # unhashable config values must not break grouping
        "name": f"{model}-s{seed}",
        "out_dir": "runs",
        "device": "cpu",
        **config,
    }
    return ResultRow(
        hash=f"{model}-{dataset}-{size}-{seed}",
        config=cfg,
        status=status,
        metrics={"test": {"auc": auc, "acc": acc}, "val": {"auc": val_auc, "acc": 0.5}},
        run_dir=run_dir,
    )


HEADER = "| model | n | test AUC (mean ± std [95% CI, logit-t]) | test ACC (mean ± std [95% CI, logit-t]) |"
COMPARISON_HEADER = (
    " Δ AUC vs baseline [95% CI] | Δ AUC paired t-test | Δ ACC vs baseline [95% CI] | Δ ACC paired t-test |"
)


def two_models() -> list[ResultRow]:
    return [make_row(m, s) for m in ("resnet18", "resnet50") for s in range(3)]


def md_row(text: str, first: str) -> list[str]:
    """The cells of the markdown row whose first cell is `first`."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == first:
            return cells
    raise AssertionError(f"no row starting with {first!r} in:\n{text}")


# ---------------------------------------------------------------------------------------------
# Groups and summaries


def test_markdown_groups_by_varying_fields_with_mean_std_ci() -> None:
    rows = two_models()
    assert default_group_by(rows) == ["model"]  # seed, name vary too but never define a group
    text = build_table(rows)
    s = summarize([TEST_AUC[("resnet18", k)] for k in range(3)], bounded=True)
    cells = md_row(text, "resnet18")
    assert cells[1] == "3"
    assert cells[2] == f"{s.mean:.3f} ± {s.std:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}]"
    # mean .8967, sd .01528; the interval is the t-interval (t(.975, 2) = 4.303) of the logits, mapped
    # back: [0.854, 0.929] (the plain t-interval would be [0.859, 0.935])
    assert cells[2] == "0.897 ± 0.015 [0.854, 0.929]"
    assert text.splitlines()[0] == HEADER


def test_only_done_rows_count() -> None:
    rows = [*two_models(), make_row("resnet18", 3, auc=0.1, status="failed"), make_row("resnet18", 4, status="running")]
    text = build_table(rows, ["model"])
    assert md_row(text, "resnet18")[1] == "3"
    # the failed run's 0.1 is not in the mean: the same cell as without it
    assert md_row(text, "resnet18")[2] == "0.897 ± 0.015 [0.854, 0.929]"
    assert "excluded: 1 failed, 1 running" in text


def test_single_run_group_has_no_interval() -> None:
    text = build_table([make_row("resnet18", 0), make_row("resnet50", 0)], ["model"])
    assert md_row(text, "resnet50")[2] == "0.921"


def test_groups_by_several_fields_sorted_numerically() -> None:
    rows = [make_row("resnet18", s, size=size) for size in (224, 28, 64) for s in range(2)]
    data = compute_table(rows, ["size", "model"])
    assert [g.group["size"] for g in data.groups] == [28, 64, 224]  # numbers, not "224" < "28"
    assert [len(g.rows) for g in data.groups] == [2, 2, 2]


def test_missing_metric_values_are_counted_per_metric() -> None:
    rows = two_models()
    rows[0] = ResultRow(rows[0].hash, rows[0].config, "done", {"test": {"acc": 0.8}})  # no AUC
    data = compute_table(rows, ["model"])
    assert data.groups[0].summaries["auc"].n == 2 and data.groups[0].summaries["acc"].n == 3
    assert "(n=2)" in md_row(build_table(rows, ["model"]), "resnet18")[2]


# ---------------------------------------------------------------------------------------------
# Baseline comparisons


def test_baseline_comparison_is_paired_by_seed() -> None:
    # Shuffled rows and one extra resnet50 seed the baseline lacks: only seeds 0-2 pair.
    rows = [*two_models()[::-1], make_row("resnet50", 7, auc=0.5, acc=0.5)]
    data = compute_table(rows, ["model"], baseline=("model", "resnet18"))
    base, other = data.groups
    assert base.is_baseline and base.comparison is None
    comp = other.comparison
    assert comp is not None and comp.n_pairs == 3 and comp.seeds == [0, 1, 2]
    a = [TEST_AUC[("resnet50", k)] for k in range(3)]
    b = [TEST_AUC[("resnet18", k)] for k in range(3)]
    assert comp.diffs["auc"].p == pytest.approx(st.ttest_rel(a, b).pvalue, rel=1e-10)
    assert comp.diffs["auc"].mean == pytest.approx(np.mean(np.subtract(a, b)))


def test_verdicts_read_significant_and_not_significant() -> None:
    text = build_table(two_models(), ["model"], baseline=("model", "resnet18"))
    cells = md_row(text, "resnet50")
    auc = paired_difference(
        [TEST_AUC[("resnet50", k)] for k in range(3)], [TEST_AUC[("resnet18", k)] for k in range(3)]
    )
    acc = paired_difference(
        [TEST_ACC[("resnet50", k)] for k in range(3)], [TEST_ACC[("resnet18", k)] for k in range(3)]
    )
    assert auc.significant and not acc.significant  # the fixture's premise
    assert cells[4] == f"+0.020 [{auc.ci_low:+.3f}, {auc.ci_high:+.3f}] (3 pairs)"
    assert cells[5] == f"significant ({format_p(auc.p)})"
    assert cells[7] == f"not significant ({format_p(acc.p)})"
    assert md_row(text, "resnet18")[4] == "baseline"
    assert "paired by seed" in text


def test_pairing_ignores_bookkeeping_fields_but_not_settings() -> None:
    # Another out_dir/device/name still pairs; another lr is another experiment and does not.
    rows = [make_row("resnet18", s) for s in range(3)]
    rows += [make_row("resnet50", 0, out_dir="elsewhere", device="cuda", name="x")]
    rows += [make_row("resnet50", 1, lr=0.1), make_row("resnet50", 2, lr=0.1)]
    data = compute_table(rows, ["model"], baseline=("model", "resnet18"))
    assert data.groups[1].comparison.seeds == [0]


def test_baseline_matches_other_group_fields() -> None:
    rows = [make_row(m, s, size=size) for m in ("resnet18", "resnet50") for s in range(2) for size in (28, 64)]
    rows = [r for r in rows if not (r.config["model"] == "resnet18" and r.config["size"] == 64)]
    data = compute_table(rows, ["model", "size"], baseline=("model", "resnet18"))
    by = {(g.group["model"], g.group["size"]): g for g in data.groups}
    assert by[("resnet50", 28)].comparison.n_pairs == 2
    assert by[("resnet50", 64)].comparison is None and by[("resnet50", 64)].comparison_note == "no baseline group"


def test_baseline_value_given_as_text() -> None:
    rows = [make_row("resnet18", s, size=size) for size in (28, 64) for s in range(2)]
    data = compute_table(rows, ["size"], baseline=("size", "28"))  # as a CLI would pass it
    assert data.baseline == ("size", 28) and data.groups[0].is_baseline


def test_non_binary_task_gets_no_delong(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any) -> None:
        raise AssertionError("labels must not be loaded for a multi-class table")

    monkeypatch.setattr(tables, "_labels", fail)
    text = build_table(two_models(), ["model"], baseline=("model", "resnet18"))
    assert "DeLong" not in text
    # what the comparison holds instead: the paired t-test columns, filled for the non-baseline group
    assert text.splitlines()[0] == HEADER + COMPARISON_HEADER
    assert md_row(text, "resnet50")[4:] == [
        "+0.020 [+0.017, +0.023] (3 pairs)",
        "significant (p=0.0011)",
        "-0.001 [-0.033, +0.031] (3 pairs)",
        "not significant (p=0.9)",
    ]


# ---------------------------------------------------------------------------------------------
# DeLong inside the table (binary task, prediction files written here)


def write_run(tmp: Path, model: str, seed: int, labels: np.ndarray, skill: float, root: Path) -> ResultRow:
    rng = np.random.default_rng(100 * seed + int(skill * 10))
    p1 = 1 / (1 + np.exp(-(skill * (2 * labels - 1) + rng.normal(size=labels.size))))
    scores = np.stack([1 - p1, p1], axis=1)  # (N, 2) softmax-like, as the engine writes them
    auc = float(roc_auc_score(labels, p1))
    acc = float(np.mean((p1 > 0.5) == labels))
    run_dir = tmp / "breastmnist_28" / model / f"{model}-s{seed}"
    write_submission(run_dir, "breastmnist", 28, "test", scores, Metrics(auc, acc), run=run_dir.name)
    return make_row(
        model, seed, auc, acc, dataset="breastmnist", run_dir=str(run_dir), root=str(root), name=run_dir.name
    )


@pytest.fixture
def binary_runs(synthetic_root: Path, tmp_path: Path) -> tuple[list[ResultRow], np.ndarray]:
    labels = np.load(synthetic_root / "breastmnist.npz")["test_labels"][:, 0].astype(np.int64)  # uint8: 0 - 1 = 255
    rows = [
        write_run(tmp_path, m, s, labels, k, synthetic_root)
        for m, k in (("resnet18", 0.5), ("resnet50", 2.0))
        for s in range(3)
    ]
    return rows, labels


def scores_of(row: ResultRow) -> np.ndarray:
    (path,) = Path(row.run_dir).glob("*.csv")
    return np.loadtxt(path, delimiter=",")[:, -1]


def test_delong_per_seed_pair_from_prediction_files(binary_runs: tuple[list[ResultRow], np.ndarray]) -> None:
    rows, labels = binary_runs
    doc = json.loads(build_table(rows, ["model"], baseline=("model", "resnet18"), fmt="json"))
    comp = doc["records"][1]["comparison"]
    assert [c["seed"] for c in comp["delong"]] == [0, 1, 2]
    assert [c["auc_a"] > c["auc_b"] for c in comp["delong"]] == [True] * 3  # the stronger model wins every seed
    for cell, seed in zip(comp["delong"], range(3), strict=True):
        ours, base = rows[3 + seed], rows[seed]
        want = delong_test(labels, scores_of(ours), scores_of(base))
        assert cell["p"] == pytest.approx(want.p, rel=1e-12)
        assert cell["auc_a"] == pytest.approx(ours.value("test", "auc"), abs=1e-12)  # the files are the runs'
        assert cell["auc_b"] == pytest.approx(base.value("test", "auc"), abs=1e-12)
    text = build_table(rows, ["model"], baseline=("model", "resnet18"))
    first = delong_test(labels, scores_of(rows[3]), scores_of(rows[0]))
    assert f"seed 0: {first.diff:+.3f} {format_p(first.p)}" in md_row(text, "resnet50")[-1]
    assert "DeLong" in text.splitlines()[0]


def test_delong_missing_files_are_reported_not_raised(binary_runs: tuple[list[ResultRow], np.ndarray]) -> None:
    rows, _ = binary_runs
    for p in Path(rows[4].run_dir).glob("*.csv"):  # resnet50 seed 1 lost its predictions
        p.unlink()
    no_dir = make_row("resnet50", 2, dataset="breastmnist", root=rows[0].config["root"], name="resnet50-s2")
    rows = [*rows[:5], no_dir]
    data = compute_table(rows, ["model"], baseline=("model", "resnet18"))
    cells = data.groups[1].comparison.delong
    assert cells[0].result is not None
    assert cells[1].result is None and "no test predictions" in cells[1].note
    assert cells[2].result is None and "has no run_dir" in cells[2].note
    text = build_table(rows, ["model"], baseline=("model", "resnet18"))
    assert "1/1 significant" in text or "0/1 significant" in text
    assert "no test predictions" in text


def test_delong_missing_data_file_is_reported(binary_runs: tuple[list[ResultRow], np.ndarray], tmp_path: Path) -> None:
    rows, _ = binary_runs
    data = compute_table(rows, ["model"], baseline=("model", "resnet18"), data_root=tmp_path / "empty")
    notes = [c.note for c in data.groups[1].comparison.delong]
    assert len(notes) == 3  # one per seed pair, each with its note
    assert all(n is not None and "labels unavailable" in n and "not found" in n for n in notes)
    # the table says the one reason once, not once per seed
    text = build_table(rows, ["model"], baseline=("model", "resnet18"), data_root=tmp_path / "empty")
    row = next(line for line in text.splitlines() if line.startswith("| resnet50"))
    assert row.count("labels unavailable") == 1 and "not run (labels unavailable" in row and "seed 0" not in row


def test_delong_can_be_switched_off(binary_runs: tuple[list[ResultRow], np.ndarray]) -> None:
    rows, _ = binary_runs
    data = compute_table(rows, ["model"], baseline=("model", "resnet18"), delong=False)
    assert data.groups[1].comparison.delong is None
    assert "DeLong" not in build_table(rows, ["model"], baseline=("model", "resnet18"), delong=False)


# ---------------------------------------------------------------------------------------------
# Reference columns


def test_reference_columns_and_source() -> None:
    text = build_table(two_models(), ["model"], reference="official")
    cells = md_row(text, "resnet18")
    assert cells[4:6] == ["0.917", "0.735"]  # dermamnist,resnet18_28 in medmnist_v2_benchmark.csv
    assert md_row(text, "resnet50")[4:6] == ["0.913", "0.735"]
    assert "Reference (official): MedMNIST v2 official benchmark" in text
    doc = json.loads(build_table(two_models(), ["model"], reference="official", fmt="json"))
    assert doc["reference"]["source"] == source_header("medmnist_v2_benchmark.csv")
    assert doc["records"][0]["reference"] == {"auc": 0.917, "acc": 0.735}


def test_reference_blank_when_absent() -> None:
    text = build_table(two_models(), ["model"], reference="medmnist-plus")
    assert md_row(text, "resnet18")[4:6] == ["", "0.734"]  # MedMNIST+ has no AUC; ACC 0.7338
    assert md_row(text, "resnet50")[4:6] == ["", ""]  # only ResNet-18 there


# ---------------------------------------------------------------------------------------------
# Formats


def test_csv_has_one_column_per_number() -> None:
    text = build_table(two_models(), ["model"], baseline=("model", "resnet18"), reference="official", fmt="csv")
    recs = list(csv.DictReader(io.StringIO(text)))
    assert [r["model"] for r in recs] == ["resnet18", "resnet50"]
    s = summarize([TEST_AUC[("resnet50", k)] for k in range(3)], bounded=True)
    assert float(recs[1]["auc_mean"]) == s.mean and float(recs[1]["auc_ci_high"]) == s.ci_high
    assert recs[1]["auc_diff_significant"] == "True" and recs[1]["acc_diff_significant"] == "False"
    assert float(recs[1]["reference_auc"]) == 0.913
    assert recs[0]["auc_diff_p"] == "" and recs[0]["is_baseline"] == "True"


def test_json_holds_all_numbers_and_no_nan() -> None:
    rows = [make_row("resnet18", 0), make_row("resnet50", 0)]  # n = 1: std and CI are NaN
    text = build_table(rows, ["model"], baseline=("model", "resnet18"), fmt="json")
    assert "NaN" not in text
    doc = json.loads(text)
    auc = doc["records"][0]["metrics"]["auc"]
    assert auc["n"] == 1 and auc["mean"] == 0.9 and auc["std"] is None and auc["ci_low"] is None
    diff = doc["records"][1]["comparison"]["metrics"]["auc"]
    assert diff["p"] is None and diff["significant"] is False and diff["verdict"] == "untested (n=1)"


def test_latex_is_a_booktabs_tabular() -> None:
    rows = [make_row("resnet_18", s) for s in range(2)]  # '_' must be escaped
    text = build_table(rows, ["model"], fmt="latex")
    lines = text.splitlines()
    assert lines[0] == r"\begin{tabular}{lrll}" and lines[1] == r"\toprule" and lines[3] == r"\midrule"
    assert r"resnet\_18 & 2 & " in text and r"$\pm$" in text and r"95\% CI" in text
    assert r"\bottomrule" in text and r"\end{tabular}" in text


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"group_by": ["modle"]}, r"unknown group-by field 'modle'; choose from the config fields: .*model"),
        ({"metrics": ["f1"]}, r"unknown metric 'f1' for split 'test'; choose one of: acc, auc"),
        ({"fmt": "html"}, r"unknown table format 'html'; choose one of: md, csv, latex, json"),
        ({"split": "dev"}, r"unknown split 'dev'; choose one of: train, val, test"),
        ({"baseline": ("model", "resnet19")}, r"baseline model='resnet19' is not among.*resnet18, resnet50"),
        ({"baseline": ("lr", 0.001)}, r"baseline field 'lr' must be one of the group-by fields: model"),
        ({"reference": "offical"}, r"unknown reference table 'offical' \(did you mean 'official'\?\)"),
    ],
)
def test_bad_arguments_name_the_value_and_choices(kwargs: dict[str, Any], match: str) -> None:
    args = {"group_by": ["model"], **kwargs}
    with pytest.raises(MedMNISTLabError, match=match):
        build_table(two_models(), **args)


def test_no_done_rows() -> None:
    rows = [make_row("resnet18", 0, status="failed"), make_row("resnet18", 1, status="pending")]
    with pytest.raises(MedMNISTLabError, match=r"no rows with status 'done' among 2 rows \(1 failed, 1 pending\)"):
        build_table(rows)


# ---------------------------------------------------------------------------------------------
# best_trial


def test_best_trial_uses_validation_and_lowest_hash_on_ties() -> None:
    rows = [
        make_row("resnet18", 0, val_auc=0.91, auc=0.99),  # best test AUC must not matter
        make_row("resnet18", 1, val_auc=0.95, auc=0.80),
        make_row("resnet50", 1, val_auc=0.95, auc=0.70),
        make_row("resnet50", 2, val_auc=0.99, status="failed"),
    ]
    assert best_trial(rows).hash == "resnet18-dermamnist-28-1"  # tie at 0.95: lowest hash
    assert best_trial(rows, maximize=False).hash == "resnet18-dermamnist-28-0"


def test_best_trial_refuses_test_objective_and_missing_metric() -> None:
    rows = two_models()
    with pytest.raises(MedMNISTLabError, match="must not be chosen on test metrics"):
        best_trial(rows, ("test", "auc"))
    with pytest.raises(MedMNISTLabError, match=r"no done row has a finite val 'loss'; metrics on val: acc, auc"):
        best_trial(rows, ("val", "loss"))
    with pytest.raises(MedMNISTLabError, match="no rows with status 'done'"):
        best_trial([make_row("resnet18", 0, status="failed")])


# ---------------------------------------------------------------------------------------------
# Reference tables


REFERENCE_CSVS = {  # reference table -> its CSV file under metrics/reference
    "official": "medmnist_v2_benchmark.csv",
    "seed": "seed_results.csv",
    "medmnist-plus": "medmnist_plus_acc.csv",
    "official-script": "official_script_runs.csv",
}


def header_lines(csv_name: str) -> list[str]:
    """A reference CSV's leading '# ' lines (package data), without the '# '."""
    text = (resources.files("medmnist_lab.metrics") / "reference" / csv_name).read_text("utf-8")
    header = []
    for line in text.splitlines():
        if not line.startswith("# "):
            break
        header.append(line[2:])
    return header


def source_header(csv_name: str) -> str:
    """The source text a reference table reports: its CSV's header lines, joined."""
    return " ".join(header_lines(csv_name))


def test_reference_registry_and_sources() -> None:
    assert sorted(REFERENCES.names()) == ["medmnist-plus", "official", "official-script", "seed"]
    assert "Yang et al., Scientific Data 2023" in get_reference("official").source
    assert "EE228" in get_reference("seed").source
    assert "Doerrich et al." in get_reference("medmnist-plus").source
    for name, csv_name in REFERENCE_CSVS.items():  # the CSV's '# ' header, without the '# '
        assert get_reference(name).source == source_header(csv_name)


@pytest.mark.parametrize(
    ("table", "key", "expected"),
    [
        ("official", ("pathmnist", "resnet18", 28, "auc"), 0.983),
        ("official", ("chestmnist", "resnet50", 224, "acc"), 0.948),
        ("official", ("PathMNIST", "ResNet18", 224, "AUC"), 0.989),  # case-insensitive
        ("official", ("pathmnist", "auto-sklearn", 28, "acc"), 0.716),
        ("official", ("pathmnist", "resnet18", 64, "auc"), None),
        ("seed", ("breastmnist", "resnet18", 28, "auc"), 0.49603),
        ("seed", ("organamnist", "resnet50", 28, "acc"), 0.91233),  # v1 organmnist_axial
        ("seed", ("organmnist_axial", "resnet50", 28, "acc"), 0.91233),
        ("seed", ("breastmnist", "resnet18", 224, "auc"), None),
        ("medmnist-plus", ("bloodmnist", "resnet18", 224, "acc"), 0.9894),
        ("medmnist-plus", ("bloodmnist", "resnet18", 28, "acc"), 0.9193),
        ("medmnist-plus", ("bloodmnist", "resnet18", 28, "auc"), None),
        ("medmnist-plus", ("bloodmnist", "resnet50", 224, "acc"), None),
    ],
)
def test_reference_values(table: str, key: tuple[str, str, int, str], expected: float | None) -> None:
    assert get_reference(table).value(*key) == expected


def test_reference_tables_cover_every_dataset() -> None:
    from medmnist_lab.data.registry import FLAGS_2D, FLAGS_3D

    official = get_reference("official")
    flags = {k[0] for k in official.entries()}
    assert flags == set(FLAGS_2D) | set(FLAGS_3D)
    for flag in FLAGS_2D:
        for size in (28, 224):
            for metric in ("auc", "acc"):
                v = official.value(flag, "resnet18", size, metric)
                assert v is not None and 0 < v <= 1
    for flag in FLAGS_3D:  # the official 3D table: 28^3, looked up with the convolution type
        for model in ("resnet18", "resnet50"):
            for conv in ("2.5d", "3d", "acs"):
                assert all(0 < official.value(flag, model, 28, m, conv) <= 1 for m in ("auc", "acc"))
        assert official.value(flag, "resnet18", 28, "auc") is None  # no 2D model on volumes
    assert official.value("adrenalmnist3d", "resnet18", 28, "auc", "acs") == 0.839
    assert len({k[0] for k in get_reference("seed").entries()}) == 10  # the seed had no BloodMNIST/TissueMNIST


def test_reference_csvs_are_package_data_with_their_source_header() -> None:
    counts = {name: len(header_lines(name)) for name in REFERENCE_CSVS.values()}
    assert counts == {
        "medmnist_v2_benchmark.csv": 4,
        "seed_results.csv": 1,
        "medmnist_plus_acc.csv": 3,
        "official_script_runs.csv": 3,
    }
    assert header_lines("seed_results.csv") == [
        "Results reported in the seed report (EE228 Teamwork: MedMNIST, 2021): single runs, MedMNIST v1 files, "
        "test split."
    ]


def test_nan_metric_is_not_a_value() -> None:
    rows = [*two_models(), make_row("resnet18", 5, auc=math.nan)]
    data = compute_table(rows, ["model"])
    assert data.groups[0].summaries["auc"].n == 3 and len(data.groups[0].rows) == 4


def test_delong_across_sizes_of_one_dataset_checks_the_labels_match(tmp_path: Path) -> None:
    """28 vs 64 px files hold the same samples: DeLong applies, after checking their labels agree."""
    from synthetic import write_npz

    root = tmp_path / "root"
    write_npz(root / "breastmnist.npz", "breastmnist", 28)
    write_npz(root / "breastmnist_64.npz", "breastmnist", 64)  # same seed and counts: same labels
    labels = np.load(root / "breastmnist.npz")["test_labels"][:, 0].astype(np.int64)

    def run(size: int, seed: int, skill: float) -> ResultRow:
        rng = np.random.default_rng(10 * seed + size)
        p1 = 1 / (1 + np.exp(-(skill * (2 * labels - 1) + rng.normal(size=labels.size))))
        auc, acc = float(roc_auc_score(labels, p1)), float(np.mean((p1 > 0.5) == labels))
        run_dir = tmp_path / f"breastmnist_{size}" / f"s{seed}"
        write_submission(
            run_dir, "breastmnist", size, "test", np.stack([1 - p1, p1], 1), Metrics(auc, acc), run_dir.name
        )
        return make_row(
            "resnet18", seed, auc, acc, dataset="breastmnist", size=size, run_dir=str(run_dir), root=str(root)
        )

    rows = [run(size, s, k) for size, k in ((28, 0.5), (64, 2.0)) for s in range(3)]
    doc = json.loads(build_table(rows, ["size"], baseline=("size", 28), fmt="json"))
    cells = doc["records"][1]["comparison"]["delong"]
    assert len(cells) == 3 and all("p" in c and c["auc_a"] > c["auc_b"] for c in cells)
    # a 64 px file whose test labels differ: reported in the cell, not compared
    write_npz(root / "breastmnist_64.npz", "breastmnist", 64, seed=5)
    doc = json.loads(build_table(rows, ["size"], baseline=("size", 28), fmt="json"))
    notes = [c.get("note", "") for c in doc["records"][1]["comparison"]["delong"]]
    assert len(notes) == 3, notes
    assert all("label their test samples differently" in n for n in notes), notes


def test_official_script_reference_is_the_mean_of_its_runs() -> None:
    from importlib import resources

    table = get_reference("official-script")
    text = (resources.files("medmnist_lab.metrics") / "reference" / "official_script_runs.csv").read_text()
    rows = list(csv.DictReader(io.StringIO("\n".join(line for line in text.splitlines() if not line.startswith("#")))))
    breast = [r for r in rows if r["dataset"] == "breastmnist"]
    assert breast, "the official script's BreastMNIST runs"
    for metric in ("auc", "acc"):
        mean = sum(float(r[metric]) for r in breast) / len(breast)
        assert table.value("breastmnist", "resnet18", 28, metric) == pytest.approx(mean)
    assert table.value("breastmnist", "resnet50", 28, "auc") is None
    assert "official MedMNIST v2 training script" in table.source and "mean of the runs" in table.source
