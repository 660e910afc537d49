"""Validation checks as pure functions on planted tensors: classification, geometry, k-means,
norms parsing, stability."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from affectlens.corpus.stories import Story
from affectlens.errors import AffectlensError
from affectlens.stats import wilson_interval
from affectlens.validation.classification import (
    add_cluster_accuracy,
    classify,
    held_out_stories,
    predict,
    settings_from,
)
from affectlens.validation.clusters import cluster_listing, cluster_order, cosine_matrix, kmeans
from affectlens.validation.geometry import (
    affect_alignment,
    load_norms,
    match_norms,
    norm_word,
    pca,
    pearson_fisher,
    valence_by_layer,
)
from affectlens.validation.stability import (
    half_vectors,
    split_half_cosines,
    split_halves,
    summarise,
)
from affectlens.vectors import EmotionVectors
from affectlens.whitening import (
    NO_WHITENING,
    Whitening,
    inverse_sqrt,
    shrunk_covariance,
    within_residuals,
)

WARRINER = Path(__file__).resolve().parents[2] / "shared" / "data" / "Ratings_Warriner_et_al.csv"


def _planted(num_emotions: int = 6, hidden: int = 16, per_emotion: int = 5, seed: int = 0):
    """Layer 0: vectors are basis directions and stories point at them (off a big shared
    offset); layer 1: vectors are random, unrelated to the stories."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.eye(hidden)[:num_emotions]
    random = torch.randn(num_emotions, hidden, generator=g)
    vectors = torch.stack([basis, random / random.norm(dim=-1, keepdim=True)], dim=1)
    offset = 50 * torch.randn(hidden, generator=g)
    raw_means = offset + 3 * vectors  # [E, L, H]: mean over emotions ~ offset + small
    labels = [e for e in range(num_emotions) for _ in range(per_emotion)]
    acts = torch.stack(
        [
            torch.stack([offset + 2 * basis[e], offset + 2 * basis[e]])
            + 0.05 * torch.randn(2, hidden, generator=g)
            for e in labels
        ]
    )
    return acts, labels, vectors, raw_means.mean(dim=0)


def test_classification_recovers_planted_vectors_and_best_layer():
    acts, labels, vectors, centre = _planted()
    result = classify(acts, labels, vectors, centre, [3, 7])
    assert result.at(3).top1.value == 1.0
    assert result.at(3).top1.hits == result.n == len(labels)
    assert result.at(7).top1.value < 0.6
    assert result.recommended_layer == 3
    assert result.chance_top1 == pytest.approx(1 / 6)
    assert result.chance_top5 == pytest.approx(5 / 6)
    low, high = wilson_interval(result.at(7).top1.hits, result.n)
    assert (result.at(7).top1.low, result.at(7).top1.high) == pytest.approx((low, high))


def test_classification_needs_the_centring():
    acts, labels, vectors, centre = _planted()
    uncentred = classify(acts, labels, vectors, torch.zeros_like(centre), [3, 7])
    assert uncentred.at(3).top1.value < 1.0


def test_top5_counts_rank_within_five():
    hidden = 8
    vectors = torch.eye(hidden)[:, None, :]  # 8 emotions, 1 layer
    # story of emotion 0 points mostly at emotions 1..4, a bit at 0: rank 5 -> top-5 hit only
    act = torch.tensor([0.5, 1.0, 0.9, 0.8, 0.7, 0.0, 0.0, 0.0])[None, None, :]
    result = classify(act, [0], vectors, torch.zeros(1, hidden), [0])
    assert result.at(0).top1.hits == 0
    assert result.at(0).top5.hits == 1
    assert predict(act, vectors, torch.zeros(1, hidden))[0, 0].tolist() == [1, 2, 3, 4, 0]


def test_cluster_accuracy_forgives_near_synonyms():
    hidden = 4
    vectors = torch.eye(hidden)[:, None, :]
    # emotion 0 stories look like emotion 1 (same cluster); emotion 3 like 2 (same cluster)
    acts = torch.eye(hidden)[[1, 1, 2, 2]][:, None, :]
    result = classify(acts, [0, 1, 2, 3], vectors, torch.zeros(1, hidden), [0])
    assert result.at(0).top1.value == 0.5
    add_cluster_accuracy(result, np.array([0, 0, 1, 1]))
    assert result.at(0).cluster.value == 1.0
    add_cluster_accuracy(result, np.array([0, 1, 2, 3]))
    assert result.at(0).cluster.value == 0.5


