"""How every ``affectlens`` command explains itself: option defaults shown in ``--help``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends ``(default: …)`` to an option's help unless the help already speaks of it.

    Options whose default is ``None`` or ``False`` (a flag that is off, a value that is chosen
    elsewhere) say in their own words what happens when they are left out.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default == []
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def walk_parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser under ``parser`` (itself first), with the sub-command names leading to it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                if child.prog.split()[-1] == name:  # skip aliases: same parser, other name
                    yield from walk_parsers(child, (*path, name))


def explain_defaults(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and every sub-command parser under it the :class:`HelpFormatter`."""
    for _, each in walk_parsers(parser):
        each.formatter_class = HelpFormatter
