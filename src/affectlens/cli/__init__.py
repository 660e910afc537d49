"""The ``affectlens`` command line: one sub-command module per job, all calling the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from affectlens.cli import (
    chat_cmd,
    corpus_cmd,
    experiment_cmd,
    extract_cmd,
    generate_cmd,
    monitor_cmd,
    summary_cmd,
    validate_cmd,
)
from affectlens.errors import AffectlensError

COMMAND_MODULES = [
    corpus_cmd,
    extract_cmd,
    validate_cmd,
    summary_cmd,
    monitor_cmd,
    generate_cmd,
    chat_cmd,
    experiment_cmd,
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="affectlens",
        description="Find, monitor and steer the emotion vectors of language models.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; bad input becomes one ``error:`` line and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except AffectlensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
