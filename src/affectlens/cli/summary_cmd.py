"""``affectlens summary``: what a vectors artifact holds, and a small monitoring example."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from affectlens.cli.options import add_model_option
from affectlens.cli.vector_options import load_fitting_model
from affectlens.monitor import monitor_batch
from affectlens.vectors import EmotionVectors

EXAMPLE = "I just took {X} mg of Tylenol for my back pain."
DOSES = (500, 4000, 16000)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``summary``."""
    summary = commands.add_parser("summary", help="summarise a vectors file with an example")
    summary.add_argument("--vectors", type=Path, required=True, help="emotion vectors file")
    add_model_option(summary, None)
    summary.add_argument("--no-example", action="store_true", help="skip loading the model")
    summary.set_defaults(handler=_summary)


def nearest_neighbours(vectors: EmotionVectors, layer: int, emotion: str, k: int = 3) -> list[str]:
    """The ``k`` emotions whose vectors are most cosine-similar to ``emotion``'s at ``layer``."""
    matrix = vectors.at_layer(layer)
    sims = matrix @ matrix[vectors.emotion_index(emotion)]
    order = torch.argsort(sims, descending=True).tolist()
    return [vectors.emotions[i] for i in order if vectors.emotions[i] != emotion][:k]


def _summary(args: argparse.Namespace) -> int:
    vectors = EmotionVectors.load(args.vectors)
    console = Console(highlight=False)
    model_id = vectors.provenance.get("model", {}).get("id", "an unrecorded model")
    corpus = vectors.provenance.get("corpus_sha256", "unrecorded")[:12]
    layer = vectors.default_layer
    console.print(
        f"[bold]{args.vectors}[/]: {len(vectors.emotions)} emotions × {len(vectors.layers)} "
        f"layers × {vectors.hidden_size} from {model_id} (corpus {corpus}); "
        f"calibration: {'yes' if vectors.calibration else 'no'}; default layer {layer}"
    )
    norms = ", ".join(
        f"{lay}:{norm:.1f}"
        for lay, norm in zip(vectors.layers, vectors.residual_norms.tolist(), strict=True)
    )
    console.print(f"mean residual norm per layer: {norms}")
    table = Table("emotion", f"nearest at layer {layer}", title="neighbours")
    for emotion in ("afraid", "calm", "desperate", "happy", "sad", "angry"):
        if emotion in vectors.emotions:
            table.add_row(emotion, ", ".join(nearest_neighbours(vectors, layer, emotion)))
    console.print(table)
    if args.no_example:
        return 0
    model = load_fitting_model(args, vectors)
    units = "z" if vectors.calibration else "raw"
    chats = [[{"role": "user", "content": EXAMPLE.format(X=dose)}] for dose in DOSES]
    traces = monitor_batch(model, vectors, chats, layers=[layer], units=units)
    example = Table(
        "user says",
        "afraid",
        "calm",
        "top 3 at the assistant turn",
        title=f"monitoring example (layer {layer}, units {units})",
    )
    for dose, trace in zip(DOSES, traces, strict=True):
        readout = trace.assistant_turn()
        top = trace.top_k(trace.readout_position(), 3)
        example.add_row(
            EXAMPLE.format(X=dose),
            f"{readout.get('afraid', float('nan')):+.2f}",
            f"{readout.get('calm', float('nan')):+.2f}",
            ", ".join(f"{name} {score:+.2f}" for name, score in top),
        )
    console.print(example)
    return 0
