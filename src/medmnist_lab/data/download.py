"""Verified, resumable downloads of the official files, from the record URLs or a mirror.

Bytes are streamed into `{final}.part`; only a file whose MD5 matches the registry is renamed
to the final name (atomically, `os.replace`), so a reader never sees a partial or unverified
file there. Two processes downloading the same file take turns on `{final}.lock` (the second
one then finds the verified file and returns it) instead of writing into one `.part` together.
Standard library HTTP only (urllib), so downloads work on a bare install.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from medmnist_lab import __version__
from medmnist_lab.data.paths import MIRROR_ENV
from medmnist_lab.data.registry import DatasetInfo
from medmnist_lab.data.verify import md5sum
from medmnist_lab.errors import DownloadError

# Seconds before the first retry; doubled for each further one (tests set it to 0).
BASE_DELAY = 1.0
MIRROR_SCHEMES = ("https", "http", "file")
_CHUNK = 1 << 20
# Worth retrying: the server or the network may do better a moment later.
_RETRY_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})


class _Transient(Exception):
    """A failure that a retry may fix (connection error, 5xx, truncated transfer)."""


class _Permanent(Exception):
    """A failure that a retry will not fix (404, 403, ...)."""


def source_url(info: DatasetInfo, size: int, mirror: str | None = None) -> str:
    """The official record URL, or `{mirror}/{official file name}` when a mirror is given."""
    info.check_size(size)
    if mirror:
        return f"{mirror.rstrip('/')}/{info.filename(size)}"
    return info.urls[size]


def _verified(path: Path, md5: str) -> bool:
    return path.is_file() and md5sum(path) == md5


@dataclass(frozen=True)
class _Job:
    """One file to fetch: where from, where to, what MD5 it must have, how a user gets it by hand."""

    url: str
    final: Path
    expected: str
    manual: str
    label: str

    @property
    def part(self) -> Path:
        return self.final.with_name(self.final.name + ".part")


@contextlib.contextmanager
def _exclusive(final: Path, label: str) -> Iterator[None]:
    """Hold an exclusive lock on `{final}.lock` while downloading `final`; the file is removed after.

    A waiter that wakes up holding a lock file that the previous holder has since removed (or
    replaced) takes the lock again on the current one, so no two processes ever hold it together.
    Where `fcntl` is missing (Windows), no lock is taken.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = final.with_name(final.name + ".lock")
    announced = False
    while True:
        handle = open(path, "a")  # noqa: SIM115 - closed below, after the lock is released
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not announced:
                print(f"waiting for another download of {label} to {final} to finish", file=sys.stderr)
                announced = True
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()  # the holder before us removed this file: lock the current one
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # while still locked, so nobody locks it in between
        handle.close()


def _read(resp: http.client.HTTPResponse) -> bytes:
    try:
        return resp.read(_CHUNK)
    except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
        raise _Transient(f"connection lost mid-transfer ({exc})") from None


def _range_start(content_range: str | None) -> int | None:
    match = re.match(r"bytes\s+(\d+)-", content_range or "")
    return int(match.group(1)) if match else None


