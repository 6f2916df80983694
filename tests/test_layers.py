"""The package's shape: layers that only import downward (the import-linter contract in
pyproject.toml, also run by `.ci/run`) and no circle of modules, function-local imports included."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    group.append(m)
                    if m == node:
                        break
                if len(group) > 1:
                    cycles.append(sorted(group))
    return cycles


def test_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for a, b in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")]:
        graph.add_import(importer=a, imported=b)
    assert module_cycles(graph) == [["p.a", "p.b", "p.c"]]


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    graph = grimp.build_graph("medmnist_lab", exclude_type_checking_imports=True)
    assert len(graph.modules) > 80
    assert module_cycles(graph) == []


def test_import_linter_contract_is_kept() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("lint-imports (the import-linter package, a dev dependency) is not installed")
    done = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "1 kept, 0 broken" in done.stdout


def test_the_old_package_name_still_imports_with_a_deprecation_warning() -> None:
    import importlib
    import warnings

    sys.modules.pop("medmnist_lab.experiments", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = importlib.import_module("medmnist_lab.experiments.spec")
        moved = importlib.import_module("medmnist_lab.experiments.references")
    import medmnist_lab.metrics.references as references
    import medmnist_lab.studies.spec as spec

    assert old is spec and moved is references
    assert spec.__spec__.name == "medmnist_lab.studies.spec"  # the alias leaves the module's own spec
    assert any(issubclass(w.category, DeprecationWarning) and "medmnist_lab.studies" in str(w.message) for w in caught)
