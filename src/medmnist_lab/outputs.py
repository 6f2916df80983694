"""Where results are written: checked before any work starts, written atomically, never over data.

Every command that writes a file the user names calls `check_output_file` first (a typo in the
path must not cost an hour of training), and `check_output_dir` for a folder it will create. An
existing file is replaced only with `overwrite=True` (`--overwrite`); a dataset file of the data
root never, whatever the flag: those files are the one thing a user cannot regenerate offline.
Every file the project writes goes through `atomic_path`: it gives the writer a temporary name in
the target's folder that becomes the target in one `os.replace`, so a crash, a Ctrl-C or a full
disk leaves the old file (or none), never half a file, and no temporary file behind.
`write_text_atomic` and `write_bytes_atomic` are the same for writers that hold the whole content;
writers that need a file name (pandas, matplotlib, PIL, torch) use `atomic_path` itself.

One rule for missing folders, files and folders alike: an output may go into folders that do not
exist yet, if they can be created (the nearest existing one is a writable folder). The checks
create nothing; a file's folders are made when it is written (`atomic_path`), a run or report
folder when its command starts writing, so a command refused for a bad input leaves no trace.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterator
from pathlib import Path

from medmnist_lab.errors import MedMNISTLabError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class OutputError(MedMNISTLabError):
    """An output path that cannot or must not be written."""


def _creatable_folder(folder: Path, what: str, path: Path) -> None:
    """`folder` is a writable folder, or can be made: the nearest of it and its parents that exists is one."""
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        under = "not a folder" if probe == folder else "so no folder can be created under it"
        raise OutputError(f"{what} {path}: {probe} is a file, {under}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path}: folder {probe} is not writable")


def check_output_file(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    suffixes: tuple[str, ...] = (),
    protected: Collection[Path] = (),
    what: str = "output",
) -> Path:
    """`path` if a new file may be written there; else one `OutputError` saying why.

    Checks: the suffix (when `suffixes` is given), not a folder, its folder is writable or can be
    created, not one of the `protected` files (resolved paths: the callers pass the data root's
    dataset files, `data.paths.dataset_files(root)`), and no existing file unless `overwrite`.
    Nothing is created here: `atomic_path` makes missing folders when writing.
    """
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise OutputError(f"{what} '{path}' must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; give the path of a file to write")
    _creatable_folder(path.parent, what, path)
    if path.resolve() in protected:
        raise OutputError(
            f"{what} {path} is a dataset file name in the data root; such files are never written or "
            "overwritten by an output (choose another path)"
        )
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputError(f"{what} {path} already exists; pass --overwrite to replace it, or choose another path")
    return path


def check_output_dir(path: str | os.PathLike[str], *, what: str = "output folder") -> Path:
    """`path` if it is a folder or can be created as one: its nearest existing ancestor is a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file, not a folder")
    _creatable_folder(path, what, path)
    return path


def temp_name(path: Path) -> Path:
    """The temporary name of a write to `path`: hidden, per process, removed by `remove_temp_files`."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path` (its folders made first if missing); on success it
    replaces `path`, on any error it is removed.

    A failed write (a full disk: ENOSPC, or EFBIG under a file-size limit) leaves the previous
    file as it was and raises an `OutputError` that says so.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        kept = f"the previous {path.name} is unchanged" if path.exists() else f"nothing was written to {path}"
        raise OutputError(f"could not write {path} ({exc.strerror or exc}); {kept}") from None
    finally:
        # Not missing_ok: a parent that is a file makes unlink raise NotADirectoryError, which
        # would hide the OutputError that says what went wrong.
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (see `atomic_path`); returns `path`.

    UTF-8 unless told otherwise, not the locale's encoding: the same file on every machine.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return path


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically (see `atomic_path`); returns `path`."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def remove_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary files of writes killed midway (`.NAME.PID.tmp` of dead processes); returns them."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)):
            continue  # another live process is writing it right now
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