def _story(emotion: str, split: str) -> Story:
    return Story(emotion=emotion, split=split, topic="t", text="x")


def test_held_out_ignores_unknown_emotions_and_requires_a_test_split():
    stories = [_story("happy", "test"), _story("zesty", "test"), _story("sad", "train")]
    held = held_out_stories(stories, ["sad", "happy"])
    assert held.labels == [1] and held.ignored == 1
    with pytest.raises(AffectlensError, match="no test split"):
        held_out_stories([_story("happy", "train")], ["happy"])
    with pytest.raises(AffectlensError, match="no test story"):
        held_out_stories([_story("zesty", "test")], ["happy"])


def test_settings_follow_the_artifact_provenance():
    vectors = EmotionVectors(
        emotions=["a"],
        layers=[0],
        vectors=torch.ones(1, 1, 2),
        raw_means=torch.ones(1, 1, 2),
        residual_norms=torch.ones(1),
        neutral_pcs={},
        provenance={"settings": {"start_token": 3, "max_tokens": 64, "layers": [0], "x": 1}},
    )
    settings = settings_from(vectors, batch_size=2)
    assert (settings.start_token, settings.max_tokens, settings.batch_size) == (3, 64, 2)


# --- k-means ---


def _blobs(seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = np.repeat([0, 1, 2], 20)
    return centres[truth] + rng.normal(scale=0.5, size=(60, 2)), truth


def test_kmeans_separates_blobs_deterministically():
    points, truth = _blobs()
    result = kmeans(points, 3, seed=1)
    for blob in range(3):
        assert len(set(result.labels[truth == blob].tolist())) == 1
    assert len(set(result.labels.tolist())) == 3
    assert result.labels[0] == 0  # renumbered by first appearance
    again = kmeans(points, 3, seed=1)
    assert np.array_equal(result.labels, again.labels)
    assert result.inertia < kmeans(points, 2, seed=1).inertia


def test_kmeans_refuses_too_many_clusters():
    with pytest.raises(AffectlensError, match="k=5"):
        kmeans(np.zeros((3, 2)), 5)


def test_cluster_listing_order_and_cosine():
    names = ["c", "a", "b", "d"]
    labels = np.array([1, 0, 1, 0])
    assert cluster_listing(names, labels) == [["a", "d"], ["c", "b"]]
    assert [names[i] for i in cluster_order(names, labels)] == ["a", "d", "b", "c"]
    cos = cosine_matrix(np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]]))
    assert cos[0, 1] == pytest.approx(1.0) and cos[0, 2] == pytest.approx(0.0)


# --- norms and geometry ---


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_norms_parser_reads_warriner_layout(tmp_path):
    csv_path = _write(
        tmp_path / "w.csv",
        ",Word,V.Mean.Sum,V.SD.Sum,A.Mean.Sum\n1,Happy,8.47,1.2,6.05\n2,sad,2.1,1.1,3.49\n",
    )
    norms = load_norms(csv_path)
    assert norms["happy"].valence == pytest.approx(8.47)
    assert norms["sad"].arousal == pytest.approx(3.49)


def test_norms_parser_reads_simple_layout_with_bom(tmp_path):
    csv_path = _write(tmp_path / "s.csv", "\ufeffEmotion,Valence,Arousal\ncalm,0.6,-0.7\n\n")
    norms = load_norms(csv_path)
    assert list(norms) == ["calm"]
    assert (norms["calm"].valence, norms["calm"].arousal) == (0.6, -0.7)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("word,pleasure\nhappy,1\n", "needs columns"),
        ("emotion,valence,arousal\nhappy,high,2\n", "line 2"),
        ("", "empty"),
        ("emotion,valence,arousal\n", "no rated words"),
    ],
)
def test_bad_norms_files_fail_with_one_line(tmp_path, text, match):
    with pytest.raises(AffectlensError, match=match) as info:
        load_norms(_write(tmp_path / "bad.csv", text))
    assert "\n" not in str(info.value)


