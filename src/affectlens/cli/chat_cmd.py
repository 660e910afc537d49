"""``affectlens chat``: an interactive chat showing the emotions at each reply's assistant turn.

Lines are read with ``input()`` until EOF or ``/quit``. Commands: ``/steer calm=0.1`` (or
``/steer`` alone to stop steering), ``/reset`` to forget the conversation, ``/emotions`` to list
the emotions. A bad command prints one error line and the chat goes on.
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.text import Text

from affectlens.cli.generate_cmd import add_steering_options, steering
from affectlens.cli.monitor_cmd import print_readout
from affectlens.cli.vector_options import (
    add_units_option,
    add_vector_options,
    check_units,
    load_fitting_model,
    parse_alphas,
    vector_layers,
)
from affectlens.errors import AffectlensError
from affectlens.models.chat import Message
from affectlens.models.loading import LoadedModel
from affectlens.monitored_generation import generate_monitored
from affectlens.vectors import EmotionVectors

HELP = "commands: /steer EMOTION=ALPHA[,..] (alone: stop), /reset, /emotions, /quit"


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``chat`` command."""
    parser = commands.add_parser("chat", help="chat with the model and watch its emotions")
    add_vector_options(parser)
    parser.add_argument(
        "--system", help="a system message opening the conversation (default: none)"
    )
    add_units_option(parser)
    parser.add_argument("--top-k", type=int, default=3, help="emotions shown per reply")
    add_steering_options(parser)
    parser.set_defaults(handler=_run)


class ChatSession:
    """The conversation, the current steering, and one turn of the loop."""

    def __init__(
        self,
        model: LoadedModel,
        vectors: EmotionVectors,
        args: argparse.Namespace,
        layers: list[int] | None,
        console: Console,
    ) -> None:
        self.model, self.vectors, self.args, self.layers = model, vectors, args, layers
        self.console = console
        self.alphas = parse_alphas(args.steer, vectors)
        self.messages: list[Message] = self._opening()

    def _opening(self) -> list[Message]:
        return [{"role": "system", "content": self.args.system}] if self.args.system else []

    def command(self, line: str) -> None:
        """Run one ``/`` command."""
        name, _, rest = line.partition(" ")
        if name == "/steer":
            self.alphas = parse_alphas([rest], self.vectors) if rest.strip() else {}
            shown = ", ".join(f"{e}={a:+g}" for e, a in self.alphas.items()) or "off"
            self.console.print(f"steering: {shown}")
        elif name == "/reset":
            self.messages = self._opening()
            self.console.print("conversation reset")
        elif name == "/emotions":
            self.console.print(", ".join(self.vectors.emotions))
        else:
            raise AffectlensError(f"unknown command {name!r}; {HELP}")

    def reply(self, text: str) -> None:
        """Answer one user message, then show the emotions at the reply's assistant turn.

        The readout comes from the reply's own (steered) generation passes.
        """
        self.messages.append({"role": "user", "content": text})
        with steering(self.model, self.vectors, self.alphas, self.args, self.layers):
            [reply] = generate_monitored(
                self.model,
                self.vectors,
                [self.messages],
                layers=self.layers,
                units=self.args.units,
                max_new_tokens=self.args.max_new_tokens,
                temperature=self.args.temperature,
                seed=self.args.seed,
            )
        self.messages.append({"role": "assistant", "content": reply.text})
        self.console.print(Text.assemble(("assistant> ", "bold"), reply.text))
        label = "at the assistant turn" + (" (steered)" if self.alphas else "")
        print_readout(self.console, reply.top_k(self.args.top_k), reply.units, label)


def _run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise AffectlensError("--top-k must be at least 1")
    vectors = EmotionVectors.load(args.vectors)
    layers = vector_layers(args.layers, vectors)
    parse_alphas(args.steer, vectors)
    check_units(args.units, vectors, args.vectors, None)
    model = load_fitting_model(args, vectors)
    console = Console(highlight=False)
    session = ChatSession(model, vectors, args, layers, console)
    console.print(HELP, markup=False)
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            break
        if line == "/quit":
            break
        if not line:
            continue
        try:
            if line.startswith("/"):
                session.command(line)
            else:
                session.reply(line)
        except AffectlensError as exc:
            console.print(f"error: {exc}", markup=False)
    return 0
