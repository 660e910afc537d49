"""The ``affectlens`` command line: one sub-command module per job, all calling the library."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from affectlens import __version__
from affectlens.cli import (
    audit_cmd,
    chat_cmd,
    corpus_cmd,
    experiment_cmd,
    extract_cmd,
    generate_cmd,
    monitor_cmd,
    serve_cmd,
    summary_cmd,
    validate_cmd,
)
from affectlens.cli.help import HelpFormatter, explain_defaults
from affectlens.cli.progress_bars import render_progress
from affectlens.errors import AffectlensError
from affectlens.progress import use_progress

COMMAND_MODULES = [
    corpus_cmd,
    extract_cmd,
    validate_cmd,
    summary_cmd,
    monitor_cmd,
    generate_cmd,
    chat_cmd,
    experiment_cmd,
    serve_cmd,
    audit_cmd,
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="affectlens",
        description="Find, monitor and steer the emotion vectors of language models.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(commands)
    explain_defaults(parser)
    return parser


class _StderrLines(logging.Handler):
    """The library's log records as lines on stderr (``warning:`` marks warnings and worse)."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "warning: " if record.levelno >= logging.WARNING else ""
        print(f"{prefix}{record.getMessage()}", file=sys.stderr, flush=True)


@contextmanager
def _library_logs_on_stderr() -> Iterator[None]:
    """Within the block, the ``affectlens`` loggers' INFO and worse records go to stderr."""
    package = logging.getLogger("affectlens")
    handler, level = _StderrLines(logging.INFO), package.level
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; bad input becomes one ``error:`` line and exit status 2."""
    args = build_parser().parse_args(argv)
    if not sys.stderr.isatty():  # the hub's tqdm bars are \r-redrawn noise in a pipe or log
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        with _library_logs_on_stderr(), use_progress(render_progress):
            return int(args.handler(args) or 0)
    except AffectlensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