def test_missing_norms_file(tmp_path):
    with pytest.raises(AffectlensError, match="not found"):
        load_norms(tmp_path / "none.csv")


def test_norm_word_matching_rules():
    norms = load_norms_dict({"happy": 1, "selfconscious": 2, "worn": 3, "at": 4})
    assert norm_word("Happy", norms) == "happy"
    assert norm_word("self-conscious", norms) == "selfconscious"
    assert norm_word("worn-out", norms) == "worn"
    assert norm_word("at ease", norms) == "at"
    assert norm_word("zesty", norms) is None
    with pytest.raises(AffectlensError, match="no emotion"):
        match_norms(["zesty", "glum"], norms)


def load_norms_dict(values: dict[str, float]):
    from affectlens.validation.geometry import Norm

    return {word: Norm(v, -v) for word, v in values.items()}


def _affect_space(flip: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    names = [f"e{i}" for i in range(12)]
    valence = rng.uniform(1, 9, 12)
    arousal = rng.uniform(1, 9, 12)
    basis = np.linalg.qr(rng.normal(size=(32, 2)))[0].T
    sign = -1 if flip else 1
    vectors = (
        sign * 3 * (valence - valence.mean())[:, None] * basis[0]
        + (arousal - arousal.mean())[:, None] * basis[1]
        + 0.01 * rng.normal(size=(12, 32))
    )
    from affectlens.validation.geometry import Norm

    norms = {n: Norm(float(v), float(a)) for n, v, a in zip(names, valence, arousal, strict=True)}
    return names, vectors, norms


@pytest.mark.parametrize("flip", [False, True])
def test_pca_axes_align_with_planted_valence_and_arousal(flip):
    names, vectors, norms = _affect_space(flip)
    result = affect_alignment(names, vectors, norms, n_boot=200)
    pc1 = result["correlations"]["pc1_valence"]
    assert pc1["pearson"]["r"] > 0.99
    assert pc1["pearson"]["low"] < pc1["pearson"]["r"] < pc1["pearson"]["high"]
    assert pc1["spearman"]["rho"] > 0.95
    assert result["correlations"]["pc2_arousal"]["pearson"]["r"] > 0.95
    assert abs(result["correlations"]["pc1_arousal"]["pearson"]["r"]) < 0.9
    assert result["explained_variance"][0] > result["explained_variance"][1]
    raw = pca(vectors).scores[:, 0]
    raw_negative = np.corrcoef(raw, [norms[n].valence for n in names])[0, 1] < 0
    assert result["flipped"]["pc1"] == raw_negative
    scores = np.array([result["scores"][n][0] for n in names])
    assert np.corrcoef(scores, [norms[n].valence for n in names])[0, 1] > 0


def test_geometry_without_norms_and_by_layer():
    names, vectors, norms = _affect_space(False)
    bare = affect_alignment(names, vectors, None)
    assert bare["correlations"] == {} and bare["flipped"] == {"pc1": False, "pc2": False}
    noise = np.random.default_rng(5).normal(size=vectors.shape)
    stacked = np.stack([noise, vectors], axis=1)  # layer 0 unrelated, layer 1 planted
    by_layer = valence_by_layer(names, stacked, [0, 1], norms)
    assert [entry["layer"] for entry in by_layer] == [0, 1]
    assert by_layer[1]["pc1_valence"]["r"] > 0.99 > by_layer[0]["pc1_valence"]["r"]


def test_pearson_fisher_interval():
    x = np.arange(10.0)
    result = pearson_fisher(x, x + np.sin(x))
    assert result["low"] < result["r"] < result["high"] and result["n"] == 10


@pytest.mark.skipif(not WARRINER.is_file(), reason="Warriner et al. norms not in ../shared/data")
def test_real_warriner_norms():
    norms = load_norms(WARRINER)
    assert len(norms) > 10_000
    assert norms["happy"].valence > 7 > 3 > norms["sad"].valence
    assert norms["terrified"].arousal > norms["calm"].arousal
    assert set(match_norms(["happy", "afraid", "self-conscious"], norms)) >= {"happy", "afraid"}


# --- stability ---


def test_split_halves_are_disjoint_and_balanced():
    labels = [0] * 5 + [1] * 4 + [2]
    first, second = split_halves(labels, seed=3)
    assert not (first & second).any()
    assert first.sum() == second.sum() == 4
    assert not first[-1] and not second[-1]  # a single story joins neither half


def test_split_half_cosine_is_high_for_consistent_emotions_only():
    g = torch.Generator().manual_seed(0)
    means = 4 * torch.randn(5, 32, generator=g)
    labels = [e for e in range(5) for _ in range(8)]
    consistent = means[labels] + 0.3 * torch.randn(40, 32, generator=g)
    stable = summarise(split_half_cosines(consistent, labels), [f"e{i}" for i in range(5)])
    assert stable["mean_cosine"] > 0.95 and stable["n_emotions"] == 5
    assert stable["low"] < stable["mean_cosine"] < stable["high"]
    noise = torch.randn(40, 32, generator=g)
    assert summarise(split_half_cosines(noise, labels), list("abcde"))["mean_cosine"] < 0.6


def test_split_half_projects_out_neutral_components():
    labels = [0, 0, 1, 1]
    acts = torch.tensor([[5.0, 1.0], [5.0, 1.0], [-5.0, 1.0], [-5.0, -1.0]])
    pcs = torch.tensor([[1.0, 0.0]])
    with_pcs = split_half_cosines(acts, labels, neutral_pcs=pcs, seed=0)
    without = split_half_cosines(acts, labels, seed=0)
    assert without[0] > 0.9
    assert with_pcs[0] != pytest.approx(without[0])


def test_split_half_needs_two_emotions():
    with pytest.raises(AffectlensError, match="two train stories"):
        split_half_cosines(torch.zeros(3, 4), [0, 0, 1])


def _stories_with_pcs(seed: int = 0):
    """[54, 40] story means of 6 emotions (9 each) and an orthonormal 3-row neutral basis."""
    g = torch.Generator().manual_seed(seed)
    labels = np.repeat(np.arange(6), 9)
    acts = 3 * torch.randn(54, 40, generator=g) + 1
    pcs = torch.linalg.qr(torch.randn(40, 3, generator=g))[0].T
    return acts, labels, pcs


def test_unwhitened_halves_are_the_method_before_whitening():
    """``whiten="none"`` is the earlier computation: stability's torch loop bit for bit, and
    cross-half's numpy loop to rounding."""
    acts, labels, pcs = _stories_with_pcs()
    first, second = split_halves(labels, seed=4)
    halves = []
    for mask in (first, second):
        a = acts.double().numpy()
        means = np.stack([a[mask & (labels == e)].mean(axis=0) for e in range(6)])
        centred = means - means.mean(axis=0, keepdims=True)
        p = pcs.double().numpy()
        centred = centred - (centred @ p.T) @ p
        halves.append(centred / np.linalg.norm(centred, axis=1, keepdims=True))
    a, b, present = half_vectors(acts, labels, neutral_pcs=pcs, seed=4, whitening=Whitening("none"))
    assert present == list(range(6))
    np.testing.assert_allclose(a.numpy(), halves[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(b.numpy(), halves[1], rtol=0, atol=1e-12)
    torch_halves = []
    for mask in (first, second):
        x = acts.double()
        means = torch.stack(
            [x[torch.from_numpy(mask & (labels == e))].mean(dim=0) for e in range(6)]
        )
        centred = means - means.mean(dim=0, keepdim=True)
        centred = centred - (centred @ pcs.double().T) @ pcs.double()
        torch_halves.append(centred / centred.norm(dim=-1, keepdim=True).clamp(min=1e-12))
    old = dict(enumerate(((torch_halves[0] * torch_halves[1]).sum(dim=-1)).tolist()))
    assert split_half_cosines(acts, labels, neutral_pcs=pcs, seed=4) == old
    assert split_half_cosines(acts, labels, neutral_pcs=pcs, seed=4, whitening=NO_WHITENING) == old


def test_within_halves_apply_the_half_covariance_inverse_then_the_neutral_basis():
    """Per half: ``unit(P (W W c))`` with ``W = inverse_sqrt(shrunk_covariance(...))`` of the
    half's within residuals (what :mod:`affectlens.whitening` gives extraction), ``c`` the
    centred means and ``P`` projecting out the stored basis; hidden > stories, so the shrunk
    covariance's identity part matters."""
    acts, labels, pcs = _stories_with_pcs(1)
    first, second = split_halves(labels, seed=2)
    within = Whitening("within", 0.3)
    a, b, _ = half_vectors(acts, labels, neutral_pcs=pcs, seed=2, whitening=within)
    for got, mask in ((a, first), (b, second)):
        rows = acts.double()[torch.from_numpy(mask)]
        groups = torch.from_numpy(labels[mask])
        white = inverse_sqrt(shrunk_covariance(within_residuals(rows, groups), 0.3))
        means = torch.stack([rows[groups == e].mean(dim=0) for e in range(6)])
        direction = (means - means.mean(dim=0)) @ white @ white
        direction = direction - (direction @ pcs.double().T) @ pcs.double()
        expected = direction / direction.norm(dim=-1, keepdim=True)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
        assert (got @ pcs.double().T).abs().max() < 1e-6  # a float32 basis
    unwhitened, _, _ = half_vectors(acts, labels, neutral_pcs=pcs, seed=2)
    assert (a - unwhitened).abs().max() > 1e-3  # the whitening did something
    with pytest.raises(AffectlensError, match="singular"):
        half_vectors(acts, labels, seed=2, whitening=Whitening("within", 0.0))
    with pytest.raises(AffectlensError, match="unknown whitening"):
        half_vectors(acts, labels, whitening=Whitening("between"))


def test_within_whitened_halves_agree_behind_a_huge_within_emotion_nuisance():
    """Stories of every emotion vary hugely (sd 30) along one shared nuisance axis; the signal
    (a unit-variance mean per emotion, orthogonal to it) is small. A half's mean of 10 stories
    keeps nuisance noise of sd ~9.5 against signal norms ~5.6, so unwhitened halves disagree;
    within whitening (shrinkage 0.5) deflates that axis ~30x and the halves agree."""
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        hidden, emotions, per = 32, 6, 20
        nuisance = torch.randn(hidden, generator=g, dtype=torch.float64)
        nuisance /= nuisance.norm()
        signal = torch.randn(emotions, hidden, generator=g, dtype=torch.float64)
        signal -= (signal @ nuisance)[:, None] * nuisance
        labels = [e for e in range(emotions) for _ in range(per)]
        noise = 0.3 * torch.randn(emotions * per, hidden, generator=g, dtype=torch.float64)
        spread = 30 * torch.randn(emotions * per, 1, generator=g, dtype=torch.float64)
        stories = signal[labels] + noise + spread * nuisance
        plain = summarise(split_half_cosines(stories, labels, seed=seed), list("abcdef"))
        within = split_half_cosines(stories, labels, seed=seed, whitening=Whitening("within", 0.5))
        white = summarise(within, list("abcdef"))
        assert white["mean_cosine"] > 0.95 and min(within.values()) > 0.9
        assert plain["mean_cosine"] < 0.8
        assert white["mean_cosine"] - plain["mean_cosine"] > 0.2


def test_component_alignment_finds_valence_behind_a_nuisance_axis():
    """A bigger nuisance direction takes PC1; the table says valence is on PC2."""
    names, vectors, norms = _affect_space(False)
    rng = np.random.default_rng(3)
    span = np.linalg.qr(vectors.T)[0][:, :2]  # the planted valence/arousal plane
    direction = rng.normal(size=32)
    direction -= span @ (span.T @ direction)
    direction /= np.linalg.norm(direction)
    nuisance = 40 * rng.normal(size=(len(names), 1)) * direction
    result = affect_alignment(names, vectors + nuisance, norms, n_boot=50)
    assert abs(result["correlations"]["pc1_valence"]["pearson"]["r"]) < 0.6
    components = result["components"]
    assert components["best_pc"]["valence"] == 2
    assert components["abs_pearson"][1]["valence"] > 0.95
