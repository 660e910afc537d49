"""``affectlens monitor``: per-token emotion readings of a text or chat transcript.

Prints the tokens coloured by their top emotion and the readout at the paper's token: where the
assistant's turn opens. A ``--text`` or ``--file`` is read as a one-message user turn when the
model has a chat template (``--readout chat``), or as raw text at its last token
(``--readout text``); ``--html`` also writes a self-contained heatmap page.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from affectlens.cli.options import check_writable
from affectlens.cli.vector_options import (
    add_units_option,
    add_vector_options,
    check_units,
    load_fitting_model,
    vector_layers,
)
from affectlens.errors import AffectlensError
from affectlens.heatmap import write_html
from affectlens.models.chat import validate_messages
from affectlens.models.loading import LoadedModel
from affectlens.monitor import Content, EmotionTrace, monitor, user_turn
from affectlens.vectors import EmotionVectors

READOUTS = ("chat", "text")

PALETTE = (
    "red",
    "green",
    "blue",
    "magenta",
    "cyan",
    "yellow",
    "bright_red",
    "bright_green",
    "bright_blue",
    "bright_magenta",
    "bright_cyan",
    "orange1",
)


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``monitor`` command."""
    parser = commands.add_parser("monitor", help="read the emotion vectors of every token")
    add_vector_options(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="a text to read (see --readout)")
    source.add_argument("--file", type=Path, help="a UTF-8 text file to read (see --readout)")
    source.add_argument(
        "--chat",
        type=Path,
        help="a JSON transcript, [{role, content}, ...], read at its last assistant-turn token",
    )
    parser.add_argument(
        "--readout",
        choices=READOUTS,
        help="how a --text or --file is read. chat: as one user message in the model's chat "
        "template, read at the token where the assistant's turn opens (the paper's readout); "
        "text: as raw text, read at its last token (default: chat when the model has a chat "
        "template, else text)",
    )
    add_units_option(parser)
    parser.add_argument("--top-k", type=int, default=5, help="emotions in the readout")
    parser.add_argument("--html", type=Path, help="also write a heatmap page here (default: none)")
    parser.set_defaults(handler=_run)


def choose_readout(requested: str | None, model: LoadedModel) -> str:
    """``--readout``, or by default ``chat`` for a model with a chat template, else ``text``."""
    if requested is not None:
        return requested
    return "chat" if getattr(model.tokenizer, "chat_template", None) else "text"


def read_content(args: argparse.Namespace) -> Content:
    """The text or transcript named by ``--text``, ``--file`` or ``--chat``."""
    if args.text is not None:
        return args.text
    path: Path = args.file or args.chat
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AffectlensError(f"cannot read {path}: {exc}") from exc
    if args.file is not None:
        return raw
    try:
        messages = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise AffectlensError(f"{path} is not valid JSON ({exc})") from exc
    return validate_messages(messages)


def colours(emotions: list[str]) -> dict[str, str]:
    """A rich colour per emotion (the palette repeats for long lists)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(emotions)}


def print_readout(console: Console, top: list[tuple[str, float]], units: str, label: str) -> None:
    """A table of the top emotions and their scores, naming the units."""
    table = Table("emotion", f"score ({units})", title=label)
    for name, score in top:
        table.add_row(name, f"{score:+.2f}")
    console.print(table)


def print_trace(console: Console, trace: EmotionTrace, k: int) -> None:
    """Tokens coloured by top emotion, a legend, and the assistant-turn readout."""
    palette = colours(trace.emotions)
    top = trace.scores.argmax(dim=-1).tolist()
    text = Text()
    for token, index in zip(trace.tokens, top, strict=True):
        text.append(token, style=palette[trace.emotions[index]])
    console.print(text)
    shown = sorted({trace.emotions[i] for i in top}, key=trace.emotions.index)
    legend = Text("colours: ")
    for name in shown:
        legend.append(f"{name} ", style=palette[name])
    console.print(legend)
    where = "assistant-turn token" if trace.assistant_positions else "last token"
    position = trace.readout_position()
    label = f"{where} (#{position}, layers {', '.join(map(str, trace.layers))})"
    print_readout(console, trace.top_k(position, k), trace.units, label)


def _run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise AffectlensError("--top-k must be at least 1")
    if args.chat is not None and args.readout == "text":
        raise AffectlensError(
            "--readout text reads a --text or --file; a --chat transcript is read at its "
            "assistant turn"
        )
    content = read_content(args)
    vectors = EmotionVectors.load(args.vectors)
    layers = vector_layers(args.layers, vectors)
    check_units(args.units, vectors, args.vectors, layers)
    if args.html is not None:
        check_writable(args.html, "--html")
    model = load_fitting_model(args, vectors)
    if isinstance(content, str) and choose_readout(args.readout, model) == "chat":
        content = user_turn(content)
    trace = monitor(model, vectors, content, layers=layers, units=args.units)
    print_trace(Console(highlight=False), trace, args.top_k)
    if args.html is not None:
        print(f"wrote {write_html(trace, args.html)}")
    return 0
