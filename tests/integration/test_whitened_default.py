"""Integration: the default extraction method (within-emotion whitening) on the default model.

A CI-sized configuration of the method search's winner: vectors for the six basic emotions
only (their 72 train stories), at layer 14 only (the search's best layer), with every third
neutral passage (as the search read them), extracted with the default settings and scored
6-way on the **test** half of the transfer sets by the scorer ``affectlens validate
--transfer-split test`` uses. Only the basic six's transfer texts are read (312 of 1248): the
6-way task scores no other text, and reading all of them would triple the run time.
"""

from __future__ import annotations

import time

from affectlens.corpus.stories import load_neutral, load_stories
from affectlens.extract import ExtractionSettings, extract_vectors
from affectlens.validation.transfer import BASIC_EMOTIONS, load_transfer
from affectlens.validation.transfer_score import transfer_section

LAYER = 14


def basic6_test_half(model, **whitening) -> dict:
    """Pooled 6-way top-1 (hits, n, value, Wilson low/high) on the transfer test half, the
    artifact's method label and the seconds taken; ``whitening`` overrides the defaults."""
    started = time.perf_counter()
    stories = [s for s in load_stories() if s.emotion in BASIC_EMOTIONS]
    settings = ExtractionSettings(layers=(LAYER,), batch_size=8, **whitening)
    vectors = extract_vectors(model, stories, load_neutral()[::3], settings, show_progress=False)
    texts = [t for t in load_transfer() if t.emotion in BASIC_EMOTIONS]
    section = transfer_section(model, vectors, texts, split="test")
    top1 = section["basic6"]["pooled"]["per_layer"][0]["top1"]
    return {
        "method": vectors.provenance["method"],
        "stories_per_emotion": vectors.provenance["stories_per_emotion"],
        "top1": top1,
        "per_form": {
            form: entry["per_layer"][0]["top1"]["value"]
            for form, entry in section["basic6"]["per_form"].items()
        },
        "seconds": time.perf_counter() - started,
    }


def test_default_whitened_vectors_recognise_basic_emotions_out_of_genre(default_model):
    result = basic6_test_half(default_model)
    assert result["method"] == "from20/nv0.5/within@0.5"
    top1 = result["top1"]
    assert top1["n"] == 6 * 4 * 13
    # Measured once on the test half, 2026-12-03, with this configuration (basic6_test_half
    # with the defaults): 204/312 = 0.654, Wilson 95% [0.599, 0.704] (chance 0.17; the
    # method search's 24-emotion whitened readout scored 0.66 there). The floor is that value
    # minus 0.1, rounded down; it is a floor for the pipeline, not a comparison of methods.
    assert top1["value"] >= 0.55, f"6-way test top-1 {top1['value']:.3f} on n={top1['n']}"