def _fetch(url: str, part: Path, timeout: float, progress: bool, label: str) -> bool:
    """Append the rest of `url` to `part` (or rewrite it); True if earlier bytes were reused."""
    have = part.stat().st_size if part.is_file() else 0
    req = urllib.request.Request(url, headers={"User-Agent": f"medmnist-lab/{__version__}"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:  # nothing left to send: the .part may already be whole
            return True
        kind = _Transient if exc.code in _RETRY_HTTP else _Permanent
        raise kind(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Transient(f"cannot connect ({getattr(exc, 'reason', exc)})") from None
    with resp:
        status = getattr(resp, "status", None) or 200  # file:// responses carry no status
        resumed = bool(have) and status == 206
        if resumed and _range_start(resp.headers.get("Content-Range")) != have:
            part.unlink(missing_ok=True)  # the server sent some other range: start clean
            raise _Transient(f"server answered a range other than bytes={have}-")
        if not resumed:
            have = 0  # 200: the server ignores ranges and sends the whole file
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        got = 0
        with (
            open(part, "ab" if resumed else "wb") as out,
            tqdm(
                total=None if expected is None else have + expected,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while block := _read(resp):
                out.write(block)
                got += len(block)
                bar.update(len(block))
    if expected is not None and got < expected:
        raise _Transient(f"transfer truncated after {have + got} bytes")
    return resumed


def download(
    info: DatasetInfo,
    size: int,
    root: str | os.PathLike[str],
    mirror: str | None = None,
    *,
    force: bool = False,
    retries: int = 4,
    timeout: float = 60,
    progress: bool = True,
) -> Path:
    """Download `info` at `size` into `root` and return the verified file's path.

    `mirror=None` uses `$MEDMNIST_MIRROR` when it is set, else the official record URL.
    A file already there with the right MD5 is kept (unless `force`). Transient failures are
    retried `retries` times with exponential backoff, resuming the `.part` file by HTTP Range
    when the server allows it. Raises `DownloadError` naming the URL, the expected MD5 and the
    path where a manually downloaded file belongs.
    """
    info.check_size(size)
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    if mirror and urllib.parse.urlsplit(mirror).scheme not in MIRROR_SCHEMES:
        raise DownloadError(
            f"mirror {mirror!r} is not a URL; give a base URL starting with "
            f"{', '.join(s + '://' for s in MIRROR_SCHEMES)} (e.g. https://host/medmnist or file:///srv/medmnist)"
        )
    final = Path(root).expanduser() / info.filename(size)
    expected = info.md5s[size]
    url = source_url(info, size, mirror)
    manual = f"download {url} by hand, check that its MD5 is {expected}, and place it at {final}" + (
        "" if mirror else "; or use a mirror: --mirror URL or $MEDMNIST_MIRROR"
    )
    if not force and _verified(final, expected):
        return final
    job = _Job(url, final, expected, manual, label=f"{info.flag} {size}px")
    with contextlib.ExitStack() as stack:
        try:  # only the folder's and the lock's own OSErrors become this message
            final.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(_exclusive(final, job.label))
        except OSError as exc:
            raise DownloadError(f"cannot write to {final.parent} ({exc}); {manual}") from None
        if not force and _verified(final, expected):
            return final  # another process finished it while this one waited for the lock
        return _download_locked(job, force=force, retries=retries, timeout=timeout, progress=progress)


def _download_locked(job: _Job, *, force: bool, retries: int, timeout: float, progress: bool) -> Path:
    """The transfer, retries and verification of `download`, run while holding the file's lock."""
    url, final, part, manual = job.url, job.final, job.part, job.manual
    if force:
        try:
            part.unlink(missing_ok=True)
        except OSError as exc:
            raise DownloadError(f"cannot write to {final.parent} ({exc}); {manual}") from None
    last = ""
    restarted = False
    attempt = 0
    while True:
        try:
            resumed = _fetch(url, part, timeout, progress, job.label)
        except _Permanent as exc:
            raise DownloadError(f"cannot download {url}: {exc}; {manual}") from None
        except _Transient as exc:
            last = str(exc)
            attempt += 1
            if attempt > retries:
                break
            time.sleep(BASE_DELAY * 2 ** (attempt - 1))
            continue
        except OSError as exc:  # local disk: full, read-only, ...
            raise DownloadError(f"cannot write {part} ({exc}); {manual}") from None
        actual = md5sum(part)
        if actual == job.expected:
            os.replace(part, final)
            return final
        part.unlink(missing_ok=True)  # never keep unverified bytes; the next try starts clean
        if resumed and not restarted:
            # The kept bytes may be from another version of the file: one clean try settles it.
            restarted = True
            continue
        raise DownloadError(
            f"MD5 mismatch for {url}: expected {job.expected}, got {actual}; the file was deleted "
            f"(the source serves a different or damaged file). {manual[0].upper()}{manual[1:]}"
        )
    received = part.stat().st_size if part.is_file() else 0
    kept = f" ({received} bytes received are kept in {part}, to resume next time)" if received else ""
    raise DownloadError(f"download of {url} failed after {retries + 1} attempts: {last}{kept}; {manual}")
