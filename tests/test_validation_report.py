"""``affectlens validate`` end to end on a tiny random Llama: report files, logit lens, and
one-line errors for bad input."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
import torch

from affectlens.cli import main
from affectlens.validation.logit_lens import lens_logits, logit_lens
from affectlens.validation.report import SECTIONS
from affectlens.validation.run import ValidationOptions, validate
from affectlens.vectors import EmotionVectors
from conftest import build_emotion_vectors, build_loaded

EMOTIONS = ["calm", "desperate", "happy", "afraid", "angry"]
TEXTS = {
    "calm": "The lake was still and she breathed slowly, letting the quiet evening settle.",
    "desperate": "He begged again, nothing left, every door shut, he had to find money tonight.",
    "happy": "She laughed out loud when the letter came, grinning all the way down the road.",
    "afraid": "Footsteps behind him in the dark alley; his heart pounded and he dared not turn.",
    "angry": "She slammed the door so hard the frame shook, furious at the lie he had told.",
}


def _corpus(path, with_test: bool = True):
    lines = []
    for emotion, text in TEXTS.items():
        for i in range(4):
            record = {"emotion": emotion, "split": "train", "topic": "t", "text": f"{i} {text}"}
            lines.append(json.dumps(record))
        if with_test:
            for i in range(2):
                record = {"emotion": emotion, "split": "test", "topic": "t", "text": f"{text} {i}"}
                lines.append(json.dumps(record))
    lines.append(json.dumps({"emotion": "bored", "split": "test", "topic": "t", "text": "zzz"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _norms(path):
    rows = ["emotion,valence,arousal", "calm,7,2", "desperate,2,7", "happy,8,6", "afraid,2,8"]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def artifact(tmp_path, emo_model, emo_model_dir):
    vectors = build_emotion_vectors(emo_model, EMOTIONS, model_id=str(emo_model_dir))
    vectors.provenance["settings"] = {"start_token": 2, "batch_size": 4}
    return vectors.save(tmp_path / "vectors.safetensors")


class _Sections(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.images, self.external = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.ids.append(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag in ("script", "link") or (tag == "img" and "://" in attrs.get("src", "")):
            self.external.append(tag)


def test_cli_writes_report_with_every_section(tmp_path, artifact, capsys):
    out = tmp_path / "report"
    argv = ["validate", "--vectors", str(artifact), "--corpus", str(_corpus(tmp_path / "s.jsonl"))]
    argv += ["--norms", str(_norms(tmp_path / "n.csv")), "--out", str(out), "--clusters", "3"]
    argv += ["--quiet", "--no-transfer"]  # transfer: tests/test_validation_sanity.py
    assert main(argv) == 0
    assert "report:" in capsys.readouterr().err
    page = _Sections()
    page.feed((out / "index.html").read_text(encoding="utf-8"))
    assert page.ids == list(SECTIONS)
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert page.external == []

    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["command"].startswith("affectlens validate --vectors ")
    ids = [figure["id"] for figure in report["figures"]]
    assert len(ids) == len(page.images)
    for section in ("classification", "geometry", "clusters", "stability"):
        assert any(figure["section"] == section for figure in report["figures"])
    for figure in report["figures"]:
        assert figure["n"] > 0 and "ci" in figure and figure["command"] == report["command"]
    results = report["results"]
    cls = results["classification"]
    assert cls["n"] == 10 and cls["ignored_test_stories"] == 1
    assert len(cls["per_layer"]) == 3
    for entry in cls["per_layer"]:
        assert 0 <= entry["top1"]["low"] <= entry["top1"]["value"] <= entry["top1"]["high"]
        assert entry["cluster"]["value"] >= entry["top1"]["value"]
    assert results["layer"] == results["recommended_layer"]
    recorded = EmotionVectors.load(artifact).provenance["recommended_layer"]
    assert recorded == results["recommended_layer"]
    assert results["geometry"]["matched"] == {e: e for e in EMOTIONS[:4]}
    assert results["geometry"]["unmatched"] == ["angry"]
    assert len(results["geometry"]["by_layer"]) == 3
    assert sum(len(group) for group in results["clusters"]["members"]) == 5
    assert len(results["clusters"]["members"]) == 3
    assert len(results["logit_lens"]["tokens"]) == 5
    assert results["logit_lens"]["layer"] == max(EmotionVectors.load(artifact).layers)
    assert results["stability"]["n_emotions"] == 5
    assert not list(tmp_path.glob(".report.*"))  # staging folder renamed away

    # a second run replaces the folder atomically
    assert main([*argv, "--layer", "0"]) == 0
    again = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert again["results"]["layer"] == 0 and "--layers 0" in again["command"]


def test_validate_classifies_text_means_it_planted(tmp_path, emo_model):
    """Vectors planted as the test stories' own centred means classify them perfectly."""
    from affectlens.corpus.stories import load_stories
    from affectlens.validation.classification import held_out_stories, read_activations
    from affectlens.validation.classification import settings_from as settings_of

    stories = load_stories(_corpus(tmp_path / "s.jsonl"))
    vectors = build_emotion_vectors(emo_model, EMOTIONS)
    vectors.provenance["settings"] = {"start_token": 2}
    held = held_out_stories(stories, EMOTIONS)
    acts = read_activations(emo_model, held.stories, vectors.layers, settings_of(vectors))
    labels = torch.tensor(held.labels)
    means = torch.stack([acts[labels == e].mean(dim=0) for e in range(len(EMOTIONS))])
    vectors.raw_means = means
    centred = means - means.mean(dim=0)
    vectors.vectors = centred / centred.norm(dim=-1, keepdim=True)
    results = validate(vectors, emo_model, stories, None, ValidationOptions(clusters=2))
    assert all(entry["top1"]["value"] == 1.0 for entry in results["classification"]["per_layer"])
    assert results["geometry"]["correlations"] == {}


