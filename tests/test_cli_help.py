"""Every ``affectlens`` option explains itself, for every sub-command (including future ones)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from affectlens import __version__
from affectlens.cli import build_parser, main
from affectlens.cli.help import walk_parsers

PARSERS = list(walk_parsers(build_parser()))
OPTIONS = [
    pytest.param(parser, action, id=" ".join(("affectlens", *path, action.option_strings[-1])))
    for path, parser in PARSERS
    for action in parser._actions
    if action.option_strings and action.help is not argparse.SUPPRESS
]


def test_the_walk_reaches_nested_sub_commands():
    paths = {" ".join(path) for path, _ in PARSERS}
    assert {"extract", "monitor", "corpus generate", "experiment dose"} <= paths


@pytest.mark.parametrize(("parser", "action"), OPTIONS)
def test_every_option_has_help_and_shows_its_default(parser, action):
    assert action.help and action.help.strip(), "option without help text"
    rendered = parser._get_formatter()._get_help_string(action)
    one_of_required = any(
        action in group._group_actions and group.required
        for group in parser._mutually_exclusive_groups
    )
    if action.required or one_of_required or action.nargs == 0:
        return
    if action.default is None or action.default is False or action.default == []:
        assert "default" in action.help.lower(), (
            "an optional value without a default must say in its help what leaving it out does "
            "(e.g. '(default: all layers)')"
        )
    else:
        assert "default" in rendered.lower()


@pytest.mark.parametrize(
    ("path", "parser"), [pytest.param(p, q, id=" ".join(p) or "affectlens") for p, q in PARSERS]
)
def test_every_parser_prints_its_help(path, parser, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    assert "usage: affectlens" in capsys.readouterr().out


def test_version():
    out = subprocess.run(
        [sys.executable, "-m", "affectlens", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout.strip() == f"affectlens {__version__}"


def _spellings(parser: argparse.ArgumentParser) -> set[str]:
    visible = [a for a in parser._actions if a.help is not argparse.SUPPRESS]
    return {s for action in visible for s in action.option_strings}


def test_one_idea_one_spelling():
    """Layers are ``--layers`` and a sweep is ``--steer EMOTION=START:STOP:COUNT`` everywhere."""
    for path, parser in PARSERS:
        spellings = _spellings(parser)
        assert "--layer" not in spellings or "--layers" not in spellings, path
        for action in parser._actions:
            visible = action.help is not argparse.SUPPRESS
            if visible:
                assert "--sweep" not in action.option_strings, path
                assert "--layer" not in action.option_strings, path
