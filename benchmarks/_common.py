"""Shared helpers of the benchmarks (not a benchmark).

Parses the options the model benchmarks share, loads the model under test (the default offline
pack, or with ``tiny`` the random 4-layer Qwen2 of ``tests/conftest.py`` for smoke runs), loads
or synthesises an emotion-vectors artifact, forces every generation to a fixed length, and times
callables in interleaved repetitions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from affectlens.activations import pad_right, residuals
from affectlens.corpus.concepts import emotion_names
from affectlens.corpus.stories import load_neutral
from affectlens.models import load_model
from affectlens.models.chat import encode
from affectlens.models.loading import LoadedModel
from affectlens.models.packs import DEFAULT_PACK
from affectlens.vectors import EmotionVectors, model_provenance

REPO = Path(__file__).resolve().parents[1]
CHAT_PROMPTS = [
    "Write a Python function that merges two sorted lists.",
    "Explain what a race condition is, with an example.",
    "My tests keep failing after I changed the date parser. What should I check?",
    "Summarise the plot of a story about a lighthouse keeper in a storm.",
    "How do I read a CSV file with the standard library?",
    "Give three tips for naming variables well.",
    "What does the Python GIL do?",
    "Write a haiku about debugging late at night.",
]
"""User turns of the engine and serving benchmarks: short, varied, one per concurrent client."""
DEFAULT_VECTORS = REPO / "runs" / "default" / "vectors.safetensors"


def load_bench_model(tiny: bool) -> LoadedModel:
    """The default offline model, or the tiny random test model for smoke runs."""
    if not tiny:
        return load_model(DEFAULT_PACK)
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import build_loaded

    return build_loaded("qwen2", num_layers=4)


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the benchmark's docstring, with ``--vectors`` as its first option."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vectors", type=Path, default=DEFAULT_VECTORS, help="vectors artifact")
    return parser


def add_run_options(parser: argparse.ArgumentParser, smoke_help: str) -> None:
    """``--threads``, ``--smoke`` (``smoke_help`` says what it shrinks) and ``--tiny``."""
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--smoke", action="store_true", help=smoke_help)
    parser.add_argument(
        "--tiny", action="store_true", help="random 4-layer test model instead of the default"
    )


def load_model_and_vectors(args: argparse.Namespace) -> tuple[LoadedModel, EmotionVectors]:
    """Torch set to ``--threads``, the model (``--tiny``) and ``--vectors`` loaded, both named.

    The two lines printed say what was measured: the model with its size, device and threads,
    and whether the vectors are an artifact or random stand-ins.
    """
    torch.set_num_threads(args.threads)
    model = load_bench_model(args.tiny)
    vectors, label = bench_vectors(model, args.vectors, args.tiny)
    where = f"{model.num_layers} layers, {model.device}, {args.threads} threads"
    print(f"model: {model.name} ({where})")
    print(f"vectors: {label}")
    return model, vectors


def _residual_norms(model: LoadedModel, layers: list[int]) -> torch.Tensor:
    """Mean residual norm per layer over a few neutral passages (first token left out)."""
    texts = [p.text for p in load_neutral() if p.text][:4]
    rows = [encode(model.tokenizer, text)[:128] for text in texts]
    ids, mask = pad_right(rows, model.tokenizer.pad_token_id)
    hidden = residuals(model, ids, mask, layers)
    keep = mask.bool().clone()
    keep[:, 0] = False
    return torch.stack([hidden[layer][keep].norm(dim=-1).mean() for layer in layers])


def random_vectors(model: LoadedModel, seed: int = 0) -> EmotionVectors:
    """171 random unit directions at every layer, real residual norms, identity calibration.

    Only the content is fake: shapes (171 emotions x all layers x hidden), residual norms
    (measured on neutral text, so steering adds a realistically sized vector) and the
    calibration tables (mean 0, std 1, so ``units="z"`` runs the same code path) are those of
    a real artifact, which is all the cost of steering and monitoring depends on.
    """
    emotions = emotion_names()
    layers = list(range(model.num_layers))
    generator = torch.Generator().manual_seed(seed)
    raw = torch.randn(len(emotions), len(layers), model.hidden_size, generator=generator)
    zeros = [[0.0] * len(emotions) for _ in layers]
    ones = [[1.0] * len(emotions) for _ in layers]
    return EmotionVectors(
        emotions=emotions,
        layers=layers,
        vectors=raw / raw.norm(dim=-1, keepdim=True),
        raw_means=raw,
        residual_norms=_residual_norms(model, layers),
        neutral_pcs={},
        provenance={"model": model_provenance(model), "synthetic": "benchmark random vectors"},
        calibration={
            "layers": layers,
            "emotions": emotions,
            "neutral_mean": zeros,
            "neutral_std": ones,
            "story_p99": ones,
            "neutral_tokens": 0,
            "story_tokens": 0,
        },
    )


def bench_vectors(model: LoadedModel, path: Path, tiny: bool) -> tuple[EmotionVectors, str]:
    """The artifact at ``path`` if it exists (and not ``tiny``), else random vectors; a label."""
    if not tiny and path.is_file():
        vectors = EmotionVectors.load(path)
        vectors.check_fits(model)
        return vectors, f"artifact {path}"
    vectors = random_vectors(model)
    why = "tiny smoke model" if tiny else f"{path} not found"
    return vectors, (
        f"RANDOM vectors ({why}): {len(vectors.emotions)} emotions x {len(vectors.layers)} "
        "layers, measured residual norms; overhead does not depend on vector content"
    )


@contextmanager
def fixed_length(model: LoadedModel, new_tokens: int) -> Iterator[None]:
    """Every ``generate`` in the block produces exactly ``new_tokens`` tokens.

    The library's ``generate``/``generate_batch`` take no ``min_new_tokens``; transformers
    reads unset options from the model's ``generation_config``, so setting it there forces
    the length (EOS is suppressed until then) without touching the library's call path.
    """
    config = model.model.generation_config
    saved = config.min_new_tokens
    config.min_new_tokens = new_tokens
    try:
        yield
    finally:
        config.min_new_tokens = saved


@contextmanager
def count_forwards(model: LoadedModel) -> Iterator[list[int]]:
    """Count forward passes of the whole model (one per decoding step) inside the block."""
    calls = [0]

    def hook(_module, _args):
        calls[0] += 1

    handle = model.model.register_forward_pre_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


def interleaved(
    runs: dict[str, Callable[[], object]], reps: int, *, warmup: bool = True
) -> dict[str, list[float]]:
    """Seconds of each callable per repetition; the order alternates (AB, BA, AB, ...).

    Alternating which variant goes first cancels slow drift (thermal, other jobs) and any
    benefit of running second on warm caches. With ``warmup`` one untimed call of each
    comes first.
    """
    if warmup:
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - started)
    return times


def paired_ratio(baseline: list[float], ours: list[float]) -> float:
    """Median over repetitions of baseline time / our time (>1: ours is faster)."""
    return statistics.median(b / o for b, o in zip(baseline, ours, strict=True))


def print_table(rows: list[dict]) -> None:
    """A plain-text table of measure, baseline, affectlens, ratio, goal and pass/fail."""
    header = ["measure", "baseline", "affectlens", "ratio", "goal", "result"]
    cells = [header] + [[str(row[key]) for key in header] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    for index, line in enumerate(cells):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