def test_logit_lens_is_norm_then_unembedding_without_a_forward(emo_model):
    vectors = torch.randn(3, emo_model.hidden_size)
    calls = []
    hooks = [layer.register_forward_hook(lambda *_: calls.append(1)) for layer in emo_model.layers]
    try:
        logits = lens_logits(emo_model, vectors, scale=2.0)
        rows = logit_lens(emo_model, vectors, ["a", "b", "c"], scale=2.0, k=4)
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == []
    with torch.no_grad():
        expected = emo_model.model.lm_head(emo_model.model.model.norm(2.0 * vectors))
    assert torch.allclose(logits, expected, atol=1e-5)
    assert [t["id"] for t in rows[1]["top"]] == expected[1].topk(4).indices.tolist()
    assert [t["id"] for t in rows[2]["bottom"]] == (-expected[2]).topk(4).indices.tolist()
    assert rows[0]["top"][0]["token"] == emo_model.tokenizer.decode([rows[0]["top"][0]["id"]])


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    # transformers may print a weight-loading progress bar first; the error is one line
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1 and errors[0] == lines[-1] and lines[-1].startswith("error: ")
    return lines[-1]


def test_bad_inputs_fail_with_one_line(tmp_path, artifact, capsys, emo_model_dir):
    corpus = str(_corpus(tmp_path / "s.jsonl"))
    base = ["validate", "--vectors", str(artifact), "--corpus", corpus, "--out", str(tmp_path)]
    assert "not found" in _one_line_error(
        capsys, ["validate", "--vectors", str(tmp_path / "none.safetensors")]
    )
    bad_norms = tmp_path / "bad.csv"
    bad_norms.write_text("word,pleasure\nhappy,1\n", encoding="utf-8")
    assert "needs columns" in _one_line_error(capsys, [*base, "--norms", str(bad_norms)])
    unrelated = tmp_path / "unrelated.csv"
    unrelated.write_text("emotion,valence,arousal\nzesty,1,2\n", encoding="utf-8")
    err = _one_line_error(capsys, [*base, "--norms", str(unrelated), "--quiet"])
    assert "no emotion" in err
    assert "layer 9" in _one_line_error(capsys, [*base, "--layer", "9"])
    no_test = str(_corpus(tmp_path / "train_only.jsonl", with_test=False))
    no_test_argv = ["validate", "--vectors", str(artifact), "--corpus", no_test, "--quiet"]
    # the stray "bored" test story is of an emotion not in the vectors
    assert "no test story" in _one_line_error(capsys, no_test_argv)

    other = build_emotion_vectors(build_loaded(seed=7), EMOTIONS, model_id=str(emo_model_dir))
    other_path = other.save(tmp_path / "other.safetensors")
    other_argv = ["validate", "--vectors", str(other_path), "--corpus", corpus]
    assert "do not fit" in _one_line_error(capsys, other_argv)


