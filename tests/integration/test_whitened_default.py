"""Integration: the default extraction method on the default model.

The default is the candidate search's winner (``scripts/method_search.py candidates``): the
corpus's stories and its texts in three other forms, whitened by the within-emotion
covariance. A CI-sized configuration of it: vectors for the six basic emotions only (their 72
train stories and 72 mixed-form texts), at layer 18 only (the search's best layer), with every
third neutral passage (as the search read them), extracted with the default settings and
scored 6-way on the **test** half of the transfer sets by the scorer ``affectlens validate
--transfer-split test`` uses. Only the basic six's transfer texts are read (312 of 1248): the
6-way task scores no other text, and reading all of them would triple the run time.
"""

from __future__ import annotations

import time

from affectlens.corpus.stories import load_neutral, load_stories
from affectlens.extract import ExtractionSettings, extract_vectors
from affectlens.validation.transfer import BASIC_EMOTIONS, load_transfer
from affectlens.validation.transfer_score import transfer_section

LAYER = 18


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
    assert result["stories_per_emotion"] == {e: 24 for e in BASIC_EMOTIONS}
    # Measured once on the test half, 2026-12-07, with this configuration (basic6_test_half
    # with the defaults, 12 stories + 12 mixed-form texts per emotion, layer 18): 227/312 =
    # 0.728, Wilson 95% [0.676, 0.774] (chance 0.17; per form: second person 0.83, diary 0.79,
    # dialogue 0.71, social post 0.58; the stories-only default scored 0.654 at layer 14). The
    # floor is that value minus 0.1, rounded down; a floor for the pipeline, not a comparison.
    assert top1["value"] >= 0.62, f"6-way test top-1 {top1['value']:.3f} on n={top1['n']}"
