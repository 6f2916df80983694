"""The CLI's last-resort handler: a bug is one line and a log file, not a traceback."""

from __future__ import annotations

import tempfile

import pytest

from medmnist_lab.cli.main import main


def _boom() -> list[str]:
    raise RuntimeError("boom\nsecond line")


def test_unexpected_error_is_one_line_and_a_log_file(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("medmnist_lab.studies.spec.builtin_names", _boom)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["study", "list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "unexpected RuntimeError: boom (a bug" in err and "--debug" in err
    (log,) = (tmp_path / "medmnist-lab").glob("crash-*.log")
    assert str(log) in err
    text = log.read_text()
    assert "Traceback" in text and "_boom" in text and "second line" in text


def test_debug_shows_the_traceback(monkeypatch, tmp_path):
    monkeypatch.setattr("medmnist_lab.studies.spec.builtin_names", _boom)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", "study", "list"])
    assert not (tmp_path / "medmnist-lab").exists()


def test_user_errors_keep_exit_code_2(capsys):
    assert main(["study", "show", "no-such-study"]) == 2
    assert "unknown study" in capsys.readouterr().err
