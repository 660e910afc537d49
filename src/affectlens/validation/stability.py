"""Split-half stability: do two disjoint halves of the train split give the same vectors?

Each emotion's train stories are shuffled (seeded) and split in two; each half gives per-
emotion mean activations, which are centred by their mean over emotions, have the artifact's
neutral components projected out when it records them for the layer, and are compared by
cosine per emotion. Emotions with fewer than two train stories are left out.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from affectlens.errors import AffectlensError
from affectlens.stats import mean_ci


def split_halves(labels: list[int] | np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the two halves, each emotion's stories split evenly at random."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    first = np.zeros(len(labels), dtype=bool)
    second = np.zeros(len(labels), dtype=bool)
    for emotion in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == emotion))
        if len(rows) < 2:
            continue
        half = len(rows) // 2
        first[rows[:half]] = True
        second[rows[half : 2 * half]] = True
    return first, second


def split_half_cosines(
    activations: torch.Tensor,
    labels: list[int] | np.ndarray,
    *,
    neutral_pcs: torch.Tensor | None = None,
    seed: int = 0,
) -> dict[int, float]:
    """Cosine between the two halves' centred vectors, per emotion row that has both halves.

    ``activations`` is [N, H] (one layer).
    """
    labels = np.asarray(labels)
    first, second = split_halves(labels, seed)
    present = sorted(set(labels[first].tolist()) & set(labels[second].tolist()))
    if len(present) < 2:
        raise AffectlensError("split-half stability needs two train stories for 2+ emotions")
    acts = activations.double()
    halves = []
    for mask in (first, second):
        means = torch.stack(
            [acts[torch.from_numpy(mask & (labels == e))].mean(dim=0) for e in present]
        )
        centred = means - means.mean(dim=0, keepdim=True)
        if neutral_pcs is not None and neutral_pcs.numel():
            pcs = neutral_pcs.double()
            centred = centred - (centred @ pcs.T) @ pcs
        halves.append(centred / centred.norm(dim=-1, keepdim=True).clamp(min=1e-12))
    cosines = (halves[0] * halves[1]).sum(dim=-1)
    return {e: float(c) for e, c in zip(present, cosines.tolist(), strict=True)}


def summarise(cosines: dict[int, float], emotions: list[str]) -> dict:
    """Mean cosine with a t interval, and the per-emotion values by name."""
    values = list(cosines.values())
    estimate = mean_ci(values)
    return {
        "n_emotions": len(values),
        "mean_cosine": estimate.value,
        "low": None if math.isnan(estimate.low) else estimate.low,
        "high": None if math.isnan(estimate.high) else estimate.high,
        "ci_method": "Student t over emotions",
        "per_emotion": {emotions[e]: c for e, c in sorted(cosines.items())},
    }
