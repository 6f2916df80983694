"""Downloads against a mirror served on 127.0.0.1 by the test itself (no internet)."""

from __future__ import annotations

import http.server
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from medmnist_lab.cli.main import main
from medmnist_lab.data import download as dl
from medmnist_lab.data.download import download, source_url
from medmnist_lab.data.registry import get_dataset
from medmnist_lab.data.verify import md5sum
from medmnist_lab.errors import DataFileError, DownloadError

REAL = ("breastmnist.npz", "breastmnist_64.npz", "retinamnist.npz")


class MirrorServer(http.server.ThreadingHTTPServer):
    """Serves files from `directory`. `plan` lists what to do with the next requests, one entry
    per request: "500" (fail), "truncate" (send half the body, then hang up), "ok"."""

    daemon_threads = True

    def __init__(self, directory: Path) -> None:
        super().__init__(("127.0.0.1", 0), MirrorHandler)
        self.directory = directory
        self.plan: list[str] = []
        self.ranges = True
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.sent = 0  # body bytes sent

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class MirrorHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: MirrorServer

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        action = srv.plan.pop(0) if srv.plan else "ok"
        if action == "500":
            self.send_error(500, "planned failure")
            return
        file = srv.directory / self.path.lstrip("/")
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and srv.ranges:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes" if srv.ranges else "none")
        self.end_headers()
        if action == "truncate":
            body = body[: len(body) // 2]
            self.close_connection = True
        # Counted before writing: once the bytes are out, the client (and the test's assertion)
        # may finish before this thread runs again.
        srv.sent += len(body)
        self.wfile.write(body)
        self.wfile.flush()

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl, "BASE_DELAY", 0.0)


@pytest.fixture
def mirror(real_root: Path, tmp_path: Path) -> Iterator[MirrorServer]:
    folder = tmp_path / "mirror"
    folder.mkdir()
    for name in REAL:
        shutil.copyfile(real_root / name, folder / name)
    server = MirrorServer(folder)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    assert not root.exists()
    return root


BREAST = get_dataset("breastmnist")


def _get(srv: MirrorServer, root: Path, size: int = 28, **kw: object) -> Path:
    return download(BREAST, size, root, srv.url, timeout=10, progress=False, **kw)


def _tamper(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))


# --- source URLs ---------------------------------------------------------------------------


def test_source_url_official_and_mirror() -> None:
    assert source_url(BREAST, 28) == BREAST.urls[28]
    assert source_url(BREAST, 64, None) == BREAST.urls[64]
    assert source_url(BREAST, 28, "https://m.example/medmnist") == ("https://m.example/medmnist/breastmnist.npz")
    assert source_url(BREAST, 224, "https://m.example/x/") == "https://m.example/x/breastmnist_224.npz"
    with pytest.raises(DataFileError, match="size 32 is not available"):
        source_url(BREAST, 32)


# --- success --------------------------------------------------------------------------------


def test_download_all_real_files_into_an_empty_root(mirror: MirrorServer, empty: Path, real_root: Path) -> None:
    cases = [("breastmnist", 28), ("breastmnist", 64), ("retinamnist", 28)]
    for flag, size in cases:
        info = get_dataset(flag)
        path = download(info, size, empty, mirror.url, timeout=10, progress=(size == 64))
        assert path == empty / info.filename(size)
        assert md5sum(path) == info.md5s[size] == md5sum(real_root / info.filename(size))
    assert sorted(p.name for p in empty.iterdir()) == sorted(REAL), "no .part left behind"
    assert [r[1] for r in mirror.requests] == [None, None, None]


def test_a_valid_file_is_not_fetched_again_unless_forced(mirror: MirrorServer, empty: Path) -> None:
    _get(mirror, empty)
    assert len(mirror.requests) == 1
    _get(mirror, empty)
    assert len(mirror.requests) == 1
    _get(mirror, empty, force=True)
    assert len(mirror.requests) == 2


def test_a_corrupt_file_under_the_final_name_is_replaced(mirror: MirrorServer, empty: Path) -> None:
    path = _get(mirror, empty)
    _tamper(path)
    assert md5sum(_get(mirror, empty)) == BREAST.md5s[28]
    assert len(mirror.requests) == 2


# --- failures and recovery ------------------------------------------------------------------


