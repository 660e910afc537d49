"""``affectlens corpus check|generate``: keep the story corpus honest, and grow it."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from affectlens.corpus.concepts import load_concepts
from affectlens.corpus.stories import default_stories_path, load_stories
from affectlens.corpus.validate import check_corpus, split_counts
from affectlens.errors import AffectlensError


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``corpus`` command group."""
    corpus = commands.add_parser("corpus", help="check or generate the emotion story corpus")
    actions = corpus.add_subparsers(dest="corpus_command", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="validate a story corpus (default: the shipped one)")
    check.add_argument("path", nargs="?", type=Path, help="a JSONL file or a folder of them")
    check.add_argument(
        "--only", help="comma-separated emotions whose quota to check (default: all)"
    )
    check.add_argument("--quiet", action="store_true", help="print problems and the summary only")
    check.set_defaults(handler=_check)
    _register_generate(actions)


def _register_generate(actions: argparse._SubParsersAction) -> None:
    from affectlens.cli.options import add_model_option
    from affectlens.models.packs import DEFAULT_PACK

    gen = actions.add_parser("generate", help="write new stories with a model, validated")
    gen.add_argument("--emotions", required=True, help="comma-separated emotions, e.g. afraid,calm")
    gen.add_argument("--per-emotion", type=int, required=True, help="stories wanted per emotion")
    gen.add_argument("--out", type=Path, required=True, help="JSONL file to append to (resumes)")
    add_model_option(gen, DEFAULT_PACK)
    gen.add_argument(
        "--split", choices=("train", "test"), default="train", help="split the stories join"
    )
    gen.add_argument("--max-new-tokens", type=int, default=220, help="token budget per story")
    gen.add_argument("--seed", type=int, default=0, help="seed for sampling")
    gen.add_argument("--temperature", type=float, default=0.9, help="0 means greedy")
    gen.add_argument("--batch-size", type=int, default=8, help="prompts generated together")
    gen.add_argument("--max-attempts", type=int, default=4, help="candidates per story slot")
    gen.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    gen.add_argument(
        "--backend",
        metavar="URL",
        help="an OpenAI-compatible server to write the stories, e.g. http://127.0.0.1:8000/v1 "
        "(affectlens serve, vLLM, llama-server) (default: load --model here)",
    )
    gen.add_argument(
        "--backend-model", help="model name to ask the --backend for (default: its first listed)"
    )
    gen.add_argument(
        "--api-key", help="API key of the --backend (default: $OPENAI_API_KEY, or none)"
    )
    gen.set_defaults(handler=_generate)


def _parse_emotions(value: str | None, known: dict, flag: str) -> list[str] | None:
    from affectlens.cli.options import parse_emotions

    return None if value is None else parse_emotions(value, known, flag)


def _check(args: argparse.Namespace) -> int:
    concepts = load_concepts()
    if not concepts:
        raise AffectlensError("no concept files found in the package data")
    emotions = _parse_emotions(args.only, concepts, "--only")
    stories = load_stories(args.path or default_stories_path())
    if emotions is not None:
        stories = [s for s in stories if s.emotion in emotions or s.emotion not in concepts]
    if not stories:
        raise AffectlensError(f"no stories found in {args.path or default_stories_path()}")
    problems = check_corpus(stories, concepts, emotions=emotions)
    console = Console(highlight=False)
    if not args.quiet:
        counts = split_counts(stories)
        table = Table("emotion", "train", "test", title="stories per emotion and split")
        for emotion in emotions or concepts:
            c = counts.get(emotion, {})
            table.add_row(emotion, str(c.get("train", 0)), str(c.get("test", 0)))
        console.print(table)
    for problem in problems:
        print(problem)
    checked = len(emotions or concepts)
    print(f"{len(stories)} stories, {checked} emotions checked, {len(problems)} problems")
    return 1 if problems else 0


def _generate(args: argparse.Namespace) -> int:
    from affectlens.cli.options import check_writable, load_model_from_args
    from affectlens.corpus.generate import summary_lines

    concepts = load_concepts()
    emotions = _parse_emotions(args.emotions, concepts, "--emotions") or []
    if args.per_emotion < 1:
        raise AffectlensError("--per-emotion must be at least 1")
    check_writable(args.out, "--out")
    existed = args.out.exists()
    backend = _backend(args, load_model_from_args)
    try:
        reports = _generate_into(args, backend, [concepts[name] for name in emotions])
    finally:
        if not existed and args.out.is_file() and args.out.stat().st_size == 0:
            args.out.unlink()  # nothing was accepted (or the run stopped first): no empty file
    for line in summary_lines(reports):
        print(line)
    if not any(r.accepted for r in reports) and any(r.missing for r in reports):
        raise AffectlensError(
            "no story was accepted, so nothing was written; see the rejections above "
            "(more --max-attempts, another --seed or --temperature may help)"
        )
    return 1 if any(r.missing for r in reports) else 0


def _backend(args: argparse.Namespace, load_model):
    """The server named by ``--backend`` (asked for its model now), else the local ``--model``."""
    from affectlens.corpus.generate import LocalModelBackend

    if args.backend is None:
        if args.backend_model or args.api_key:
            raise AffectlensError("--backend-model and --api-key need --backend URL")
        return LocalModelBackend(load_model(args, args.model))
    from affectlens.backends import OpenAICompatible

    return OpenAICompatible(
        args.backend,
        model=args.backend_model,
        api_key=args.api_key,
        max_concurrency=max(1, args.batch_size),
    )


def _generate_into(args: argparse.Namespace, backend, concepts: list) -> list:
    """``generate_stories`` with the command's options; the reports per emotion."""
    from affectlens.corpus.generate import generate_stories

    return generate_stories(
        backend,
        concepts,
        args.out,
        per_emotion=args.per_emotion,
        split=args.split,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        seed=args.seed,
        batch_size=args.batch_size,
        max_attempts=args.max_attempts,
        progress=not args.no_progress,
    )
