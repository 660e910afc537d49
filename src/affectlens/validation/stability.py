"""Split-half stability: do two disjoint halves of the train split give the same vectors?

Each emotion's train stories are shuffled (seeded) and split in two; each half gives per-
emotion vectors built by the artifact's method (:func:`half_vectors`: centred over emotions,
whitened by the half's own within-emotion covariance when the artifact is whitened, the
artifact's neutral components projected out when it records them for the layer), which are
compared by cosine per emotion. Emotions with fewer than two train stories are left out.
:func:`half_vectors` also gives the cross-half PCA (:mod:`affectlens.validation.cross_half`)
its halves.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from affectlens.errors import AffectlensError
from affectlens.stats import mean_ci
from affectlens.whitening import NO_WHITENING, Whitening, within_residuals


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


def _apply_within_precision(
    rows: torch.Tensor, groups: torch.Tensor, shrinkage: float, targets: torch.Tensor
) -> torch.Tensor:
    """``targets @ C^-1`` [k, d] for ``C = shrunk_covariance(within_residuals(rows, groups),
    shrinkage)`` (:mod:`affectlens.whitening`), i.e. ``W W`` applied with ``W = C^-1/2``.

    ``C`` is a multiple of the identity plus a term of rank at most ``n``, so its inverse is
    applied through the thin SVD of the within residuals (no ``d x d`` decomposition at a real
    model's hidden size); a covariance :func:`affectlens.whitening.inverse_sqrt` would refuse
    as singular is refused here with the same test.
    """
    residuals = within_residuals(rows, groups)
    n, d = residuals.shape
    _, sigma, basis = torch.linalg.svd(residuals, full_matrices=False)  # basis [r, d]
    if not bool((sigma > 0).any()):
        raise AffectlensError("within whitening of a half needs an emotion with two stories in it")
    spread = max(n - 1, 1)
    floor = shrinkage * float((sigma**2).sum()) / spread / d  # (a tr S / d), S the covariance
    values = (1 - shrinkage) * sigma**2 / spread + floor
    smallest = min(float(values.min()), floor) if d > len(sigma) else float(values.min())
    if smallest <= float(values.max()) * 1e-12:
        raise AffectlensError("covariance is singular: use a shrinkage above 0")
    targets = targets.double()
    inside = targets @ basis.T
    out = (inside / values) @ basis
    if d > len(sigma):
        out = out + (targets - inside @ basis) / floor
    return out


def half_vectors(
    activations: torch.Tensor,
    labels: list[int] | np.ndarray,
    *,
    neutral_pcs: torch.Tensor | None = None,
    seed: int = 0,
    whitening: Whitening = NO_WHITENING,
    min_emotions: int = 2,
    check: str = "split-half stability",
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Per-emotion unit vectors of each half, [E, H] twice (float64), and the emotion rows.

    ``activations`` [N, H] are per-story means at one layer, ``labels`` their emotion rows;
    the halves are :func:`split_halves` with ``seed``. The artifact's method is applied to
    each half: its per-emotion means are centred over emotions; with a ``within`` whitening
    they are then mapped by ``C^-1 = W W`` of the half's own shrunk within-emotion covariance
    (its shrinkage, the scatter over ``n - 1`` as extraction divides it), which is the
    extraction's ``unit(W v_e)`` with the neutral step left out. The artifact's residual-
    stream ``neutral_pcs`` are projected out last and the result unit-normalised. For
    ``"none"`` that is exactly the unwhitened method. For ``"within"`` the neutral step is an
    approximation: extraction projects the neutral PCs out in whitened coordinates, which
    makes its directions orthogonal to the same stored basis, but validation does not read
    the neutral passages, so here the basis is projected out in residual-stream coordinates.

    Fewer than ``min_emotions`` emotions with two train stories is refused, naming ``check``.
    """
    labels = np.asarray(labels)
    first, second = split_halves(labels, seed)
    present = sorted(set(labels[first].tolist()) & set(labels[second].tolist()))
    if len(present) < min_emotions:
        raise AffectlensError(f"{check} needs two train stories for {min_emotions}+ emotions")
    acts = activations.double()
    halves = []
    for mask in (first, second):
        means = torch.stack(
            [acts[torch.from_numpy(mask & (labels == e))].mean(dim=0) for e in present]
        )
        centred = means - means.mean(dim=0, keepdim=True)
        if whitening.kind == "within":
            rows = torch.from_numpy(mask)
            groups = torch.from_numpy(labels[mask])
            centred = _apply_within_precision(acts[rows], groups, whitening.shrinkage, centred)
        if neutral_pcs is not None and neutral_pcs.numel():
            pcs = neutral_pcs.double()
            centred = centred - (centred @ pcs.T) @ pcs
        halves.append(centred / centred.norm(dim=-1, keepdim=True).clamp(min=1e-12))
    return halves[0], halves[1], present


def split_half_cosines(
    activations: torch.Tensor,
    labels: list[int] | np.ndarray,
    *,
    neutral_pcs: torch.Tensor | None = None,
    seed: int = 0,
    whitening: Whitening = NO_WHITENING,
) -> dict[int, float]:
    """Cosine between the two halves' vectors (:func:`half_vectors`, the artifact's
    ``whitening``), per emotion row that has both halves.

    ``activations`` is [N, H] (one layer).
    """
    first, second, present = half_vectors(
        activations,
        labels,
        neutral_pcs=neutral_pcs,
        seed=seed,
        whitening=whitening,
    )
    cosines = (first * second).sum(dim=-1)
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
