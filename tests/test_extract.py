"""Emotion-vector extraction on a tiny synthetic corpus and tiny random models."""

import json
from dataclasses import replace

import pytest
import torch
from safetensors import safe_open

import affectlens.extract as extract_module
from affectlens.corpus.stories import NeutralPassage, Story
from affectlens.errors import AffectlensError
from affectlens.extract import (
    ExtractionSettings,
    extract_vectors,
    make_batches,
    neutral_components,
    project_out,
    resolve_layers,
)
from conftest import build_family_loaded

EMOTIONS = ["happy", "afraid", "angry"]
WORDS = {
    "happy": "sunny laughter joy smile bright warm",
    "afraid": "dark shadow tremble creak scream cold",
    "angry": "slam shout fury red clenched boil",
}


def make_stories(per_emotion=3, emotions=EMOTIONS):
    stories = []
    for emotion in emotions:
        for i in range(per_emotion):
            text = f"Story {i}: she felt {WORDS[emotion]} " * (1 + i % 2)
            stories.append(Story(emotion=emotion, split="train", topic="t", text=text))
        stories.append(Story(emotion=emotion, split="test", topic="t", text="held out " * 3))
    return stories


def make_neutral():
    passages = [
        NeutralPassage(
            kind="prose", topic="t", text=f"Item {i}: the table has {i} legs and a lamp."
        )
        for i in range(5)
    ]
    messages = ({"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"})
    passages.append(NeutralPassage(kind="chat", topic="t", messages=messages))
    return passages


SETTINGS = ExtractionSettings(start_token=3, batch_size=2, neutral_variance=0.5)


@pytest.fixture(scope="module")
def corpus():
    return make_stories(), make_neutral()


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2"])
def test_extract_shapes_unit_norm_and_neutral_projection(family, corpus):
    loaded = build_family_loaded(family, 3)
    stories, neutral = corpus
    result = extract_vectors(loaded, stories, neutral, SETTINGS, show_progress=False)
    assert result.emotions == EMOTIONS
    assert result.layers == [0, 1, 2]
    assert result.vectors.shape == (3, 3, 64)
    assert result.raw_means.shape == (3, 3, 64)
    assert result.residual_norms.shape == (3,)
    assert (result.residual_norms > 0).all()
    assert torch.isfinite(result.vectors).all()
    torch.testing.assert_close(result.vectors.norm(dim=-1), torch.ones(3, 3))
    assert sorted(result.neutral_pcs) == [0, 1, 2]
    for column, layer in enumerate(result.layers):
        pcs = result.neutral_pcs[layer]
        assert pcs.ndim == 2 and pcs.shape[1] == 64 and 1 <= pcs.shape[0] <= len(neutral)
        torch.testing.assert_close(pcs @ pcs.T, torch.eye(len(pcs)), atol=1e-5, rtol=0)
        overlap = result.vectors[:, column] @ pcs.T
        assert overlap.abs().max() < 1e-5
    provenance = result.provenance
    assert provenance["stories_per_emotion"] == {e: 3 for e in EMOTIONS}
    assert provenance["neutral_passages"] == len(neutral)
    assert provenance["model"]["fingerprint"] == loaded.fingerprint()
    assert len(provenance["corpus_sha256"]) == 64


def test_vectors_are_centred_differences_of_raw_means(emo_model, corpus):
    stories, neutral = corpus
    settings = ExtractionSettings(start_token=3, batch_size=4, layers=(1,), whiten="none")
    result = extract_vectors(emo_model, stories, neutral, settings, show_progress=False)
    assert result.layers == [1]
    raw = result.raw_means[:, 0]
    centred = raw - raw.mean(dim=0)
    expected = project_out(centred, result.neutral_pcs[1])
    expected = expected / expected.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(result.vectors[:, 0], expected, atol=1e-5, rtol=1e-4)


def test_raw_means_independent_of_batch_size(emo_model, corpus):
    stories, neutral = corpus
    one = extract_vectors(
        emo_model,
        stories,
        neutral,
        ExtractionSettings(start_token=3, batch_size=1),
        show_progress=False,
    )
    many = extract_vectors(
        emo_model,
        stories,
        neutral,
        ExtractionSettings(start_token=3, batch_size=5),
        show_progress=False,
    )
    torch.testing.assert_close(one.raw_means, many.raw_means, atol=1e-4, rtol=1e-4)


def test_neutral_components_reach_requested_share():
    generator = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(16, 16, generator=generator))
    scales = torch.tensor([10.0, 6.0, 3.0, 1.0, 0.5] + [0.01] * 11)
    data = torch.randn(200, 16, generator=generator) * scales @ basis.T
    centred = (data - data.mean(dim=0)).double()
    total = (centred**2).sum()
    for share in (0.3, 0.5, 0.9, 0.99):
        pcs = neutral_components(data, share).double()
        captured = ((centred @ pcs.T) ** 2).sum() / total
        assert captured >= share
        fewer = pcs[:-1]
        if len(fewer):
            assert ((centred @ fewer.T) ** 2).sum() / total < share  # the minimal count
    assert len(neutral_components(data, 0.5)) < len(neutral_components(data, 0.99))


