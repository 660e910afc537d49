"""Cross-half PCA: are the vectors' leading axes signal, or the noise of a few stories?

The train stories of each emotion are split at random into two disjoint halves (as for
split-half stability); each half gives per-emotion vectors made by the artifact's method
(:func:`affectlens.validation.stability.half_vectors`: centred over emotions, whitened within
emotions when the artifact is, the neutral components projected out, unit length). The principal
axes of the symmetrised cross-covariance of the two halves, ``(A^T B + B^T A) / 2``, keep only
variance the halves share: noise private to one half averages out, so an eigenvalue is the
reliable variance of its axis and can be near zero or negative for a noise direction.

Agreement with the ordinary PCA is ``|cos|`` between the k-th cross-half axis and the k-th
ordinary component, and the overlap of their leading subspaces (``||U_k^T P_k||_F^2 / k``, 1
when the two spans coincide, about ``k / hidden`` for unrelated random ones).
"""

from __future__ import annotations

import numpy as np
import torch

from affectlens.validation.geometry import component_alignment, pca
from affectlens.validation.stability import half_vectors
from affectlens.whitening import NO_WHITENING, Whitening


def cross_half_pca(
    first: np.ndarray, second: np.ndarray, reference: np.ndarray, k: int = 5
) -> tuple[dict, np.ndarray]:
    """Cross-half axes of two [E, H] halves against ``reference`` [m, H] ordinary components.

    Returns the JSON-ready summary and the cross-half axes [k, H] (each axis's sign is
    chosen to agree with its reference component, which the summary does not depend on).
    """
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    cross = a.T @ b / (len(a) - 1)
    symmetric = (cross + cross.T) / 2
    values, axes = np.linalg.eigh(symmetric)
    order = np.argsort(values)[::-1]
    k = min(k, len(a) - 1, len(reference))
    values, axes = values[order[:k]], axes[:, order[:k]].T
    cosines = axes @ np.asarray(reference, dtype=float).T  # [cross axis, ordinary component]
    diagonal = np.diag(cosines[:, :k])
    signs = np.where(diagonal < 0, -1.0, 1.0)
    axes = axes * signs[:, None]
    total = float(np.trace(symmetric))
    summary = {
        "k": int(k),
        "n_emotions": len(a),
        "reliable_variance_share": (values / total).tolist() if total > 0 else None,
        "abs_cos_with_pca": np.abs(diagonal).tolist(),
        "best_matching_pc": (np.abs(cosines).argmax(axis=1) + 1).tolist(),
        "subspace_overlap": [float((cosines[:j, :j] ** 2).sum() / j) for j in range(1, k + 1)],
    }
    return summary, axes


def cross_half_report(
    train: torch.Tensor,
    labels: list[int],
    vectors: np.ndarray,
    emotions: list[str],
    *,
    neutral_pcs: torch.Tensor | None = None,
    seed: int = 0,
    whitening: Whitening = NO_WHITENING,
    norms: dict[str, tuple[float, float]] | None = None,
    k: int = 5,
) -> dict:
    """The report's cross-half block at one layer.

    ``train`` [story, H] and ``labels`` (rows of ``emotions``) are the train stories read at
    the layer; ``vectors`` [E, H] are the artifact's vectors there, whose ordinary PCA is the
    reference; the halves are built with the artifact's ``whitening``, which the
    summary records as ``method``. With ``norms`` (emotion -> (valence, arousal)), each
    cross-half axis's scores (the artifact's vectors projected on it) get |Pearson r| with
    valence and arousal.
    """
    first, second, present = half_vectors(
        train,
        labels,
        neutral_pcs=neutral_pcs,
        seed=seed,
        whitening=whitening,
        min_emotions=3,
        check="cross-half PCA",
    )
    reference = pca(vectors, k=10).components
    summary, axes = cross_half_pca(first.numpy(), second.numpy(), reference, k=k)
    summary["emotions_in_both_halves"] = len(present)
    summary["seed"] = seed
    summary["method"] = whitening.as_json()
    if norms:
        rows = [i for i, e in enumerate(emotions) if e in norms]
        scores = (np.asarray(vectors, dtype=float) @ axes.T)[rows]
        valence = np.array([norms[emotions[i]][0] for i in rows])
        arousal = np.array([norms[emotions[i]][1] for i in rows])
        summary["components"] = component_alignment(scores, valence, arousal)
    return summary
