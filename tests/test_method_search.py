"""The method search of issue 16: poolings, whitening, the one-pass capture and the choice."""

import math

import pytest
import torch

from affectlens.errors import AffectlensError
from affectlens.experiments.method_search import (
    SHIPPED,
    Method,
    SearchData,
    build_vectors,
    capture_poolings,
    choose,
    load_captures,
    method_vectors,
    paired_test,
    pool_hidden,
    pooling_masks,
    raw_space_artifact,
    score_method,
    search,
)
from affectlens.extract import ExtractionSettings, text_means
from affectlens.validation.transfer import TransferText
from affectlens.whitening import inverse_sqrt, shrunk_covariance, within_residuals


def _mask(lengths, width):
    return torch.tensor([[1] * n + [0] * (width - n) for n in lengths])


def test_pooling_ranges_by_hand():
    masks = pooling_masks(_mask([5, 3, 6, 60], 60))
    # the last third: ceil(n/3) tokens at the end; 5 -> 3,4; 3 -> 2; 6 -> 4,5; 60 -> 40..59
    third = masks["last_third"]
    assert third[0].nonzero().flatten().tolist() == [3, 4]
    assert third[1].nonzero().flatten().tolist() == [2]
    assert third[2].nonzero().flatten().tolist() == [4, 5]
    assert third[3].nonzero().flatten().tolist() == list(range(40, 60))
    assert masks["last"].nonzero().tolist() == [[0, 4], [1, 2], [2, 5], [3, 59]]
    assert masks["all"].sum(dim=1).tolist() == [5, 3, 6, 60]
    # from N: a text shorter than N keeps only its last token; 60 tokens from 50 keep 10
    assert masks["from50"].sum(dim=1).tolist() == [1, 1, 1, 10]
    assert masks["from20"][3].nonzero().flatten().tolist() == list(range(20, 60))


def test_pool_hidden_means_and_last_token():
    states = torch.arange(2 * 4 * 2, dtype=torch.float32).reshape(2, 4, 2) + 1
    pooled = pool_hidden(states, _mask([4, 2], 4), outlier_factor=100.0)
    assert torch.allclose(pooled["all"][0], states[0].mean(dim=0))
    assert torch.allclose(pooled["all"][1], states[1, :2].mean(dim=0))
    assert torch.equal(pooled["last"], torch.stack([states[0, 3], states[1, 1]]))
    assert torch.allclose(pooled["last_third"][0], states[0, 2:].mean(dim=0))


def test_pool_hidden_drops_an_outlier_token_but_last_keeps_it():
    states = torch.ones(1, 3, 2)
    states[0, 2] = 1000.0
    pooled = pool_hidden(states, _mask([3], 3), outlier_factor=5.0)
    assert torch.allclose(pooled["all"], torch.ones(1, 2))
    assert torch.allclose(pooled["last"], torch.full((1, 2), 1000.0))


def test_shrunk_covariance_by_hand():
    rows = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    # covariance diag(2/3, 8/3); the mean variance is 5/3
    assert torch.allclose(
        shrunk_covariance(rows, 0.0), torch.diag(torch.tensor([2 / 3, 8 / 3])).double()
    )
    half = torch.diag(torch.tensor([7 / 6, 13 / 6])).double()
    assert torch.allclose(shrunk_covariance(rows, 0.5), half)


