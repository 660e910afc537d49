"""Run every validation check on one artifact and model; returns a JSON-ready dict."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from affectlens.corpus.stories import Story
from affectlens.errors import AffectlensError
from affectlens.extract import ExtractionSettings
from affectlens.models.loading import LoadedModel
from affectlens.validation.antonyms import antonym_cosines
from affectlens.validation.classification import (
    add_cluster_accuracy,
    classify,
    confusions,
    held_out_stories,
    read_activations,
    settings_from,
    vector_centre,
)
from affectlens.validation.clusters import cluster_listing, cluster_order, cosine_matrix, kmeans
from affectlens.validation.cross_half import cross_half_report
from affectlens.validation.geometry import Norm, affect_alignment, valence_by_layer
from affectlens.validation.layer_choice import recommend_layer
from affectlens.validation.logit_lens import logit_lens
from affectlens.validation.stability import split_half_cosines, summarise
from affectlens.validation.transfer import TransferText
from affectlens.validation.transfer_score import transfer_section
from affectlens.vectors import EmotionVectors
from affectlens.whitening import Whitening


@dataclass(frozen=True)
class ValidationOptions:
    """Knobs of ``affectlens validate``."""

    layer: int | None = None
    lens_layer: int | None = None
    clusters: int = 10
    seed: int = 0
    top_tokens: int = 10
    stability_stories: int | None = 20
    batch_size: int | None = None
    show_progress: bool = False
    transfer_split: str = "dev"
    transfer_source: str = "shipped"


def late_layer(vectors: EmotionVectors) -> int:
    """The artifact's layer nearest 90% depth: the logit lens reads best close to the output."""
    num_layers = vectors.provenance.get("model", {}).get("num_layers", max(vectors.layers) + 1)
    return min(vectors.layers, key=lambda layer: abs(layer - 0.9 * (num_layers - 1)))


def train_sample(stories: list[Story], emotions: list[str], cap: int | None) -> list[Story]:
    """Train stories of the artifact's emotions, at most ``cap`` per emotion (corpus order)."""
    taken: dict[str, int] = {}
    sample = []
    for story in stories:
        if story.split != "train" or story.emotion not in emotions:
            continue
        if cap is not None and taken.get(story.emotion, 0) >= cap:
            continue
        taken[story.emotion] = taken.get(story.emotion, 0) + 1
        sample.append(story)
    return sample


def half_method(vectors: EmotionVectors) -> Whitening:
    """The whitening the artifact was extracted with (provenance ``settings``), which the
    split-half checks rebuild each half by; an artifact that records no whitening predates it
    and was built unwhitened (``"none"``)."""
    recorded = vectors.provenance.get("settings", {}) or {}
    return Whitening(
        recorded.get("whiten", "none"),
        float(recorded.get("whiten_shrinkage", ExtractionSettings.whiten_shrinkage)),
    )


