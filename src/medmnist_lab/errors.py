"""User-facing errors.

Anything a user can cause (a bad name, a missing or corrupt file, a wrong flag) raises a
`MedMNISTLabError` subclass with a message that names the bad value and what would be valid.
The CLI prints that message without a traceback and exits non-zero; `assert` is kept for
internal invariants only.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MedMNISTLabError(Exception):
    """Base class for errors caused by user input or the environment, shown without traceback."""

    exit_code = 2


class UnknownNameError(MedMNISTLabError, KeyError):
    """A name that is not in a registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DataFileError(MedMNISTLabError):
    """A dataset file that is missing, corrupt or does not match the registry."""


class DownloadError(MedMNISTLabError):
    """A download that failed or could not be verified."""


class CheckpointError(MedMNISTLabError):
    """A checkpoint that cannot be used for the requested operation."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> UnknownNameError:
    """Build an error for an unknown registry name that lists the choices and the closest one."""
    choices = sorted(valid)
    close = difflib.get_close_matches(name.lower(), choices, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return UnknownNameError(f"unknown {kind} '{name}'{hint}; choose one of: {', '.join(choices)}")