def test_tampered_mirror_file_is_rejected_and_nothing_is_left(mirror: MirrorServer, empty: Path) -> None:
    _tamper(mirror.directory / "breastmnist.npz")
    with pytest.raises(DownloadError) as exc:
        _get(mirror, empty)
    msg = str(exc.value)
    assert f"{mirror.url}breastmnist.npz" in msg
    assert BREAST.md5s[28] in msg and md5sum(mirror.directory / "breastmnist.npz") in msg
    assert str(empty / "breastmnist.npz") in msg
    assert "MD5 mismatch" in msg
    assert list(empty.iterdir()) == [], "neither the final file nor a .part remains"
    assert len(mirror.requests) == 1, "a fresh full download that mismatches is not repeated"


def test_truncated_transfer_is_resumed(mirror: MirrorServer, empty: Path) -> None:
    mirror.plan = ["truncate"]
    size = (mirror.directory / "breastmnist.npz").stat().st_size
    path = _get(mirror, empty)
    assert md5sum(path) == BREAST.md5s[28]
    (_, r1), (_, r2) = mirror.requests
    assert r1 is None and r2 == f"bytes={size // 2}-"
    assert mirror.sent == size, "the second request sent only the missing half"


def test_truncated_transfer_restarts_when_the_server_ignores_ranges(mirror: MirrorServer, empty: Path) -> None:
    mirror.plan = ["truncate"]
    mirror.ranges = False
    path = _get(mirror, empty)
    assert md5sum(path) == BREAST.md5s[28]
    assert len(mirror.requests) == 2 and mirror.requests[1][1] is not None  # asked, got 200


def test_server_errors_are_retried(mirror: MirrorServer, empty: Path) -> None:
    mirror.plan = ["500", "500"]
    assert md5sum(_get(mirror, empty)) == BREAST.md5s[28]
    assert len(mirror.requests) == 3


def test_retries_run_out_with_a_message_to_act_on(mirror: MirrorServer, empty: Path) -> None:
    mirror.plan = ["500"] * 10
    with pytest.raises(DownloadError) as exc:
        _get(mirror, empty, retries=2)
    msg = str(exc.value)
    assert len(mirror.requests) == 3
    assert "after 3 attempts" in msg and "HTTP 500" in msg
    assert f"{mirror.url}breastmnist.npz" in msg
    assert BREAST.md5s[28] in msg and f"place it at {empty / 'breastmnist.npz'}" in msg
    assert not (empty / "breastmnist.npz").exists()


