"""``affectlens generate``: one generation, optionally steered, or a sweep over one alpha."""

from __future__ import annotations

import argparse
from contextlib import AbstractContextManager, nullcontext

from affectlens.cli.vector_options import (
    add_vector_options,
    load_fitting_model,
    parse_steering,
    vector_layers,
)
from affectlens.errors import AffectlensError
from affectlens.generation import Prompt, generate
from affectlens.models.loading import LoadedModel
from affectlens.steer import steer
from affectlens.vectors import EmotionVectors


def add_steering_options(parser: argparse.ArgumentParser, *, sweep: bool = False) -> None:
    """``--steer``, ``--positions``, ``--max-new-tokens``, ``--temperature`` and ``--seed``.

    With ``sweep``, one ``--steer`` pair may be a sweep, ``EMOTION=START:STOP:COUNT``.
    """
    parser.add_argument(
        "--steer",
        action="append",
        metavar="EMOTION=ALPHA",
        help="add an emotion vector, e.g. desperate=0.1 (repeatable or comma-separated; "
        + (
            "one pair may be a sweep, e.g. calm=-0.5:0.5:5, for one generation per alpha; "
            if sweep
            else ""
        )
        + "default: unsteered)",
    )
    parser.add_argument(
        "--positions",
        choices=("all", "prompt", "generated"),
        default="all",
        help="which tokens to steer",
    )
    parser.add_argument("--max-new-tokens", type=int, default=64, help="token budget per reply")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 means greedy")
    parser.add_argument("--seed", type=int, help="seed for sampling (default: unseeded)")


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``generate`` command."""
    parser = commands.add_parser("generate", help="generate text, optionally steered")
    add_vector_options(parser)
    parser.add_argument("--prompt", required=True, help="the prompt (a user message by default)")
    parser.add_argument(
        "--plain", action="store_true", help="continue the prompt as raw text, not as a chat"
    )
    add_steering_options(parser, sweep=True)
    parser.add_argument("--sweep", action="append", dest="steer", help=argparse.SUPPRESS)
    parser.set_defaults(handler=_run)


def steering(
    model: LoadedModel,
    vectors: EmotionVectors,
    alphas: dict[str, float],
    args: argparse.Namespace,
    layers: list[int] | None,
) -> AbstractContextManager:
    """``steer`` with the command's ``--positions``, or no steering at all when no alphas."""
    if not alphas:
        return nullcontext()
    return steer(model, vectors, alphas, layers=layers, positions=args.positions)


def steered_generate(
    model: LoadedModel,
    vectors: EmotionVectors,
    prompt: Prompt,
    alphas: dict[str, float],
    args: argparse.Namespace,
    layers: list[int] | None,
) -> str:
    """``generate`` under :func:`steering` with the command's sampling options."""
    with steering(model, vectors, alphas, args, layers):
        return generate(
            model,
            prompt,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            seed=args.seed,
        )


def _run(args: argparse.Namespace) -> int:
    if args.max_new_tokens < 1:
        raise AffectlensError("--max-new-tokens must be at least 1")
    vectors = EmotionVectors.load(args.vectors)
    layers = vector_layers(args.layers, vectors)
    alphas, sweep = parse_steering(args.steer, vectors)
    model = load_fitting_model(args, vectors)
    prompt: Prompt = args.prompt if args.plain else [{"role": "user", "content": args.prompt}]
    if sweep is None:
        print(steered_generate(model, vectors, prompt, alphas, args, layers))
        return 0
    emotion, values = sweep
    for alpha in values:
        setting = {**alphas, emotion: alpha}
        text = steered_generate(model, vectors, prompt, setting, args, layers)
        print(f"--- {emotion}={alpha:+.3f}")
        print(text)
    return 0
