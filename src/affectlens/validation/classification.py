"""Held-out classification: does each test story's activation point at its emotion's vector?

Per layer, every test story's mean activation is centred by the mean of the artifact's raw
per-emotion means at that layer and compared by cosine with every unit vector. Top-1 / top-5
accuracy get Wilson intervals; chance is ``1/E`` and ``min(5, E)/E``. Cluster accuracy counts
a prediction as correct when it lands in the true emotion's k-means cluster, which tells
near-synonym confusion apart from outright failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Protocol

import numpy as np
import torch

from affectlens.corpus.stories import Story
from affectlens.errors import AffectlensError
from affectlens.extract import ExtractionSettings, text_means
from affectlens.models.loading import LoadedModel
from affectlens.stats import wilson_interval
from affectlens.vectors import EmotionVectors


@dataclass(frozen=True)
class HeldOut:
    """Test stories of emotions in the artifact: their labels (rows of ``emotions``)."""

    stories: list[Story]
    labels: list[int]
    ignored: int


@dataclass(frozen=True)
class Rate:
    """A proportion with its Wilson interval."""

    hits: int
    n: int
    value: float
    low: float
    high: float

    @classmethod
    def of(cls, hits: int, n: int) -> Rate:
        low, high = wilson_interval(hits, n)
        return cls(hits, n, hits / n if n else float("nan"), low, high)


@dataclass(frozen=True)
class LayerAccuracy:
    """Accuracies at one layer."""

    layer: int
    top1: Rate
    top5: Rate
    cluster: Rate | None = None


@dataclass
class ClassificationResult:
    """Per-layer accuracies, chance levels, the recommended layer and the raw predictions."""

    layers: list[LayerAccuracy]
    chance_top1: float
    chance_top5: float
    recommended_layer: int
    n: int
    ignored: int
    predictions: np.ndarray  # [story, layer] predicted emotion row
    labels: np.ndarray  # [story] true emotion row

    def at(self, layer: int) -> LayerAccuracy:
        """The accuracies of one layer."""
        for entry in self.layers:
            if entry.layer == layer:
                return entry
        raise AffectlensError(f"layer {layer} was not classified")

    def to_json(self) -> dict:
        """The JSON-ready summary (no per-story arrays)."""
        return {
            "n": self.n,
            "ignored_test_stories": self.ignored,
            "chance_top1": self.chance_top1,
            "chance_top5": self.chance_top5,
            "recommended_layer": self.recommended_layer,
            "per_layer": [asdict(entry) for entry in self.layers],
        }


def held_out_stories(stories: list[Story], emotions: list[str]) -> HeldOut:
    """The test split, keeping only emotions the artifact has; no test story is an error."""
    tests = [s for s in stories if s.split == "test"]
    if not tests:
        raise AffectlensError("the corpus has no test split; held-out classification needs one")
    row = {emotion: i for i, emotion in enumerate(emotions)}
    kept = [s for s in tests if s.emotion in row]
    if not kept:
        raise AffectlensError("no test story is of an emotion in the vectors file")
    return HeldOut(kept, [row[s.emotion] for s in kept], len(tests) - len(kept))


def settings_from(vectors: EmotionVectors, batch_size: int | None = None) -> ExtractionSettings:
    """The extraction settings recorded in the artifact (so activations are read the same way)."""
    recorded = vectors.provenance.get("settings", {}) or {}
    known = {f.name for f in fields(ExtractionSettings)} - {"layers"}
    kwargs = {key: value for key, value in recorded.items() if key in known}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    return ExtractionSettings(**kwargs)


class HasText(Protocol):
    """Anything read as one text: a story, a transfer text."""

    @property
    def text(self) -> str: ...


def vector_centre(vectors: EmotionVectors) -> torch.Tensor:
    """[layer, hidden]: the mean of the raw per-emotion means, which every readout subtracts."""
    return vectors.raw_means.float().mean(dim=0)


def read_activations(
    model: LoadedModel,
    stories: Sequence[HasText],
    layers: list[int],
    settings: ExtractionSettings,
    *,
    show_progress: bool = False,
    description: str = "test stories",
) -> torch.Tensor:
    """Per-text masked mean activations [text, layer, hidden], pooled as the extraction pools."""
    return text_means(
        model,
        [s.text for s in stories],
        layers,
        settings,
        description=description,
        show_progress=show_progress,
    )


def predict(
    activations: torch.Tensor, vectors: torch.Tensor, centre: torch.Tensor, k: int = 5
) -> torch.Tensor:
    """Top-``k`` emotion rows per story and layer, [story, layer, k], by cosine.

    ``activations`` [N, L, H]; ``vectors`` [E, L, H] unit; ``centre`` [L, H].
    """
    centred = activations.float() - centre.float()[None]
    centred = centred / centred.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    units = vectors.float() / vectors.float().norm(dim=-1, keepdim=True).clamp(min=1e-12)
    cosine = torch.einsum("nlh,elh->nle", centred, units)
    return cosine.topk(min(k, units.shape[0]), dim=-1).indices


def classify(
    activations: torch.Tensor,
    labels: list[int] | np.ndarray,
    vectors: torch.Tensor,
    centre: torch.Tensor,
    layers: list[int],
    *,
    ignored: int = 0,
) -> ClassificationResult:
    """Top-1 / top-5 accuracy per layer with Wilson intervals and the best layer."""
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    n, num_emotions = len(labels_t), vectors.shape[0]
    if n == 0:
        raise AffectlensError("no test stories to classify")
    top = predict(activations, vectors, centre)
    hits5 = (top == labels_t[:, None, None]).any(dim=-1)
    hits1 = top[..., 0] == labels_t[:, None]
    entries = [
        LayerAccuracy(
            layer,
            Rate.of(int(hits1[:, column].sum()), n),
            Rate.of(int(hits5[:, column].sum()), n),
        )
        for column, layer in enumerate(layers)
    ]
    best = max(entries, key=lambda e: (e.top1.value, e.top5.value, -e.layer)).layer
    return ClassificationResult(
        layers=entries,
        chance_top1=1 / num_emotions,
        chance_top5=min(5, num_emotions) / num_emotions,
        recommended_layer=best,
        n=n,
        ignored=ignored,
        predictions=top[..., 0].numpy(),
        labels=labels_t.numpy(),
    )


def add_cluster_accuracy(result: ClassificationResult, cluster_of: np.ndarray) -> None:
    """Fill each layer's cluster accuracy: prediction in the true emotion's cluster."""
    cluster_of = np.asarray(cluster_of)
    same = cluster_of[result.predictions] == cluster_of[result.labels][:, None]
    result.layers = [
        LayerAccuracy(e.layer, e.top1, e.top5, Rate.of(int(same[:, i].sum()), result.n))
        for i, e in enumerate(result.layers)
    ]


def confusions(result: ClassificationResult, emotions: list[str], layer: int, top: int = 10):
    """The most frequent (true, predicted) mistakes at ``layer``, as (true, predicted, count)."""
    column = [e.layer for e in result.layers].index(layer)
    counts: dict[tuple[str, str], int] = {}
    for truth, guess in zip(result.labels, result.predictions[:, column], strict=True):
        if truth != guess:
            key = (emotions[int(truth)], emotions[int(guess)])
            counts[key] = counts.get(key, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
    return [{"true": t, "predicted": p, "count": c} for (t, p), c in ranked]
