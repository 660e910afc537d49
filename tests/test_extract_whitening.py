"""Within-emotion whitening in extraction (the default method) on tiny random models.

The streamed extraction is checked against a direct computation from per-story means with the
library's whitening functions, and against the method search's residual-stream artifact built
from the same means; ``whiten="none"`` against the unwhitened method.
"""

import math
import re
from itertools import pairwise

import pytest
import torch

from affectlens.errors import AffectlensError
from affectlens.experiments.method_search import Method, SearchData, raw_space_artifact
from affectlens.extract import (
    ExtractionSettings,
    extract_vectors,
    neutral_components,
    neutral_texts,
    project_out,
    text_means,
)
from affectlens.reducers import GroupMeanReducer, ScatterReducer
from affectlens.validation.classification import classify, settings_from, vector_centre
from affectlens.vectors import EmotionVectors
from affectlens.whitening import inverse_sqrt, shrink, shrunk_covariance, within_residuals
from test_extract import EMOTIONS, make_neutral, make_stories

SETTINGS = ExtractionSettings(start_token=3, batch_size=3)


@pytest.fixture(scope="module")
def corpus():
    return make_stories(per_emotion=5), make_neutral()


@pytest.fixture(scope="module")
def story_means(emo_model, corpus):
    """Per-story means [story, layer, hidden] of the train stories and their emotion rows."""
    stories, _ = corpus
    train = [s for s in stories if s.split == "train"]
    means = text_means(emo_model, [s.text for s in train], [0, 1, 2], SETTINGS, show_progress=False)
    return means, torch.tensor([EMOTIONS.index(s.emotion) for s in train])


@pytest.fixture(scope="module")
def neutral_means(emo_model, corpus):
    texts = neutral_texts(emo_model, corpus[1])
    return text_means(emo_model, texts, [0, 1, 2], SETTINGS, show_progress=False)


@pytest.fixture(scope="module")
def whitened(emo_model, corpus):
    return extract_vectors(emo_model, *corpus, SETTINGS, show_progress=False)


def test_the_default_is_within_whitening_at_half_shrinkage():
    settings = ExtractionSettings()
    assert (settings.whiten, settings.whiten_shrinkage) == ("within", 0.5)
    assert settings.method == "from20/nv0.5/within@0.5"
    assert settings.method == Method("from20", 0.5, "within", 0.5).name
    assert ExtractionSettings(whiten="none").method == "from20/nv0.5/none" == Method().name


@pytest.mark.parametrize(
    ("whiten", "shrinkage", "message"),
    [
        ("zca", 0.5, "unknown whitening 'zca' (choose none or within)"),
        ("within", 1.5, "whitening shrinkage must be in [0, 1], got 1.5"),
        ("within", -0.1, "whitening shrinkage must be in [0, 1]"),
        ("within", math.nan, "whitening shrinkage must be in [0, 1]"),
    ],
)
def test_bad_whitening_settings_are_refused(whiten, shrinkage, message):
    with pytest.raises(AffectlensError, match=re.escape(message)):
        ExtractionSettings(whiten=whiten, whiten_shrinkage=shrinkage)


def test_scatter_reducer_streams_the_within_scatter_of_any_batching():
    generator = torch.Generator().manual_seed(0)
    # a large common offset, as the residual stream has, under small within-group spread
    items = 1e4 + torch.randn(40, 2, 6, generator=generator, dtype=torch.float64)
    groups = torch.arange(40) % 3
    residuals = [within_residuals(items[:, c], groups) for c in range(2)]
    for cuts in ([0, 40], [0, 1, 17, 18, 40], list(range(41))):
        scatter, means = ScatterReducer(2, 6), GroupMeanReducer(["a", "b", "c"], 2, 6)
        for start, end in pairwise(cuts):
            scatter.add(items[start:end])
            means.add(groups[start:end], items[start:end])
        for column in range(2):
            expected = residuals[column].T @ residuals[column]
            torch.testing.assert_close(
                scatter.within(column, means), expected, atol=1e-7, rtol=1e-7
            )
    with pytest.raises(ValueError, match="other items"):
        scatter.within(0, GroupMeanReducer(["a", "b", "c"], 2, 6))


def test_streamed_extraction_equals_the_direct_computation(whitened, story_means, neutral_means):
    means, labels = story_means
    for column in range(3):
        rows = means[:, column].double()
        white = inverse_sqrt(shrunk_covariance(within_residuals(rows, labels), 0.5))
        per_emotion = torch.stack([(rows @ white)[labels == e].mean(dim=0) for e in range(3)])
        centred = per_emotion - per_emotion.mean(dim=0)
        pcs = neutral_components(neutral_means[:, column].double() @ white, 0.5).double()
        units = project_out(centred, pcs)
        directions = (units / units.norm(dim=-1, keepdim=True)) @ white
        expected = directions / directions.norm(dim=-1, keepdim=True)
        torch.testing.assert_close(
            whitened.vectors[:, column].double(), expected, atol=1e-5, rtol=0
        )
        raw = torch.stack([rows[labels == e].mean(dim=0) for e in range(3)])
        torch.testing.assert_close(whitened.raw_means[:, column].double(), raw, atol=1e-5, rtol=0)