def validate(
    vectors: EmotionVectors,
    model: LoadedModel,
    stories: list[Story],
    norms: dict[str, Norm] | None,
    options: ValidationOptions | None = None,
    transfer: list[TransferText] | None = None,
) -> dict:
    """Classification, geometry, clusters, logit lens, stability and transfer, as one dict.

    ``transfer`` texts (all splits; ``options.transfer_split`` picks the one scored) add the
    out-of-genre section; without them it is marked skipped. The layer-dependent sections read
    ``options.layer`` or else the recommended layer (:func:`recommend_layer`: chosen on the
    transfer dev half when it was scored, else the layer the vectors file records, else the
    best held-out layer).
    """
    options = options or ValidationOptions()
    for chosen in (options.layer, options.lens_layer):
        if chosen is not None:
            vectors.layer_index(chosen)
    emotions = vectors.emotions
    held = held_out_stories(stories, emotions)
    settings = settings_from(vectors, options.batch_size)
    activations = read_activations(
        model, held.stories, vectors.layers, settings, show_progress=options.show_progress
    )
    centre = vector_centre(vectors)
    classification = classify(
        activations, held.labels, vectors.vectors, centre, vectors.layers, ignored=held.ignored
    )
    transfer_result = (
        transfer_section(
            model,
            vectors,
            transfer,
            split=options.transfer_split,
            settings=settings,
            source=options.transfer_source,
            show_progress=options.show_progress,
        )
        if transfer is not None
        else {"skipped": "transfer not requested"}
    )
    recommended, rule = recommend_layer(
        classification, transfer_result, vectors.provenance.get("recommended_layer")
    )
    layer = options.layer if options.layer is not None else recommended
    at_layer = vectors.at_layer(layer).float()

    k = min(options.clusters, len(emotions))
    clustering = kmeans(at_layer.numpy(), k, seed=options.seed)
    add_cluster_accuracy(classification, clustering.labels)
    order = cluster_order(emotions, clustering.labels)

    geometry = affect_alignment(emotions, at_layer.numpy(), norms)
    geometry["layer"] = layer
    if norms is not None:
        geometry["by_layer"] = valence_by_layer(
            emotions, vectors.vectors.float().numpy(), vectors.layers, norms
        )

    lens_layer = options.lens_layer if options.lens_layer is not None else late_layer(vectors)
    lens_column = vectors.layer_index(lens_layer)
    scale = float(vectors.residual_norms[lens_column]) if vectors.residual_norms.numel() else 1.0
    lens_vectors = vectors.at_layer(lens_layer).float()
    lens = logit_lens(model, lens_vectors, emotions, scale=scale, k=options.top_tokens)

    ratings = {e: (v, geometry["arousal"][e]) for e, v in (geometry.get("valence") or {}).items()}
    stability, cross_half = train_checks(
        vectors, model, stories, layer, settings, options, ratings or None
    )
    geometry["cross_half"] = cross_half
    geometry["antonyms"] = antonym_cosines(
        emotions, vectors.vectors.float().numpy(), vectors.layers
    )
    geometry["antonyms"]["layer"] = layer

    return {
        "model": model.name,
        "emotions": emotions,
        "layers": vectors.layers,
        "layer": layer,
        "layer_source": "--layer" if options.layer is not None else rule,
        "recommended_layer": recommended,
        "recommendation_rule": rule,
        "classification": classification.to_json()
        | {"confusions": confusions(classification, emotions, layer)},
        "geometry": geometry,
        "clusters": {
            "k": k,
            "seed": options.seed,
            "layer": layer,
            "inertia": clustering.inertia,
            "members": cluster_listing(emotions, clustering.labels),
            "order": [emotions[i] for i in order],
            "cosine": np.round(cosine_matrix(at_layer.numpy())[np.ix_(order, order)], 4).tolist(),
        },
        "logit_lens": {
            "layer": lens_layer,
            "scale": scale,
            "k": options.top_tokens,
            "tokens": lens,
        },
        "stability": stability,
        "transfer": transfer_result,
    }


def train_checks(
    vectors: EmotionVectors,
    model: LoadedModel,
    stories: list[Story],
    layer: int,
    settings: ExtractionSettings,
    options: ValidationOptions,
    ratings: dict[str, tuple[float, float]] | None,
) -> tuple[dict, dict]:
    """Split-half stability and the cross-half PCA, from one read of the train sample.

    Both rebuild each half's vectors by the artifact's method (:func:`half_method`), from the
    text forms it was trained on, and record it. ``ratings`` (emotion -> (valence, arousal))
    adds each cross-half axis's |r| with them.
    """
    emotions = vectors.emotions
    whitening = half_method(vectors)
    forms = (vectors.provenance.get("settings") or {}).get("forms")
    if forms:
        stories = [s for s in stories if s.form in forms]
    sample = train_sample(stories, emotions, options.stability_stories)
    neutral_pcs = vectors.neutral_pcs.get(layer)
    try:
        if not sample:
            raise AffectlensError("the corpus has no train stories of these emotions")
        train = read_activations(
            model,
            sample,
            [layer],
            settings,
            show_progress=options.show_progress,
            description="train stories",
        )[:, 0]
        labels = [emotions.index(s.emotion) for s in sample]
        cosines = split_half_cosines(
            train,
            labels,
            neutral_pcs=neutral_pcs,
            seed=options.seed,
            whitening=whitening,
        )
        stability = summarise(cosines, emotions)
        stability["method"] = whitening.as_json()
        stability["stories"] = len(sample)
        stability["max_stories_per_emotion"] = options.stability_stories
    except AffectlensError as exc:
        return {"skipped": str(exc), "layer": layer}, {"skipped": str(exc), "layer": layer}
    stability["layer"] = layer
    try:
        cross_half = cross_half_report(
            train,
            labels,
            vectors.at_layer(layer).float().numpy(),
            emotions,
            neutral_pcs=neutral_pcs,
            seed=options.seed,
            whitening=whitening,
            norms=ratings,
        )
    except AffectlensError as exc:
        cross_half = {"skipped": str(exc)}
    cross_half["layer"] = layer
    return stability, cross_half


__all__ = ["ValidationOptions", "validate"]
