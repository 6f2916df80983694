"""Deprecated name of `medmnist_lab.studies` (renamed to match the CLI's `study` commands).

`import medmnist_lab.experiments.spec` and the like still work for one release: each submodule
name resolves to the same module object under `medmnist_lab.studies`, with a DeprecationWarning.
The two modules that moved elsewhere resolve to their new homes: `experiments.references` to
`metrics.references` (reference tables are metrics' data), `experiments.records` to
`studies.rows`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import Any

MOVED = {"references": "medmnist_lab.metrics.references", "records": "medmnist_lab.studies.rows"}
_PREFIX = __name__ + "."

warnings.warn(
    "medmnist_lab.experiments is now medmnist_lab.studies; the old name goes away in the next release",
    DeprecationWarning,
    stacklevel=2,
)


def _target(name: str) -> str:
    sub = name[len(_PREFIX) :]
    head, _, rest = sub.partition(".")
    new = MOVED.get(head, f"medmnist_lab.studies.{head}")
    return new + (f".{rest}" if rest else "")


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves `medmnist_lab.experiments.X` to the module object of its new name."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if not name.startswith(_PREFIX):
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(_target(spec.name))
        self._own_spec = module.__spec__  # importlib stamps the alias spec on the module next
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._own_spec  # already executed under its new name: keep its own spec


if not any(isinstance(f, _Alias) for f in sys.meta_path):
    sys.meta_path.insert(0, _Alias())


def __getattr__(name: str) -> Any:
    return importlib.import_module(f"{_PREFIX}{name}")
