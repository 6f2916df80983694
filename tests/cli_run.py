"""Run the command line in-process for tests: exit code, stdout and stderr of one call."""

from __future__ import annotations

from medmnist_lab.cli.main import main


def run_cli(capsys, *args: object) -> tuple[int, str, str]:
    """`medmnist-lab ARGS...` (each arg made a string); argparse's SystemExit counts as the exit code."""
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err
