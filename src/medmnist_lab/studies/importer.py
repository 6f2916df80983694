"""`results import`: ingest finished run folders (from `train`, scripts, other studies) into a store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.studies.spec import cell_hash
from medmnist_lab.studies.store import ResultStore


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)  # hashes
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (folder, why)


def find_runs(paths: list[Path]) -> list[Path]:
    """Run folders (holding summary.json) at or below each path."""
    out: list[Path] = []
    for p in paths:
        if not p.exists():
            raise MedMNISTLabError(f"{p} does not exist; give run folders or folders that contain them")
        if (p / "summary.json").is_file():
            out.append(p)
        else:
            out += sorted(s.parent for s in p.rglob("summary.json"))
    return out


def import_runs(paths: list[Path], store: ResultStore, study: str = "imported") -> ImportReport:
    from medmnist_lab.engine import RunConfig
    from medmnist_lab.engine.summary import RunSummary

    report = ImportReport()
    for run_dir in find_runs(paths):
        try:
            summary = RunSummary.read(run_dir)
            raw = summary.config
            if raw is None:  # a version-0 summary: the config is in config.yaml beside it
                raw = yaml.safe_load((run_dir / "config.yaml").read_text())
            config = RunConfig.from_dict(raw)  # canonical, so it hashes like a study cell
        except (MedMNISTLabError, OSError, yaml.YAMLError, TypeError) as exc:
            report.skipped.append((str(run_dir), str(exc)))
            continue
        h = cell_hash(config.to_dict())
        store.add_cell(h, config.to_dict(), study)
        store.record(
            h,
            {
                "status": "done",
                "summary": summary.to_dict(),
                "run_dir": str(run_dir.resolve()),
                "finished": (run_dir / "summary.json").stat().st_mtime,
                "host": None,
            },
        )
        report.imported.append(h)
    return report


def outside_the_spec(study_dir: Path, hashes: list[str]) -> list[str]:
    """The imported hashes that are cells of none of the study folder's saved specs (study_dir/specs);
    none when it holds no spec or a search. Such runs (other seeds, another recipe) still enter the
    study's tables; the caller says so."""
    from medmnist_lab.studies.spec import expand, load_spec

    paths = sorted((study_dir / "specs").glob("*.yaml")) if study_dir.is_dir() else []
    # every invocation is saved, mostly the same spec again: expand each distinct one once
    distinct = {p.read_text(): p for p in paths}.values()
    cells: set[str] = set()
    for path in distinct:  # every invocation's grid: `--seeds 0 1 2`, then `--seeds 3 4`, is one study
        try:
            spec = load_spec(str(path))
            if spec.is_search:
                return []
            cells |= {c.hash for c in expand(spec, study_dir)}
        except MedMNISTLabError:  # a spec this version cannot read: nothing to compare with
            return []
    return [h for h in hashes if h not in cells] if paths else []
