"""JSON files of typed records (run summaries, GAN summaries, GAN quality): one way to write and read.

Each record class has `to_dict`/`from_dict` with a `format` and `version` key; these helpers write
its dict atomically and read it back with user-facing errors. No torch here: stores and reports
read records without the training stack.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from medmnist_lab.errors import MedMNISTLabError


class SummaryError(MedMNISTLabError):
    """A record file that is missing, truncated, foreign or newer than this code."""


def check_fields(cls: Any, data: dict[str, Any], what: str) -> dict[str, Any]:
    """`data` if every key is a field of dataclass `cls`; else one error listing the valid fields."""
    from dataclasses import fields

    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise MedMNISTLabError(f"unknown {what} fields {unknown}; valid fields: {', '.join(sorted(known))}")
    return data


def check_header(data: dict[str, Any], fmt: str, version: int, what: str) -> int:
    """The file's version; refuses another format or a newer version. No format key: version 0."""
    found = data.get("format")
    if found is not None and found != fmt:
        raise SummaryError(f"not a {what} (format {found!r}; expected {fmt!r})")
    v = int(data.get("version", 0))
    if v > version:
        raise SummaryError(f"{what} version {v} is newer than this code reads (<= {version})")
    return v


def write_json(data: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Atomically: a reader never sees half a file."""
    from medmnist_lab.outputs import write_text_atomic

    return write_text_atomic(path, json.dumps(data, indent=2))


def read_record(cls: Any, path: str | os.PathLike[str], default_name: str, what: str, missing_hint: str) -> Any:
    """`cls.from_dict` of a JSON file (or of `default_name` in a folder), every failure one clear error."""
    path = Path(path)
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise SummaryError(f"{path} does not exist: {missing_hint}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SummaryError(f"{path} is damaged or truncated ({exc})") from None
    if not isinstance(data, dict):
        raise SummaryError(f"{path} is not a {what} (a JSON object expected)")
    try:
        return cls.from_dict(data)
    except SummaryError as exc:
        raise SummaryError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SummaryError(f"{path} is not a valid {what} ({type(exc).__name__}: {exc})") from None