def test_backoff_doubles(mirror: MirrorServer, empty: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(dl, "BASE_DELAY", 0.5)
    monkeypatch.setattr(dl.time, "sleep", sleeps.append)
    mirror.plan = ["500"] * 3
    _get(mirror, empty)
    assert sleeps == [0.5, 1.0, 2.0]


def test_truncations_that_never_finish_keep_the_part_for_later(mirror: MirrorServer, empty: Path) -> None:
    mirror.plan = ["truncate"] * 2
    with pytest.raises(DownloadError, match=r"truncated.*kept in .*breastmnist\.npz\.part"):
        _get(mirror, empty, retries=1)
    assert not (empty / "breastmnist.npz").exists()
    part = empty / "breastmnist.npz.part"
    kept = part.stat().st_size
    assert kept > 0
    assert md5sum(_get(mirror, empty)) == BREAST.md5s[28]  # the next run resumes it
    assert mirror.requests[-1][1] == f"bytes={kept}-"
    assert not part.exists()


def test_missing_file_on_the_mirror_is_not_retried(mirror: MirrorServer, empty: Path) -> None:
    with pytest.raises(DownloadError, match=r"HTTP 404.*breastmnist_128\.npz") as exc:
        _get(mirror, empty, size=128)
    assert len(mirror.requests) == 1
    assert BREAST.md5s[128] in str(exc.value)


def test_connection_refused(empty: Path) -> None:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with pytest.raises(DownloadError) as exc:
        download(BREAST, 28, empty, url, retries=1, timeout=5, progress=False)
    msg = str(exc.value)
    assert "cannot connect" in msg and f"{url}breastmnist.npz" in msg and BREAST.md5s[28] in msg
    assert not (empty / "breastmnist.npz").exists()


# --- resuming -------------------------------------------------------------------------------


def test_resume_from_an_existing_part(mirror: MirrorServer, empty: Path) -> None:
    data = (mirror.directory / "breastmnist.npz").read_bytes()
    empty.mkdir()
    (empty / "breastmnist.npz.part").write_bytes(data[:1000])
    path = _get(mirror, empty)
    assert md5sum(path) == BREAST.md5s[28]
    assert mirror.requests == [("/breastmnist.npz", "bytes=1000-")]
    assert mirror.sent == len(data) - 1000


def test_a_complete_part_is_finished_without_a_transfer(mirror: MirrorServer, empty: Path) -> None:
    empty.mkdir()
    shutil.copyfile(mirror.directory / "breastmnist.npz", empty / "breastmnist.npz.part")
    assert md5sum(_get(mirror, empty)) == BREAST.md5s[28]
    assert mirror.sent == 0 and len(mirror.requests) == 1  # answered 416


def test_a_stale_part_is_discarded_after_a_mismatch(mirror: MirrorServer, empty: Path) -> None:
    empty.mkdir()
    (empty / "breastmnist.npz.part").write_bytes(b"x" * 1000)  # bytes of some other file
    assert md5sum(_get(mirror, empty)) == BREAST.md5s[28]
    assert [r[1] for r in mirror.requests] == ["bytes=1000-", None]


def test_a_part_is_rewritten_when_the_server_answers_200(mirror: MirrorServer, empty: Path) -> None:
    mirror.ranges = False
    empty.mkdir()
    (empty / "breastmnist.npz.part").write_bytes(b"x" * 1000)
    assert md5sum(_get(mirror, empty)) == BREAST.md5s[28]
    assert len(mirror.requests) == 1


# --- through the CLI ------------------------------------------------------------------------


def test_cli_download_from_a_mirror(mirror: MirrorServer, empty: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["datasets", "download", "breastmnist", "--mirror", mirror.url, "--root", str(empty)])
    assert rc == 0
    assert md5sum(empty / "breastmnist.npz") == BREAST.md5s[28]
    assert f"ok  breastmnist 28px  {empty / 'breastmnist.npz'}" in capsys.readouterr().out


def test_cli_download_uses_medmnist_mirror(mirror: MirrorServer, empty: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDMNIST_MIRROR", mirror.url.rstrip("/"))
    monkeypatch.setenv("MEDMNIST_ROOT", str(empty))
    assert main(["datasets", "download", "breastmnist", "retinamnist", "--size", "28"]) == 0
    assert main(["datasets", "download", "breastmnist", "--size", "64"]) == 0
    assert sorted(p.name for p in empty.iterdir()) == sorted(REAL)
    assert all(r[0].startswith("/") and "zenodo" not in r[0] for r in mirror.requests)


def test_cli_download_failure_is_one_line_without_traceback(
    mirror: MirrorServer, empty: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _tamper(mirror.directory / "breastmnist.npz")
    rc = main(["datasets", "download", "breastmnist", "--mirror", mirror.url, "--root", str(empty)])
    err = capsys.readouterr().err
    assert rc == 2
    last = err.splitlines()[-1]  # the progress bar (cleared) also writes to stderr
    assert last.startswith("error: MD5 mismatch") and BREAST.md5s[28] in last
    assert sum(line.startswith("error:") for line in err.splitlines()) == 1
    assert "Traceback" not in err
    assert not (empty / "breastmnist.npz").exists()


def test_a_local_folder_works_as_a_file_url_mirror(mirror: MirrorServer, empty: Path) -> None:
    path = download(BREAST, 64, empty, mirror.directory.as_uri(), progress=False)
    assert md5sum(path) == BREAST.md5s[64]
    assert mirror.requests == []


# --- concurrency and environment -------------------------------------------------------------


def test_download_reads_medmnist_mirror_itself(
    mirror: MirrorServer, empty: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDMNIST_MIRROR", mirror.url)
    path = download(BREAST, 28, empty, timeout=10, progress=False)
    assert md5sum(path) == BREAST.md5s[28]
    assert [r[0] for r in mirror.requests] == ["/breastmnist.npz"]


def test_a_waiting_download_returns_the_file_the_lock_holder_finished(
    mirror: MirrorServer, empty: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty.mkdir()
    final = empty / "breastmnist.npz"
    results: list[Path] = []
    with dl._exclusive(final, "holder"):
        waiter = threading.Thread(target=lambda: results.append(_get(mirror, empty)))
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive() and results == [], "the second download waits for the lock"
        shutil.copyfile(mirror.directory / "breastmnist.npz", final)  # the holder finishes
    waiter.join(10)
    assert results == [final] and md5sum(final) == BREAST.md5s[28]
    assert mirror.requests == [], "the waiter found the verified file and fetched nothing"
    assert "waiting for another download of breastmnist 28px" in capsys.readouterr().err
    assert sorted(p.name for p in empty.iterdir()) == ["breastmnist.npz"], "no lock file left"


def test_simultaneous_downloads_of_one_file_fetch_it_once(mirror: MirrorServer, empty: Path) -> None:
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(_get(mirror, empty))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == [empty / "breastmnist.npz"] * 4
    assert md5sum(results[0]) == BREAST.md5s[28]
    assert len(mirror.requests) == 1
    assert sorted(p.name for p in empty.iterdir()) == ["breastmnist.npz"]
