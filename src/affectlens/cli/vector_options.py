"""Options of the commands that use a vectors file (``monitor``, ``generate``, ``chat``).

Everything that can be checked against the vectors file alone (layers, emotions, alphas) is
checked before the model loads, so bad input fails fast with one line.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

from affectlens import calibration
from affectlens.cli.options import (
    add_model_option,
    load_model_from_args,
    parse_layers,
    resolve_emotion,
)
from affectlens.errors import AffectlensError
from affectlens.models.loading import LoadedModel
from affectlens.steer import MAX_ALPHA
from affectlens.vectors import EmotionVectors


def add_vector_options(parser: argparse.ArgumentParser) -> None:
    """``--vectors``, ``--model`` (default: the vectors' model) with its overrides, ``--layers``."""
    parser.add_argument("--vectors", required=True, help="emotion vectors file (.safetensors)")
    add_model_option(parser, None)
    parser.add_argument(
        "--layers", help="e.g. 12, 10,12 or 10-14, averaged (default: the recommended layer)"
    )


def add_units_option(parser: argparse.ArgumentParser) -> None:
    """``--units`` for readouts."""
    parser.add_argument(
        "--units",
        choices=calibration.UNITS,
        default="z",
        help="score units (z and p99 need calibration)",
    )


def check_units(units: str, vectors: EmotionVectors, path: str, layers: list[int] | None) -> None:
    """Refuse units the vectors' calibration cannot provide, before loading the model."""
    if units != "raw" and not vectors.calibration:
        raise AffectlensError(
            f"--units {units} needs calibration, which {path} lacks; "
            "calibrate the vectors or use --units raw"
        )
    calibration.check_units(vectors, layers or [vectors.default_layer], units)


def vector_layers(value: str | None, vectors: EmotionVectors) -> list[int] | None:
    """``--layers`` parsed, each layer checked against the vectors file."""
    layers = parse_layers(value)
    if layers is None:
        return None
    if not layers:
        raise AffectlensError("--layers names no layer")
    for layer in layers:
        vectors.layer_index(layer)
    return layers


def _alpha(text: str, emotion: str) -> float:
    try:
        alpha = float(text)
    except ValueError:
        raise AffectlensError(f"alpha {text!r} for {emotion!r} is not a number") from None
    if not math.isfinite(alpha) or abs(alpha) > MAX_ALPHA:
        raise AffectlensError(
            f"alpha {text} for {emotion!r} is outside the sane range [-{MAX_ALPHA}, {MAX_ALPHA}]"
        )
    return alpha


def parse_alphas(values: Sequence[str] | None, vectors: EmotionVectors) -> dict[str, float]:
    """``emotion=alpha`` pairs, repeated or comma-separated, checked against the vectors."""
    alphas: dict[str, float] = {}
    for value in values or []:
        for pair in (p.strip() for p in value.split(",") if p.strip()):
            emotion, sep, number = pair.partition("=")
            emotion = emotion.strip()
            if not sep or not emotion:
                raise AffectlensError(f"steering {pair!r} is not like 'calm=0.1'")
            emotion = resolve_emotion(emotion, vectors.emotions)
            alphas[emotion] = _alpha(number.strip(), emotion)
    return alphas


def parse_steering(
    values: Sequence[str] | None, vectors: EmotionVectors
) -> tuple[dict[str, float], tuple[str, list[float]] | None]:
    """``--steer`` values as fixed alphas plus at most one sweep (``emotion=start:stop:count``).

    Pairs are repeated or comma-separated; a pair whose alpha has colons is the sweep.
    """
    fixed: list[str] = []
    sweeps: list[tuple[str, list[float]]] = []
    for value in values or []:
        for pair in (p.strip() for p in value.split(",") if p.strip()):
            if ":" in pair.partition("=")[2]:
                sweeps.append(parse_sweep(pair, vectors))
            else:
                fixed.append(pair)
    if len(sweeps) > 1:
        raise AffectlensError("--steer takes at most one sweep (EMOTION=START:STOP:COUNT)")
    alphas = parse_alphas(fixed, vectors)
    return alphas, sweeps[0] if sweeps else None


def parse_sweep(value: str, vectors: EmotionVectors) -> tuple[str, list[float]]:
    """``emotion=start:stop:count`` as the emotion and ``count`` evenly spaced alphas.

    A single ``emotion=alpha`` is a sweep of one value.
    """
    emotion, sep, spec = value.partition("=")
    parts = spec.split(":")
    if not sep or len(parts) not in (1, 3):
        raise AffectlensError(f"sweep {value!r} is not like 'calm=-0.5:0.5:5' or 'calm=0.1'")
    emotion = resolve_emotion(emotion.strip(), vectors.emotions)
    if len(parts) == 1:
        return emotion, [_alpha(parts[0].strip(), emotion)]
    start, stop = (_alpha(part.strip(), emotion) for part in parts[:2])
    try:
        count = int(parts[2])
    except ValueError:
        raise AffectlensError(f"sweep count {parts[2]!r} is not a whole number") from None
    if count < 1:
        raise AffectlensError("sweep count must be at least 1")
    if count == 1:
        return emotion, [start]
    return emotion, [round(start + (stop - start) * i / (count - 1), 6) for i in range(count)]


def load_fitting_model(args: argparse.Namespace, vectors: EmotionVectors) -> LoadedModel:
    """``--model`` (or the vectors' recorded model), refused if the vectors do not fit it."""
    spec = args.model or vectors.provenance.get("model", {}).get("id")
    if not spec:
        raise AffectlensError("the vectors file records no model id; pass --model")
    model = load_model_from_args(args, spec)
    vectors.check_fits(model)
    return model
