"""The recommended layer follows the transfer dev half, within a tolerance of in-domain best."""

from __future__ import annotations

import numpy as np

from affectlens.validation.classification import ClassificationResult, LayerAccuracy, Rate
from affectlens.validation.layer_choice import (
    BY_IN_DOMAIN,
    BY_RECORD,
    BY_TRANSFER,
    recommend_layer,
)

N = 100


def in_domain(hits: dict[int, int]) -> ClassificationResult:
    """A classification result with ``hits`` of ``N`` top-1 per layer (best: its own pick)."""
    layers = [LayerAccuracy(layer, Rate.of(h, N), Rate.of(h, N)) for layer, h in hits.items()]
    best = max(layers, key=lambda e: (e.top1.value, -e.layer)).layer
    empty = np.zeros((0, len(layers)), dtype=int)
    return ClassificationResult(
        layers, 0.1, 0.5, best, N, 0, predictions=empty, labels=np.zeros(0, dtype=int)
    )


def transfer(hits: dict[int, int], split: str = "dev") -> dict:
    per_layer = [{"layer": layer, "top1": {"value": h / N}} for layer, h in hits.items()]
    return {"split": split, "basic6": {"pooled": {"n": N, "per_layer": per_layer}}}


def test_the_best_transfer_layer_within_the_in_domain_tolerance_is_recommended():
    classification = in_domain({6: 60, 10: 66, 14: 63, 18: 61, 22: 40})
    # layer 22 transfers best but is far below in-domain; 18 is the best of those within 0.05
    scores = transfer({6: 50, 10: 55, 14: 60, 18: 70, 22: 90})
    assert recommend_layer(classification, scores) == (18, BY_TRANSFER)


def test_ties_in_transfer_go_to_the_better_in_domain_layer():
    classification = in_domain({10: 66, 14: 64})
    assert recommend_layer(classification, transfer({10: 70, 14: 70})) == (10, BY_TRANSFER)


def test_without_a_dev_half_the_in_domain_best_is_recommended():
    classification = in_domain({10: 66, 14: 63})
    scores = {10: 50, 14: 70}
    assert recommend_layer(classification, transfer(scores, split="test")) == (10, BY_IN_DOMAIN)
    assert recommend_layer(classification, {"skipped": "transfer not requested"}) == (
        10,
        BY_IN_DOMAIN,
    )
    skipped_task = {"split": "dev", "basic6": {"skipped": "the vectors have 1 of these emotions"}}
    assert recommend_layer(classification, skipped_task) == (10, BY_IN_DOMAIN)


def test_without_a_dev_half_the_recorded_layer_is_kept():
    # the dev half chose 14 earlier; scoring the test half must neither re-choose nor move it
    classification = in_domain({10: 66, 14: 63})
    test_half = transfer({10: 50, 14: 70}, split="test")
    assert recommend_layer(classification, test_half, recorded=14) == (14, BY_RECORD)
    skipped = {"skipped": "transfer not requested"}
    assert recommend_layer(classification, skipped, recorded=14) == (14, BY_RECORD)
    # a recorded layer the vectors do not hold is ignored
    assert recommend_layer(classification, test_half, recorded=22) == (10, BY_IN_DOMAIN)


def test_a_dev_half_rechooses_whatever_is_recorded():
    classification = in_domain({10: 66, 14: 63})
    assert recommend_layer(classification, transfer({10: 50, 14: 70}), recorded=10) == (
        14,
        BY_TRANSFER,
    )