def test_project_out_removes_span():
    generator = torch.Generator().manual_seed(1)
    components, _ = torch.linalg.qr(torch.randn(8, 2, generator=generator))
    components = components.T
    vectors = torch.randn(4, 8, generator=generator)
    cleaned = project_out(vectors, components)
    assert (cleaned @ components.T).abs().max() < 1e-5
    torch.testing.assert_close(project_out(cleaned, components), cleaned)


def interrupt_extraction(
    monkeypatch, model, stories, neutral, settings, checkpoint, *, at, error=KeyboardInterrupt
):
    """Run an extraction that raises ``error`` at its ``at``-th batch, so ``checkpoint`` holds
    the batches before it; the real batch reader is restored afterwards."""
    real = extract_module.batch_means
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(extract_module, "batch_means", failing)
    with pytest.raises(error):
        extract_vectors(
            model, stories, neutral, settings, checkpoint=checkpoint, show_progress=False
        )
    monkeypatch.setattr(extract_module, "batch_means", real)


@pytest.mark.parametrize("whiten", ["within", "none"])
def test_resume_after_interruption_gives_identical_vectors(
    emo_model, corpus, tmp_path, monkeypatch, whiten
):
    stories, neutral = corpus
    settings = ExtractionSettings(start_token=3, batch_size=2, checkpoint_every=1, whiten=whiten)
    reference = extract_vectors(emo_model, stories, neutral, settings, show_progress=False)
    story_batches = len(
        make_batches(emo_model, [s.text for s in stories if s.split == "train"], settings)
    )
    assert story_batches >= 4

    checkpoint = tmp_path / "not-yet-made" / "ck.pt"  # the folder is created when needed
    interrupt_extraction(monkeypatch, emo_model, stories, neutral, settings, checkpoint, at=3)
    assert checkpoint.exists()
    with safe_open(str(checkpoint), framework="pt") as handle:  # safetensors, no pickle
        assert handle.metadata()["batches_done"] == "2"
        names = list(handle.keys())
    # the within-emotion scatter is checkpointed with the other reducers
    assert ("scatter.outer" in names) == (whiten == "within")

    counted = {"n": 0}
    real = extract_module.batch_means

    def counting(*args, **kwargs):
        counted["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(extract_module, "batch_means", counting)
    resumed = extract_vectors(
        emo_model,
        stories,
        neutral,
        settings,
        checkpoint=checkpoint,
        resume=True,
        show_progress=False,
    )
    neutral_batches = len(make_batches(emo_model, [p.text or "" for p in neutral], settings))
    assert counted["n"] == story_batches - 2 + neutral_batches  # finished batches were skipped
    assert torch.equal(resumed.vectors, reference.vectors)
    assert torch.equal(resumed.raw_means, reference.raw_means)
    assert torch.equal(resumed.residual_norms, reference.residual_norms)
    for layer, pcs in reference.neutral_pcs.items():
        assert torch.equal(resumed.neutral_pcs[layer], pcs)
    # kept until the calibrated artifact is on disk (the CLI removes it then)
    assert checkpoint.exists()
    assert not (tmp_path / "ck.pt.partial").exists()


def test_resume_refuses_checkpoint_of_other_settings(emo_model, corpus, tmp_path, monkeypatch):
    stories, neutral = corpus
    checkpoint = tmp_path / "ck.pt"
    settings = ExtractionSettings(start_token=3, batch_size=2, checkpoint_every=1)
    interrupt_extraction(
        monkeypatch, emo_model, stories, neutral, settings, checkpoint, at=2, error=RuntimeError
    )
    other = ExtractionSettings(start_token=4, batch_size=2, checkpoint_every=1)
    with pytest.raises(AffectlensError, match="another corpus or settings"):
        extract_vectors(
            emo_model,
            stories,
            neutral,
            other,
            checkpoint=checkpoint,
            resume=True,
            show_progress=False,
        )
    with pytest.raises(AffectlensError, match="another corpus or settings"):
        extract_vectors(
            emo_model,
            stories[1:],
            neutral,
            settings,
            checkpoint=checkpoint,
            resume=True,
            show_progress=False,
        )


PRE_WHITENING_FIELDS = (
    "layers", "start_token", "outlier_factor", "neutral_variance", "batch_size",
    "max_stories_per_emotion", "min_stories", "max_tokens", "checkpoint_every",
)  # fmt: skip
"""ExtractionSettings' fields before whitening existed, which its checkpoints recorded."""


def test_a_checkpoint_from_before_whitening_resumes_only_unwhitened(
    emo_model, corpus, tmp_path, monkeypatch
):
    stories, neutral = corpus
    settings = ExtractionSettings(start_token=3, batch_size=2, checkpoint_every=1, whiten="none")
    reference = extract_vectors(emo_model, stories, neutral, settings, show_progress=False)
    checkpoint = tmp_path / "ck.pt"
    interrupt_extraction(monkeypatch, emo_model, stories, neutral, settings, checkpoint, at=3)
    with safe_open(str(checkpoint), framework="pt") as handle:
        identity = json.loads(handle.metadata()["identity"])
    assert tuple(identity["settings"]) == tuple(sorted(PRE_WHITENING_FIELDS))

    within = ExtractionSettings(start_token=3, batch_size=2, checkpoint_every=1)
    with pytest.raises(AffectlensError, match="before whitening existed: resume it with --whiten"):
        extract_vectors(
            emo_model, stories, neutral, within, checkpoint=checkpoint, resume=True,
            show_progress=False,
        )  # fmt: skip
    resumed = extract_vectors(
        emo_model, stories, neutral, settings, checkpoint=checkpoint, resume=True,
        show_progress=False,
    )  # fmt: skip
    assert torch.equal(resumed.vectors, reference.vectors)
    assert torch.equal(resumed.raw_means, reference.raw_means)


def test_forms_choose_the_training_texts_and_are_recorded(emo_model, corpus):
    stories, neutral = corpus
    others = [
        Story(s.emotion, "train", "t", f"{form}: " + s.text, form=form)
        for s in stories
        if s.split == "train"
        for form in ("first_person", "dialogue")
    ]
    settings = ExtractionSettings(start_token=3, batch_size=2)
    mixed = extract_vectors(emo_model, stories + others, neutral, settings, show_progress=False)
    trained = sum(s.split == "train" for s in stories)
    assert mixed.provenance["texts_per_form"] == {
        "story": trained, "first_person": trained, "dialogue": trained
    }  # fmt: skip
    only = replace(settings, forms=("story",))
    stories_only = extract_vectors(emo_model, stories + others, neutral, only, show_progress=False)
    plain = extract_vectors(emo_model, stories, neutral, settings, show_progress=False)
    assert stories_only.provenance["texts_per_form"] == {"story": trained}
    assert list(stories_only.provenance["settings"]["forms"]) == ["story"]
    assert torch.equal(stories_only.vectors, plain.vectors)
    assert not torch.allclose(mixed.vectors, plain.vectors)
    for bad in (("poem",), ()):
        with pytest.raises(AffectlensError, match="forms must be some of story"):
            ExtractionSettings(forms=bad)


def test_too_few_stories_raises(emo_model):
    stories = make_stories(per_emotion=3)
    stories = [s for s in stories if not (s.emotion == "angry" and s.split == "train")]
    stories.append(Story(emotion="angry", split="train", topic="t", text="one angry story"))
    with pytest.raises(AffectlensError, match="too few training stories.*angry"):
        extract_vectors(emo_model, stories, make_neutral(), SETTINGS, show_progress=False)


def test_empty_corpus_raises(emo_model):
    with pytest.raises(AffectlensError, match="no training stories"):
        extract_vectors(emo_model, [], make_neutral(), SETTINGS, show_progress=False)
    only_test = [s for s in make_stories() if s.split == "test"]
    with pytest.raises(AffectlensError, match="no training stories"):
        extract_vectors(emo_model, only_test, make_neutral(), SETTINGS, show_progress=False)


def test_empty_neutral_corpus_raises(emo_model):
    with pytest.raises(AffectlensError, match="neutral corpus is empty"):
        extract_vectors(emo_model, make_stories(), [], SETTINGS, show_progress=False)


@pytest.mark.parametrize("layers", [(3,), (-1,), (0, 7)])
def test_out_of_range_layers_raise(emo_model, layers):
    with pytest.raises(AffectlensError, match="out of range"):
        resolve_layers(emo_model, layers)
    settings = ExtractionSettings(layers=layers, start_token=3)
    with pytest.raises(AffectlensError, match="out of range"):
        extract_vectors(emo_model, make_stories(), make_neutral(), settings, show_progress=False)


def test_resolve_layers_default_and_dedup(emo_model):
    assert resolve_layers(emo_model, None) == [0, 1, 2]
    assert resolve_layers(emo_model, (2, 0, 2)) == [0, 2]


def test_max_stories_per_emotion_caps_usage(emo_model):
    settings = ExtractionSettings(start_token=3, batch_size=4, max_stories_per_emotion=2)
    result = extract_vectors(
        emo_model, make_stories(3), make_neutral(), settings, show_progress=False
    )
    assert result.provenance["stories_per_emotion"] == {e: 2 for e in EMOTIONS}


def test_make_batches_sorted_right_padded(emo_model):
    texts = ["a much longer text here", "ab", "medium text"]
    settings = ExtractionSettings(batch_size=2, max_tokens=15)
    batches = make_batches(emo_model, texts, settings)
    assert [b.items for b in batches] == [[1, 2], [0]]
    first = batches[0]
    assert first.attention_mask[0].tolist()[:2] == [1, 1]
    assert first.attention_mask[0, -1] == 0  # right padding on the shorter text
    assert (
        first.input_ids[0][first.attention_mask[0] == 0] == emo_model.tokenizer.pad_token_id
    ).all()
    assert batches[1].input_ids.shape[1] == 15  # truncated to max_tokens