def test_inverse_sqrt_whitens_a_known_covariance():
    assert torch.allclose(
        inverse_sqrt(torch.diag(torch.tensor([4.0, 9.0]))),
        torch.diag(torch.tensor([0.5, 1 / 3])).double(),
    )
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(5, 5, generator=generator, dtype=torch.float64)
    cov = a @ a.T + 0.1 * torch.eye(5, dtype=torch.float64)
    w = inverse_sqrt(cov)
    assert torch.allclose(w @ cov @ w, torch.eye(5, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(w, w.T)
    with pytest.raises(AffectlensError, match="singular"):
        inverse_sqrt(torch.diag(torch.tensor([1.0, 0.0])))


def test_within_residuals_subtract_each_group_mean():
    rows = torch.tensor([[1.0], [3.0], [10.0], [14.0]])
    out = within_residuals(rows, torch.tensor([0, 0, 1, 1]))
    assert out.flatten().tolist() == [-1.0, 1.0, -2.0, 2.0]


def test_build_vectors_without_neutral_projection_are_centred_unit_means():
    train = torch.tensor([[2.0, 0.0], [4.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    units, raw = build_vectors(train, torch.tensor([0, 0, 1, 1]), ["a", "b"], train, 0.0)
    assert torch.allclose(raw, torch.tensor([[3.0, 0.0], [0.0, 2.0]]))
    # centred means (1.5, -1) and (-1.5, 1), unit-normalised
    expected = torch.tensor([[1.5, -1.0], [-1.5, 1.0]]) / math.sqrt(1.5**2 + 1)
    assert torch.allclose(units, expected)


def test_capture_poolings_matches_extraction_and_resumes(tmp_path, emo_model):
    texts = [("calm river water " * k).strip() for k in range(1, 30, 3)]
    settings = ExtractionSettings()
    first = capture_poolings(
        emo_model, texts, [0, 2], tmp_path / "c", settings=settings, chunk=4, show_progress=False
    )
    reference = text_means(emo_model, texts, [0, 2], settings, show_progress=False)
    assert torch.allclose(first["from20"], reference, atol=1e-5)
    assert first["last"].shape == (len(texts), 2, emo_model.hidden_size)
    (tmp_path / "c" / "chunk000004.safetensors").unlink()
    again = capture_poolings(
        emo_model, texts, [0, 2], tmp_path / "c", settings=settings, chunk=4, show_progress=False
    )
    for name, value in first.items():
        assert torch.allclose(again[name], value, atol=1e-6)
        assert torch.equal(load_captures(tmp_path / "c")[name], again[name])
    with pytest.raises(AffectlensError, match="other inputs"):
        capture_poolings(emo_model, texts[::-1], [0, 2], tmp_path / "c", show_progress=False)


def _planted(seed: int = 0) -> SearchData:
    """Three emotions along axis 0/1/2 at scale 1, under within-emotion noise of scale 30 on
    axes 3-4 that the cosine readout cannot ignore unless the data are whitened."""
    generator = torch.Generator().manual_seed(seed)
    emotions = ["happy", "sad", "angry"]
    hidden = 8

    def draw(labels: list[int]) -> torch.Tensor:
        rows = 0.05 * torch.randn(len(labels), hidden, generator=generator)
        rows[:, 3:5] += 30 * torch.randn(len(labels), 2, generator=generator)
        for i, label in enumerate(labels):
            rows[i, label] += 1.0
        return rows[:, None]

    train = [i % 3 for i in range(60)]
    stories = [i % 3 for i in range(30)]
    dev = [i % 3 for i in range(45)]
    forms = ["diary", "dialogue", "social_post"]
    texts = [TransferText(emotions[e], forms[i % 3], "dev", "x") for i, e in enumerate(dev)]
    neutral = 0.05 * torch.randn(20, 1, hidden, generator=generator)
    captures = {
        "train": {"all": draw(train)},
        "stories_test": {"all": draw(stories)},
        "dev": {"all": draw(dev)},
        "neutral": {"all": neutral},
    }
    return SearchData(
        captures=captures,
        layers=[4],
        emotions=emotions,
        train_labels=torch.tensor(train),
        test_labels=stories,
        transfer={"dev": texts},
    )


def test_within_whitening_recovers_an_emotion_hidden_under_nuisance_variance():
    data = _planted()
    plain = score_method(data, Method("all", 0.0, "none"), 0)
    white = score_method(data, Method("all", 0.0, "within", 0.001), 0)
    plain_acc = plain["transfer"]["basic6"]["pooled"]["per_layer"][0]["top1"]["value"]
    white_acc = white["transfer"]["basic6"]["pooled"]["per_layer"][0]["top1"]["value"]
    assert white_acc == 1.0
    assert white["in_domain"].value == 1.0
    assert plain_acc < 0.8
    assert plain["in_domain"].value < 0.8


def test_search_rows_and_choice_follow_the_rule():
    data = _planted()
    for group in data.captures.values():
        group["from20"] = group["all"]
    methods = [SHIPPED, Method("all", 0.0, "within", 0.001), Method("all", 0.0, "none")]
    calls = []
    rows = search(data, methods, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (3, 3) and len(rows) == 3
    assert rows[1]["basic6/diary"]["n"] == 15
    winner, shipped = choose(rows)
    assert winner["method"] == "all/nv0/within@0.001"
    assert shipped["method"] == SHIPPED.name
    # a winner whose in-domain accuracy falls more than the margin below the shipped is refused
    rows[1]["in_domain24"]["value"] = shipped["in_domain24"]["value"] - 0.06
    assert choose(rows)[0]["method"] != "all/nv0/within@0.001"


def test_paired_test_counts_discordant_texts():
    result = paired_test([True, True, True, False], [False, False, True, False])
    assert (result["only_first"], result["only_second"], result["n"]) == (2, 0, 4)
    assert result["difference"] == 0.5
    assert result["p_exact_mcnemar"] == pytest.approx(0.5)


def test_raw_space_artifact_maps_whitened_vectors_back_through_w():
    data = _planted()
    plain = Method("all", 0.0, "none")
    same, _ = raw_space_artifact(data, plain, 0)
    reference, _ = method_vectors(data, plain, 0)
    assert torch.allclose(same.vectors, reference.vectors)
    white = Method("all", 0.0, "within", 0.001)
    mapped, view = raw_space_artifact(data, white, 0)
    whitened, _ = method_vectors(data, white, 0)
    expected = whitened.vectors[:, 0] @ data.whitener(white, 0)
    expected = expected / expected.norm(dim=-1, keepdim=True)
    assert torch.allclose(mapped.vectors[:, 0], expected, atol=1e-6)
    assert torch.allclose(mapped.vectors.norm(dim=-1), torch.ones(3, 1))
    assert torch.equal(view("dev"), data.captures["dev"]["all"][:, 0])
    scores = score_method(data, white, 0, raw_space=True)
    assert scores["transfer"]["basic6"]["pooled"]["per_layer"][0]["top1"]["value"] >= 0.9