def test_split_half_checks_follow_the_artifacts_method(tmp_path, emo_model):
    """An artifact the extraction code whitened has its halves rebuilt whitened (same shrinkage)
    and says so; one whose provenance predates whitening (no ``whiten``) keeps the unwhitened
    halves."""
    from dataclasses import asdict, replace

    from affectlens.corpus.stories import NeutralPassage, load_stories
    from affectlens.extract import ExtractionSettings, extract_vectors
    from affectlens.validation.classification import read_activations, settings_from
    from affectlens.validation.run import train_sample
    from affectlens.validation.stability import split_half_cosines
    from affectlens.whitening import Whitening

    stories = load_stories(_corpus(tmp_path / "s.jsonl"))
    neutral = [
        NeutralPassage(kind="prose", topic="t", text=f"Item {i}: a table with {i} legs.")
        for i in range(6)
    ]
    settings = ExtractionSettings(start_token=2, batch_size=4, whiten_shrinkage=0.4)
    vectors = extract_vectors(emo_model, stories, neutral, settings, show_progress=False)
    assert vectors.provenance["settings"]["whiten"] == "within"
    options = ValidationOptions(layer=1, clusters=2)
    results = validate(vectors, emo_model, stories, None, options)
    stability, cross = results["stability"], results["geometry"]["cross_half"]
    assert stability["method"] == cross["method"] == {"whiten": "within", "shrinkage": 0.4}

    sample = train_sample(stories, EMOTIONS, options.stability_stories)
    train = read_activations(emo_model, sample, [1], settings_from(vectors))[:, 0]
    labels = [EMOTIONS.index(s.emotion) for s in sample]
    pcs = vectors.neutral_pcs[1]
    white = split_half_cosines(train, labels, neutral_pcs=pcs, whitening=Whitening("within", 0.4))
    plain = split_half_cosines(train, labels, neutral_pcs=pcs)
    assert max(abs(white[e] - plain[e]) for e in white) > 1e-3
    assert stability["per_emotion"] == pytest.approx({EMOTIONS[e]: c for e, c in white.items()})

    old = {k: v for k, v in asdict(settings).items() if not k.startswith("whiten")}
    vectors.provenance["settings"] = old
    again = validate(vectors, emo_model, stories, None, options)
    assert again["stability"]["method"] == {"whiten": "none", "shrinkage": None}
    assert again["geometry"]["cross_half"]["method"]["whiten"] == "none"
    assert again["stability"]["per_emotion"] == pytest.approx(
        {EMOTIONS[e]: c for e, c in plain.items()}
    )
    unwhitened = extract_vectors(
        emo_model, stories, neutral, replace(settings, whiten="none"), show_progress=False
    )
    recorded = validate(unwhitened, emo_model, stories, None, options)["stability"]["method"]
    assert recorded == {"whiten": "none", "shrinkage": None}