def test_streamed_extraction_equals_the_method_search_raw_space_artifact(
    whitened, story_means, neutral_means
):
    means, labels = story_means
    data = SearchData(
        captures={"train": {"from20": means}, "neutral": {"from20": neutral_means}},
        layers=[0, 1, 2],
        emotions=EMOTIONS,
        train_labels=labels,
        test_labels=[],
        transfer={},
    )
    artifact, _ = raw_space_artifact(data, Method("from20", 0.5, "within", 0.5), 1)
    torch.testing.assert_close(whitened.vectors[:, 1], artifact.vectors[:, 0], atol=1e-4, rtol=0)
    torch.testing.assert_close(
        whitened.raw_means[:, 1], artifact.raw_means[:, 0], atol=1e-5, rtol=0
    )
    # whitening changed the directions: this is not the unwhitened method by another name
    plain, _ = raw_space_artifact(data, Method("from20", 0.5, "none"), 1)
    assert (whitened.vectors[:, 1] - plain.vectors[:, 0]).abs().max() > 1e-2


def test_whitened_vectors_are_unit_and_orthogonal_to_the_recorded_neutral_directions(whitened):
    torch.testing.assert_close(whitened.vectors.norm(dim=-1), torch.ones(3, 3))
    for column, layer in enumerate(whitened.layers):
        basis = whitened.neutral_pcs[layer]
        torch.testing.assert_close(basis @ basis.T, torch.eye(len(basis)), atol=1e-5, rtol=0)
        assert (whitened.vectors[:, column] @ basis.T).abs().max() < 1e-4


def test_none_is_the_unwhitened_method(emo_model, corpus, story_means, neutral_means):
    means, labels = story_means
    settings = ExtractionSettings(start_token=3, batch_size=3, whiten="none")
    plain = extract_vectors(emo_model, *corpus, settings, show_progress=False)
    for column, layer in enumerate(plain.layers):
        raw = torch.stack([means[labels == e, column].double().mean(dim=0) for e in range(3)])
        pcs = neutral_components(neutral_means[:, column], 0.5)
        torch.testing.assert_close(plain.neutral_pcs[layer], pcs, atol=1e-5, rtol=0)
        cleaned = project_out((raw - raw.mean(dim=0)).float(), pcs)
        expected = cleaned / cleaned.norm(dim=-1, keepdim=True)
        torch.testing.assert_close(plain.vectors[:, column], expected, atol=1e-5, rtol=0)
    # full shrinkage makes W a multiple of the identity: the unwhitened method again
    settings = ExtractionSettings(start_token=3, batch_size=3, whiten_shrinkage=1.0)
    isotropic = extract_vectors(emo_model, *corpus, settings, show_progress=False)
    torch.testing.assert_close(isotropic.vectors, plain.vectors, atol=1e-5, rtol=0)
    assert plain.provenance["method"] == "from3/nv0.5/none"


def test_no_shrinkage_of_a_singular_scatter_fails_clearly(emo_model, corpus):
    # 15 train stories in 64 dimensions: the within-emotion scatter has rank 12 at most
    settings = ExtractionSettings(start_token=3, batch_size=3, whiten_shrinkage=0.0)
    with pytest.raises(AffectlensError, match=r"covariance at layer 0 is singular \(15 stories"):
        extract_vectors(emo_model, *corpus, settings, show_progress=False)


def test_shrink_keeps_the_trace_and_moves_towards_the_mean_variance():
    cov = torch.diag(torch.tensor([1.0, 3.0, 8.0]))
    for shrinkage in (0.0, 0.3, 1.0):
        shrunk = shrink(cov, shrinkage)
        assert torch.isclose(torch.trace(shrunk), torch.tensor(12.0, dtype=torch.float64))
    assert torch.allclose(shrink(cov, 1.0), 4 * torch.eye(3, dtype=torch.float64))


def test_provenance_records_the_whitening_and_the_method(whitened, tmp_path):
    provenance = whitened.provenance
    assert provenance["settings"]["whiten"] == "within"
    assert provenance["settings"]["whiten_shrinkage"] == 0.5
    assert provenance["method"] == "from3/nv0.5/within@0.5"
    loaded = EmotionVectors.load(whitened.save(tmp_path / "v.safetensors"))
    assert loaded.provenance["method"] == "from3/nv0.5/within@0.5"
    assert settings_from(loaded).whiten == "within"


def test_an_artifact_from_before_whitening_loads_and_reads(emo_model, corpus, whitened, tmp_path):
    old = EmotionVectors.load(whitened.save(tmp_path / "v.safetensors"))
    del old.provenance["method"]
    for key in ("whiten", "whiten_shrinkage"):
        del old.provenance["settings"][key]
    loaded = EmotionVectors.load(old.save(tmp_path / "old.safetensors"))
    settings = settings_from(loaded)
    assert settings.start_token == 3
    stories = [s for s in corpus[0] if s.split == "train"]
    activations = text_means(
        emo_model, [s.text for s in stories], loaded.layers, settings, show_progress=False
    )
    labels = [loaded.emotions.index(s.emotion) for s in stories]
    result = classify(activations, labels, loaded.vectors, vector_centre(loaded), loaded.layers)
    assert result.predictions.shape == (len(stories), 3)
