"""`--help` of every command and sub-command (discovered from the parser, not listed here): exit 0,
no traceback, examples in every leaf command, help text for every option, a default shown once and
never as a Python list."""

from __future__ import annotations

import argparse
import re

import pytest

from medmnist_lab.cli.main import build_parser
from test_cli_grammar import run


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(argv path, parser, is a leaf) for the parser and everything under it."""
    children = _subcommands(parser)
    yield path, parser, not children
    for name, child in children.items():
        yield from walk(child, (*path, name))


COMMANDS = [(path, leaf) for path, _, leaf in walk(build_parser()) if path]


def test_the_walk_finds_the_groups_and_their_commands() -> None:
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {"datasets montage", "gan train", "results table", "study run", "train", "report"} <= paths
    assert len(paths) >= 20


@pytest.mark.parametrize(("path", "leaf"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_exits_0_and_shows_examples(path: tuple[str, ...], leaf: bool, capsys) -> None:
    rc, out, err = run(capsys, *path, "--help")
    assert rc == 0, err
    assert "Traceback" not in out + err and "usage:" in out
    if leaf:
        assert "examples:" in out, f"`{' '.join(path)} --help` has no examples"
    assert "['" not in out and '["' not in out and "[]" not in out, out  # a default printed as a Python list
    assert "%%" not in out, out  # a help text or description escaped for argparse where it is not formatted


@pytest.mark.parametrize("group", [p for p, leaf in COMMANDS if not leaf], ids=lambda p: " ".join(p))
def test_a_bare_group_prints_its_help(group: tuple[str, ...], capsys) -> None:
    rc, out, err = run(capsys, *group)
    assert rc == 2 and "Traceback" not in out + err
    assert "usage:" in out and "SUBCOMMAND" in out


def test_top_level_help(capsys) -> None:
    rc, out, err = run(capsys, "--help")
    assert rc == 0 and "COMMAND" in out and not err
    assert run(capsys)[0] == 0


def option_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help of one option as --help prints it (the formatter's default appended, % expanded)."""
    formatter = parser._get_formatter()
    return formatter._expand_help(action) if action.help else ""


@pytest.mark.parametrize(("path", "leaf"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_option_has_help_and_shows_its_default_once(path: tuple[str, ...], leaf: bool) -> None:
    parser = next(p for q, p, _ in walk(build_parser()) if q == path)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        text = option_help(parser, action)
        assert text.strip(), f"`{' '.join(path)}` {name} has no help text"
        assert len(re.findall(r"\bdefault\b", text, flags=re.IGNORECASE)) <= 1, f"{name}: {text}"
        assert "['" not in text and "[]" not in text and "()" not in text, f"{name}: {text}"
