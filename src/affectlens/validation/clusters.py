"""k-means on the emotion vectors (numpy, k-means++ init, seeded) and a cluster listing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from affectlens.errors import AffectlensError


@dataclass(frozen=True)
class KMeansResult:
    """Cluster label per row, the centres [k, dim] and the within-cluster sum of squares."""

    labels: np.ndarray
    centres: np.ndarray
    inertia: float


def _plus_plus(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centre drawn with probability ~ squared distance."""
    n = points.shape[0]
    centres = [points[rng.integers(n)]]
    nearest = ((points - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = nearest.sum()
        index = int(rng.integers(n)) if total <= 0 else int(rng.choice(n, p=nearest / total))
        centres.append(points[index])
        nearest = np.minimum(nearest, ((points - points[index]) ** 2).sum(axis=1))
    return np.stack(centres)


def _lloyd(
    points: np.ndarray, centres: np.ndarray, max_iter: int
) -> tuple[np.ndarray, np.ndarray, float]:
    for _ in range(max_iter):
        distances = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        labels = distances.argmin(axis=1)
        updated = centres.copy()
        for cluster in range(centres.shape[0]):
            members = points[labels == cluster]
            if len(members):
                updated[cluster] = members.mean(axis=0)
        if np.allclose(updated, centres):
            centres = updated
            break
        centres = updated
    distances = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    labels = distances.argmin(axis=1)
    inertia = float(distances[np.arange(len(points)), labels].sum())
    return labels, centres, inertia


def kmeans(
    points: np.ndarray, k: int = 10, *, seed: int = 0, n_init: int = 10, max_iter: int = 300
) -> KMeansResult:
    """Lloyd's k-means with k-means++ seeding; the best of ``n_init`` seeded restarts.

    Labels are renumbered by first appearance, so the same partition always gets the same
    numbers. ``k`` larger than the number of points is refused.
    """
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or points.shape[0] == 0:
        raise AffectlensError("k-means needs a non-empty 2-D array of points")
    if not 1 <= k <= points.shape[0]:
        raise AffectlensError(f"k-means with k={k} needs 1 <= k <= {points.shape[0]} points")
    rng = np.random.default_rng(seed)
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for _ in range(n_init):
        result = _lloyd(points, _plus_plus(points, k, rng), max_iter)
        if best is None or result[2] < best[2] - 1e-12:
            best = result
    labels, centres, inertia = best
    order = list(dict.fromkeys(labels.tolist()))
    order += [c for c in range(k) if c not in order]
    remap = np.empty(k, dtype=int)
    remap[order] = np.arange(k)
    return KMeansResult(remap[labels], centres[order], inertia)


def cluster_listing(emotions: list[str], labels: np.ndarray) -> list[list[str]]:
    """Member emotions of each cluster, clusters in label order (empty ones dropped)."""
    groups: dict[int, list[str]] = {}
    for emotion, label in zip(emotions, labels.tolist(), strict=True):
        groups.setdefault(int(label), []).append(emotion)
    return [groups[label] for label in sorted(groups)]


def cluster_order(emotions: list[str], labels: np.ndarray) -> list[int]:
    """Row order for the heatmap: by cluster, then by name within a cluster."""
    return sorted(range(len(emotions)), key=lambda i: (int(labels[i]), emotions[i]))


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of the rows of ``vectors``."""
    v = np.asarray(vectors, dtype=float)
    v = v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)
    return v @ v.T
