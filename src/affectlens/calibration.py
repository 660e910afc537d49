"""Calibration: turning raw projections into comparable units.

Raw projections differ in scale across layers and emotions. Calibration records, per layer and
emotion, the mean and std of projections over neutral text (for z-scores) and the 99th
percentile over emotional stories (for the "p99" scale, where neutral mean = 0 and the story
99th percentile = 1). It is stored in ``EmotionVectors.calibration`` as JSON-ready lists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch

from affectlens.activations import pad_right, project, residuals
from affectlens.errors import AffectlensError
from affectlens.models.chat import encode
from affectlens.models.loading import LoadedModel
from affectlens.progress import count_progress
from affectlens.vectors import EmotionVectors

UNITS = ("raw", "z", "p99")
BATCH_SIZE = 8
_EPS = 1e-6


def _token_projections(
    model: LoadedModel,
    vectors: EmotionVectors,
    texts: Sequence[str],
    advance: Callable[[int], None],
) -> torch.Tensor:
    """Raw projections [layer, token, emotion] of every real token of ``texts``.

    Padding and a leading BOS (an attention sink with an outsized norm) are left out.
    ``advance`` is told how many texts each batch finished.
    """
    bos = getattr(model.tokenizer, "bos_token_id", None)
    chunks = []
    for start in range(0, len(texts), BATCH_SIZE):
        rows = [encode(model.tokenizer, text) for text in texts[start : start + BATCH_SIZE]]
        ids, mask = pad_right(rows, model.tokenizer.pad_token_id)
        keep = mask.bool()
        if bos is not None:
            keep[:, 0] &= ids[:, 0] != bos
        hidden = residuals(model, ids, mask, vectors.layers)
        chunks.append(project(vectors, hidden, vectors.layers)[:, keep])
        advance(len(rows))
    return torch.cat(chunks, dim=1)


def calibrate(
    model: LoadedModel,
    vectors: EmotionVectors,
    neutral_texts: Sequence[str],
    story_texts: Sequence[str],
    show_progress: bool = False,
) -> dict:
    """Compute calibration for ``vectors`` on ``model``, store it on ``vectors`` and return it.

    ``show_progress`` reports texts done to the installed progress renderer
    (:mod:`affectlens.progress`): on the full corpus this takes minutes.
    """
    if not neutral_texts or not story_texts:
        raise AffectlensError("calibration needs at least one neutral text and one story")
    vectors.check_fits(model)
    with count_progress(disable=not show_progress, unit="texts") as progress:
        total = len(neutral_texts) + len(story_texts)
        advance = partial(
            progress.advance, progress.add_task("calibration", total=total, status="")
        )
        neutral = _token_projections(model, vectors, neutral_texts, advance)
        stories = _token_projections(model, vectors, story_texts, advance)
    if neutral.shape[1] < 2 or stories.shape[1] < 1:
        raise AffectlensError("calibration texts are too short (need at least two neutral tokens)")
    calibration = {
        "layers": list(vectors.layers),
        "emotions": list(vectors.emotions),
        "neutral_mean": neutral.mean(dim=1).tolist(),
        "neutral_std": neutral.std(dim=1).tolist(),
        # per layer: torch.quantile refuses inputs over 2**24 elements
        "story_p99": torch.stack(
            [torch.quantile(layer, 0.99, dim=0) for layer in stories]
        ).tolist(),
        "neutral_tokens": int(neutral.shape[1]),
        "story_tokens": int(stories.shape[1]),
    }
    vectors.calibration = calibration
    return calibration


def check_units(vectors: EmotionVectors, layers: Sequence[int], units: str) -> None:
    """Refuse unknown units, and calibrated units the vectors' calibration cannot provide."""
    if units not in UNITS:
        raise AffectlensError(f"units must be one of {', '.join(UNITS)}, not {units!r}")
    if units == "raw":
        return
    calibration = vectors.calibration
    if not calibration:
        raise AffectlensError(
            f"units {units!r} need calibration, which these vectors lack; run "
            "affectlens.calibration.calibrate on them (or use units 'raw')"
        )
    if calibration.get("emotions") != list(vectors.emotions):
        raise AffectlensError("the vectors' calibration was made for other emotions; recalibrate")
    missing = [layer for layer in layers if layer not in calibration["layers"]]
    if missing:
        raise AffectlensError(f"the vectors' calibration lacks layer(s) {missing}; recalibrate")


def _rows(vectors: EmotionVectors, layers: Sequence[int], name: str) -> torch.Tensor:
    """Calibration statistic ``name`` as [layer, emotion] for ``layers``."""
    known = vectors.calibration["layers"]
    table = torch.tensor(vectors.calibration[name], dtype=torch.float32)
    return table[[known.index(layer) for layer in layers]]


def to_units(
    raw: torch.Tensor, vectors: EmotionVectors, layers: Sequence[int], units: str
) -> torch.Tensor:
    """Convert raw projections [layer, ..., emotion] to ``units`` ("raw", "z" or "p99")."""
    check_units(vectors, layers, units)
    if units == "raw":
        return raw
    shape = (len(layers),) + (1,) * (raw.dim() - 2) + (raw.shape[-1],)
    mean = _rows(vectors, layers, "neutral_mean").reshape(shape)
    if units == "z":
        scale = _rows(vectors, layers, "neutral_std").reshape(shape)
    else:
        scale = _rows(vectors, layers, "story_p99").reshape(shape) - mean
    return (raw - mean) / scale.clamp_min(_EPS)
