"""Lazy package exports (PEP 562), so that importing a light submodule does not import torch.

`import medmnist_lab.data.registry` runs `medmnist_lab/data/__init__.py` first; if that file
imported `data.arrays` (torch) eagerly, `medmnist-lab --help` would pay ~2-5 s for torch. A
package lists its public names and the module each lives in; the module is imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` that imports `exports[name]` (a module path) on first
    access of `name` and caches the value in the package namespace."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            try:  # a submodule, as `import medmnist_lab.engine as e; e.train` found it before
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__
