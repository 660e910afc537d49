"""Geometry sanity checks: the cross-half PCA, antonym cosines, and the report's new sections
(transfer, per-PC table, cross-half, antonyms) parsed back from the HTML page."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from affectlens.cli import main
from affectlens.validation.antonyms import antonym_cosines, positive_pairs
from affectlens.validation.cross_half import cross_half_pca, cross_half_report
from affectlens.validation.geometry import pca
from affectlens.validation.layer_choice import BY_IN_DOMAIN, BY_RECORD, BY_TRANSFER
from affectlens.validation.stability import half_vectors
from affectlens.vectors import EmotionVectors
from conftest import build_emotion_vectors

# --- cross-half PCA ---


def test_cross_half_ignores_noise_private_to_one_half():
    """Each half carries the same signal plane plus a big noise axis of its own: the ordinary
    PCA of their average leads with the noise, the cross-half axes find the signal (many rows,
    so the halves' noises are nearly uncorrelated in the sample too)."""
    rng = np.random.default_rng(0)
    emotions, hidden = 1000, 40
    frame = np.linalg.qr(rng.normal(size=(hidden, 4)))[0].T  # orthonormal rows
    signal = rng.normal(size=(emotions, 2)) * [6.0, 5.0] @ frame[:2]
    first = signal + 16 * rng.normal(size=(emotions, 1)) * frame[2]
    second = signal + 16 * rng.normal(size=(emotions, 1)) * frame[3]
    ordinary = pca((first + second) / 2, k=4).components
    assert np.linalg.norm(frame[2:] @ ordinary[0]) > 0.9  # PC1 lies in the noise plane
    summary, axes = cross_half_pca(first, second, frame[:2], k=2)
    span = frame[:2]
    assert (np.linalg.norm(axes @ span.T, axis=1) > 0.95).all()
    assert summary["subspace_overlap"][1] > 0.9
    assert summary["reliable_variance_share"][0] > 0.5
    assert summary["k"] == 2 and summary["n_emotions"] == emotions


def test_cross_half_of_pure_noise_disagrees_with_an_unrelated_pca():
    rng = np.random.default_rng(1)
    first, second = rng.normal(size=(2, 20, 64))
    reference = pca(rng.normal(size=(20, 64)), k=5).components
    summary, _ = cross_half_pca(first, second, reference, k=5)
    assert summary["subspace_overlap"][-1] < 0.3  # random 5-d spans in 64-d: about 5/64
    assert max(summary["abs_cos_with_pca"]) < 0.6


def test_cross_half_report_from_stories_recovers_the_vectors_axes():
    """Stories scattered around planted per-emotion means: the halves' axes agree with the
    ordinary PCA of the planted vectors, and the report rates them against valence."""
    rng = np.random.default_rng(2)
    emotions = [f"e{i}" for i in range(10)]
    hidden = 48
    frame = np.linalg.qr(rng.normal(size=(hidden, 2)))[0].T
    valence, arousal = rng.uniform(1, 9, 10), rng.uniform(1, 9, 10)
    means = 4 * (valence - 5)[:, None] * frame[0] + 2 * (arousal - 5)[:, None] * frame[1]
    labels = [e for e in range(10) for _ in range(8)]
    stories = torch.tensor(means[labels] + 0.5 * rng.normal(size=(80, hidden)))
    vectors = means - means.mean(axis=0)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ratings = {e: (float(v), float(a)) for e, v, a in zip(emotions, valence, arousal, strict=True)}
    report = cross_half_report(stories, labels, vectors, emotions, norms=ratings, k=3)
    assert report["emotions_in_both_halves"] == 10
    assert report["abs_cos_with_pca"][0] > 0.95
    assert report["best_matching_pc"][:2] == [1, 2]
    assert report["components"]["abs_pearson"][0]["valence"] > 0.9
    assert report["method"] == {"whiten": "none", "shrinkage": None}
    first, second, present = half_vectors(stories, labels, seed=0)
    assert present == list(range(10)) and first.shape == second.shape == (10, hidden)
    assert np.linalg.norm(first, axis=1) == pytest.approx(np.ones(10))


# --- antonyms ---


def test_antonym_cosines_and_positive_flags():
    emotions = ["happy", "sad", "calm", "anxious", "proud", "bored"]
    e = np.eye(4)
    layer0 = np.stack([e[0], -e[0], e[1], 0.6 * e[1] + 0.8 * e[2], e[3], e[2]])
    layer1 = np.stack([e[0], 0.5 * e[0] + 0.5 * e[1], e[1], -e[1], e[3], e[2]])
    vectors = np.stack([layer0, layer1], axis=1)  # [E, L, H]
    result = antonym_cosines(emotions, vectors, [4, 9])
    pairs = {(p["a"], p["b"]): p for p in result["pairs"]}
    assert set(pairs) == {("happy", "sad"), ("calm", "anxious")}
    assert pairs[("happy", "sad")]["cosine"] == pytest.approx({"4": -1.0, "9": 2**-0.5})
    assert pairs[("calm", "anxious")]["cosine"] == pytest.approx({"4": 0.6, "9": -1.0})
    assert pairs[("happy", "sad")]["basic"] and not pairs[("calm", "anxious")]["basic"]
    assert "proud/ashamed" in result["missing"] and "excited/bored" in result["missing"]
    assert positive_pairs(result | {"layer": 4}, 4) == ["calm/anxious"]
    assert positive_pairs(result, 9) == ["happy/sad"]


# --- the report page ---


class _Tables(HTMLParser):
    """Rows of every table with an id, and the ids of sections and divs."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.ids: list[str] = []
        self._table = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("section", "div", "figure") and attrs.get("id"):
            self.ids.append(attrs["id"])
        if tag == "table" and attrs.get("id"):
            self._table = self.tables.setdefault(attrs["id"], [])
        if self._table is not None and tag == "tr":
            self._table.append([])
        if self._table is not None and tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append(self._cell.strip())
            self._cell = None
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


EMOTIONS = ["calm", "desperate", "happy", "afraid", "angry", "sad"]
SCENES = {
    "calm": "The lake was still and she breathed slowly, letting the quiet evening settle.",
    "desperate": "He begged again, nothing left, every door shut, he had to find money tonight.",
    "happy": "She laughed out loud when the letter came, grinning all the way down the road.",
    "afraid": "Footsteps behind him in the dark alley; his heart pounded and he dared not turn.",
    "angry": "She slammed the door so hard the frame shook at the lie he had told.",
    "sad": "He folded the small jumpers into a box and sat on the bare floor for an hour.",
}


def _inputs(tmp_path):
    lines = []
    for emotion, text in SCENES.items():
        for i in range(4):
            lines.append(
                {"emotion": emotion, "split": "train", "topic": "t", "text": f"{i} {text}"}
            )
        lines.append({"emotion": emotion, "split": "test", "topic": "t", "text": f"{text} 9"})
    corpus = tmp_path / "stories.jsonl"
    corpus.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    norms = tmp_path / "norms.csv"
    rows = ["emotion,valence,arousal", "calm,7,2", "desperate,2,7", "happy,8,6", "afraid,2,8"]
    norms.write_text("\n".join(rows + ["angry,2,7", "sad,2,3"]) + "\n", encoding="utf-8")
    transfer = tmp_path / "transfer.jsonl"
    records = [
        {"emotion": e, "form": form, "split": split, "text": f"You {form} {split} {SCENES[e]}"}
        for e in ("happy", "sad", "afraid", "angry")
        for form in ("second_person", "diary")
        for split in ("dev", "test")
    ]
    transfer.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return corpus, norms, transfer


def test_report_sections_parse_from_the_page(tmp_path, capsys, emo_model, emo_model_dir):
    vectors = build_emotion_vectors(emo_model, EMOTIONS, model_id=str(emo_model_dir))
    vectors.provenance["settings"] = {"start_token": 2, "batch_size": 4}
    artifact = vectors.save(tmp_path / "vectors.safetensors")
    corpus, norms, transfer = _inputs(tmp_path)
    out = tmp_path / "report"
    argv = ["validate", "--vectors", str(artifact), "--corpus", str(corpus), "--norms"]
    argv += [str(norms), "--transfer", str(transfer), "--out", str(out), "--quiet"]
    assert main([*argv, "--clusters", "2", "--no-record"]) == 0
    assert "transfer (dev) 6-way at layer" in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    results = report["results"]
    page = _Tables()
    page.feed((out / "index.html").read_text(encoding="utf-8"))
    layer = str(results["layer"])
    # the dev half was scored, so it chose the layer (tests/test_layer_choice.py: the rule)
    assert results["recommendation_rule"] == BY_TRANSFER
    assert results["layer"] == results["recommended_layer"]

    # transfer: dev only, per form and pooled, each cell equal to the JSON
    t = results["transfer"]
    assert t["split"] == "dev" and t["n_texts"] == 8 and "transfer" in page.ids
    basic = t["basic6"]
    rows = page.tables["transfer-basic6"]
    assert rows[0] == ["form", "n", f"top-1 at layer {layer} [Wilson 95%]"]
    column = t["layers"].index(results["layer"])
    for row, form in zip(rows[1:], ["second_person", "diary", "pooled"], strict=True):
        entry = basic["pooled"] if form == "pooled" else basic["per_form"][form]
        top1 = entry["per_layer"][column]["top1"]
        interval = f"{top1['value']:.3f} [{top1['low']:.3f}, {top1['high']:.3f}]"
        assert row == [form, str(entry["n"]), interval] and top1["n"] == entry["n"]
    assert [basic["per_form"][f]["n"] for f in ("second_person", "diary")] == [4, 4]
    assert len(page.tables["transfer-basic6-by-layer"]) == 1 + len(t["layers"])
    assert basic["chance"] == pytest.approx(1 / 4) and basic["n"] == 8
    assert np.array(basic["confusion"][layer]).sum() == 8
    assert "fig-transfer-basic6-confusion" in page.ids
    figures = {f["id"]: f for f in report["figures"]}
    assert figures["transfer-basic6-confusion"]["n"] == 8

    # per-PC table, cross-half and antonyms
    g = results["geometry"]
    pcs = page.tables["pc-table"]
    assert [float(r[1]) for r in pcs[1:]] == pytest.approx(g["explained_variance"], abs=1e-3)
    best = g["components"]["best_pc"]["valence"]
    assert float(pcs[best][3]) == pytest.approx(max(float(r[3]) for r in pcs[1:]), abs=1e-3)
    cross = page.tables["cross-half-table"]
    assert len(cross) == 1 + g["cross_half"]["k"]
    assert float(cross[1][2]) == pytest.approx(g["cross_half"]["abs_cos_with_pca"][0], abs=1e-3)
    antonyms = page.tables["antonym-table"]
    pair = g["antonyms"]["pairs"][0]
    assert antonyms[1][:2] == ["happy", "sad"] == [pair["a"], pair["b"]]
    assert float(antonyms[1][3]) == pytest.approx(pair["cosine"][layer], abs=1e-3)
    assert (antonyms[1][4] == "POSITIVE") == (pair["cosine"][layer] > 0)

    # the test half only when asked, and no transfer at all with --no-transfer
    assert main([*argv, "--transfer-split", "test", "--no-record"]) == 0
    again = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert again["results"]["transfer"]["split"] == "test"
    assert "--transfer-split test" in again["command"]
    assert again["results"]["recommendation_rule"] == BY_IN_DOMAIN  # never tuned on test
    # recorded by a dev run, the layer is what a later test-half run reads and leaves recorded
    assert main([*argv, "--clusters", "2"]) == 0
    chosen = EmotionVectors.load(artifact).provenance["recommended_layer"]
    assert chosen == results["recommended_layer"]
    capsys.readouterr()
    assert main([*argv, "--clusters", "2", "--transfer-split", "test"]) == 0
    kept = json.loads((out / "report.json").read_text(encoding="utf-8"))["results"]
    assert (kept["recommended_layer"], kept["recommendation_rule"]) == (chosen, BY_RECORD)
    assert kept["layer"] == chosen
    assert EmotionVectors.load(artifact).provenance["recommended_layer"] == chosen
    assert f"transfer (test) 6-way at layer {chosen}:" in capsys.readouterr().err
    assert main([*argv, "--no-transfer", "--no-record"]) == 0
    off = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert "skipped" in off["results"]["transfer"]
