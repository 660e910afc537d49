"""``affectlens chat``: an interactive chat that streams each reply with its live emotions.

The reply appears token by token as the engine produces it, with a line below it showing the
strongest emotions at the latest token (on a terminal; elsewhere the reply and the readout are
printed when the reply ends). ``--guardrail policy.yaml`` runs a guardrail on every reply and
shows each firing. Lines are read with ``input()`` until EOF or ``/quit``. Commands:
``/steer calm=0.1`` (or ``/steer`` alone to stop steering), ``/reset`` to forget the
conversation, ``/emotions`` to list the emotions. A bad command prints one error line and the
chat goes on.
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.live import Live
from rich.text import Text

from affectlens.cli.generate_cmd import add_steering_options
from affectlens.cli.monitor_cmd import print_readout
from affectlens.cli.vector_options import (
    add_units_option,
    add_vector_options,
    check_units,
    load_fitting_model,
    parse_alphas,
    vector_layers,
)
from affectlens.engine import (
    Engine,
    FinishEvent,
    GenerationRequest,
    ReadoutSpec,
    SamplingParams,
    SteeringSpec,
    TokenEvent,
)
from affectlens.errors import AffectlensError
from affectlens.guardrails import GuardrailEvent, GuardrailPolicy, load_policy
from affectlens.models.chat import Message
from affectlens.models.loading import LoadedModel
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
    parser.add_argument(
        "--guardrail",
        metavar="POLICY",
        help="a guardrail policy file (YAML or JSON) run on every reply (default: none)",
    )
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
        policy: GuardrailPolicy | None = None,
    ) -> None:
        self.model, self.vectors, self.args, self.layers = model, vectors, args, layers
        self.console, self.policy = console, policy
        self.engine = Engine(model, vectors)
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

    def request(self) -> GenerationRequest:
        """The engine request for the reply to the conversation so far."""
        layers = tuple(self.layers) if self.layers else None
        steering = SteeringSpec(dict(self.alphas), layers, self.args.positions)
        return GenerationRequest(
            messages=list(self.messages),
            sampling=SamplingParams(
                max_new_tokens=self.args.max_new_tokens,
                temperature=self.args.temperature,
                seed=self.args.seed,
            ),
            steering=steering if self.alphas else None,
            readouts=ReadoutSpec(layers=layers, units=self.args.units),
            guardrail=self.policy,
        )

    def _top(self, scores: dict[str, float]) -> list[tuple[str, float]]:
        return sorted(scores.items(), key=lambda item: -item[1])[: self.args.top_k]

    def _live_view(self, text: str, scores: dict[str, float] | None) -> Text:
        line = ", ".join(f"{e} {s:+.2f}" for e, s in self._top(scores)) if scores else "…"
        return Text.assemble(
            ("assistant> ", "bold"), text, "\n", (f"now: {line} ({self.args.units})", "dim")
        )

    def reply(self, text: str) -> None:
        """Stream the answer to one user message, then show the assistant-turn emotions.

        Readouts come from the reply's own (steered) generation passes.
        """
        self.messages.append({"role": "user", "content": text})
        handle = self.engine.submit(self.request())
        pieces: list[str] = []
        firings: list[GuardrailEvent] = []
        finish: FinishEvent | None = None
        live = self.console.is_terminal
        with Live(self._live_view("", None), console=self.console, auto_refresh=False) if live \
                else _NoLive() as view:  # fmt: skip
            for event in handle:
                if isinstance(event, TokenEvent):
                    pieces.append(event.text)
                    view.update(self._live_view("".join(pieces), event.readouts), refresh=True)
                elif isinstance(event, FinishEvent):
                    finish = event
                else:
                    firings.append(event)
        assert finish is not None
        if finish.finish_reason == "error":
            self.messages.pop()
            raise AffectlensError(f"generation failed: {finish.error}")
        self.messages.append({"role": "assistant", "content": finish.text})
        if not live:
            self.console.print(Text.assemble(("assistant> ", "bold"), finish.text))
        for event in firings:
            what = "(shadow) " if event.shadow else ""
            self.console.print(
                f"guardrail {what}{event.rule}: {event.action} at token {event.token_index}",
                markup=False,
            )
        label = "at the assistant turn" + (" (steered)" if self.alphas else "")
        top = self._top(finish.prompt_readouts or {})
        print_readout(self.console, top, self.args.units, label)


class _NoLive:
    """Stands in for ``rich.live.Live`` off a terminal: the reply is printed at the end."""

    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, *_args, **_kwargs) -> None:
        return None


def _run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise AffectlensError("--top-k must be at least 1")
    vectors = EmotionVectors.load(args.vectors)
    layers = vector_layers(args.layers, vectors)
    parse_alphas(args.steer, vectors)
    check_units(args.units, vectors, args.vectors, None)
    policy = load_policy(args.guardrail) if args.guardrail else None
    if policy is not None:
        policy.check(vectors.emotions)
    model = load_fitting_model(args, vectors)
    console = Console(highlight=False)
    session = ChatSession(model, vectors, args, layers, console, policy)
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
