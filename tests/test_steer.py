"""Steering: the added vector, position masks under the KV cache, validation and clean-up."""

from __future__ import annotations

import pytest
import torch

from affectlens.activations import residuals
from affectlens.errors import AffectlensError
from affectlens.models.chat import encode
from affectlens.steer import _layer_hook, _Tracker, steer
from conftest import CORE_FAMILIES, build_emotion_vectors, build_family_loaded, build_loaded

PROMPT = "The lights went out and"


def _ids(model) -> torch.Tensor:
    return torch.tensor([encode(model.tokenizer, PROMPT)])


def _greedy(model, ids: torch.Tensor, *, use_cache: bool = True, steps: int = 6):
    return model.model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=steps,
        min_new_tokens=steps,
        do_sample=False,
        use_cache=use_cache,
        output_scores=True,
        output_logits=True,
        return_dict_in_generate=True,
        pad_token_id=model.tokenizer.pad_token_id,
    )


def _record_deltas(model, layer: int, body) -> list[torch.Tensor]:
    """Per forward call, the change the steering hook made to ``layer``'s output [tokens]."""
    before: list[torch.Tensor] = []
    deltas: list[torch.Tensor] = []

    def first(module, args, output):
        before.append(output.detach().clone())

    def last(module, args, output):
        deltas.append((output - before[len(deltas)]).norm(dim=-1)[0])

    handle_first = model.layers[layer].register_forward_hook(first)
    try:
        body(lambda: model.layers[layer].register_forward_hook(last))
    finally:
        handle_first.remove()
    return deltas


def test_alpha_zero_is_a_no_op(emo_model, emo_vectors):
    ids = _ids(emo_model)
    with torch.no_grad():
        plain = emo_model.model(input_ids=ids).logits
        with steer(emo_model, emo_vectors, {"calm": 0.0}, layers=[0, 1, 2]):
            steered = emo_model.model(input_ids=ids).logits
    assert torch.equal(plain, steered)


def test_added_vector_has_the_right_norm(emo_model, emo_vectors):
    ids = _ids(emo_model)
    mask = torch.ones_like(ids)
    plain = residuals(emo_model, ids, mask, [1])[1]
    with steer(emo_model, emo_vectors, {"desperate": 0.25}, layers=[1]):
        steered = residuals(emo_model, ids, mask, [1])[1]
    delta = steered - plain
    expected = 0.25 * float(emo_vectors.residual_norms[1])
    torch.testing.assert_close(delta.norm(dim=-1), torch.full(delta.shape[:2], expected))
    direction = emo_vectors.vector("desperate", 1)
    torch.testing.assert_close(delta[0, 0] / expected, direction, atol=1e-5, rtol=1e-4)


def test_several_emotions_add_up(emo_model, emo_vectors):
    ids = _ids(emo_model)
    mask = torch.ones_like(ids)
    plain = residuals(emo_model, ids, mask, [2])[2]
    with steer(emo_model, emo_vectors, {"calm": 0.2, "angry": -0.1}, layers=[2]):
        steered = residuals(emo_model, ids, mask, [2])[2]
    norm = float(emo_vectors.residual_norms[2])
    expected = norm * (0.2 * emo_vectors.vector("calm", 2) - 0.1 * emo_vectors.vector("angry", 2))
    torch.testing.assert_close(steered[0, -1] - plain[0, -1], expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_steered_generation_is_the_same_with_and_without_cache(emo_model, emo_vectors, positions):
    ids = _ids(emo_model)
    plain = _greedy(emo_model, ids).sequences
    with steer(emo_model, emo_vectors, {"afraid": 1.0}, layers=[0, 1], positions=positions):
        cached = _greedy(emo_model, ids, use_cache=True)
        uncached = _greedy(emo_model, ids, use_cache=False)
    assert torch.equal(cached.sequences, uncached.sequences)
    for with_cache, without in zip(cached.scores, uncached.scores, strict=True):
        torch.testing.assert_close(with_cache, without, atol=1e-4, rtol=1e-4)
    assert not torch.equal(cached.sequences, plain), "steering should change this generation"


def test_generated_positions_leave_the_prompt_alone(emo_model, emo_vectors):
    ids = _ids(emo_model)
    plain = _greedy(emo_model, ids)
    with steer(emo_model, emo_vectors, {"afraid": 1.0}, layers=[1], positions="generated"):
        steered = _greedy(emo_model, ids)
    torch.testing.assert_close(steered.scores[0], plain.scores[0])
    assert not torch.allclose(steered.scores[1], plain.scores[1])


@pytest.mark.parametrize("family", CORE_FAMILIES)
@pytest.mark.parametrize("use_cache", [True, False])
def test_position_masks_after_the_first_decode_step(family, use_cache):
    """The steered tokens of every pass, cached or not, on each family's own forward arguments."""
    emo_model = build_family_loaded(family, 2)
    emo_vectors = build_emotion_vectors(emo_model)
    ids = _ids(emo_model)
    prompt_length = ids.shape[1]
    for positions in ("prompt", "generated"):

        def body(register_last, positions=positions):
            with steer(emo_model, emo_vectors, {"calm": 0.5}, layers=[1], positions=positions):
                handle = register_last()
                try:
                    _greedy(emo_model, ids, use_cache=use_cache, steps=4)
                finally:
                    handle.remove()

        deltas = _record_deltas(emo_model, 1, body)
        assert len(deltas) == 4
        for step, delta in enumerate(deltas):
            if use_cache:
                assert len(delta) == (prompt_length if step == 0 else 1)
            start = 0 if not use_cache or step == 0 else prompt_length + step - 1
            absolute = torch.arange(start, start + len(delta))
            in_prompt = absolute < prompt_length
            steered = in_prompt if positions == "prompt" else ~in_prompt
            assert torch.all(delta[steered] > 0.1), (positions, step)
            assert torch.all(delta[~steered] == 0), (positions, step)


def test_generated_positions_in_a_left_padded_batch_follow_each_row(emo_model, emo_vectors):
    """A shorter, left-padded row is steered from its own first generated token, not the
    batch's: its steered scores equal those it gets alone."""
    short, long = _ids(emo_model)[:, :3], _ids(emo_model)
    pad = emo_model.tokenizer.pad_token_id
    width = long.shape[1]
    batch = torch.full((2, width), pad, dtype=torch.long)
    batch[0, width - short.shape[1] :] = short[0]
    batch[1] = long[0]
    mask = (torch.arange(width)[None, :] >= torch.tensor([[width - short.shape[1]], [0]])).long()
    with steer(emo_model, emo_vectors, {"afraid": 1.0}, layers=[1], positions="generated"):
        together = emo_model.model.generate(
            input_ids=batch,
            attention_mask=mask,
            max_new_tokens=4,
            min_new_tokens=4,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=pad,
        )
        alone = _greedy(emo_model, short, steps=4)
    for step, scores in enumerate(alone.scores):
        torch.testing.assert_close(together.scores[step][0], scores[0], atol=1e-4, rtol=1e-4)


def test_a_longer_second_prompt_in_one_block_is_a_new_prompt(emo_model, emo_vectors):
    first = _ids(emo_model)
    second = torch.cat([first, first[:, :4]], dim=1)
    with steer(emo_model, emo_vectors, {"calm": 0.5}, layers=[1], positions="prompt"):
        _greedy(emo_model, first, steps=2)
        steered = _greedy(emo_model, second, steps=2)
    with steer(emo_model, emo_vectors, {"calm": 0.5}, layers=[1], positions="all"):
        everywhere = emo_model.model(input_ids=second).logits[:, -1]
    torch.testing.assert_close(steered.logits[0], everywhere)


def test_prompt_positions_change_the_first_token_distribution(emo_model, emo_vectors):
    ids = _ids(emo_model)
    plain = _greedy(emo_model, ids)
    with steer(emo_model, emo_vectors, {"happy": 1.0}, layers=[0], positions="prompt"):
        steered = _greedy(emo_model, ids)
    assert not torch.allclose(steered.scores[0], plain.scores[0])


def _hooks(model) -> list[int]:
    """Hook counts per layer, then the model's forward pre-hooks (transformers adds its own)."""
    return [len(layer._forward_hooks) for layer in model.layers] + [
        len(model.model._forward_pre_hooks)
    ]


def test_hooks_are_removed_after_an_exception(emo_model, emo_vectors):
    before = _hooks(emo_model)
    with (
        pytest.raises(RuntimeError, match="boom"),
        steer(emo_model, emo_vectors, {"calm": 0.3}, layers=[0, 2]),
    ):
        inside = _hooks(emo_model)
        raise RuntimeError("boom")
    assert [b - a for a, b in zip(before, inside, strict=True)] == [1, 0, 1, 1]
    assert _hooks(emo_model) == before


def test_default_layer_is_used(emo_model, emo_vectors):
    before = _hooks(emo_model)
    with steer(emo_model, emo_vectors, {"calm": 0.3}):
        added = [b - a for a, b in zip(before, _hooks(emo_model), strict=True)]
    expected = [0] * emo_model.num_layers + [1]
    expected[emo_vectors.default_layer] = 1
    assert added == expected


def test_tuple_outputs_are_steered_in_their_first_element():
    hook = _layer_hook(torch.ones(4), "all", _Tracker())
    hidden, extra = torch.zeros(1, 3, 4), object()
    steered, kept = hook(None, (), (hidden, extra))
    assert torch.equal(steered, torch.ones(1, 3, 4)) and kept is extra


def test_unknown_emotion_suggests_close_matches(emo_model, emo_vectors):
    with (
        pytest.raises(AffectlensError, match="did you mean desperate"),
        steer(emo_model, emo_vectors, {"desparate": 0.1}),
    ):
        pass


@pytest.mark.parametrize("alpha", [1.5, -2.0, float("nan")])
def test_alpha_outside_the_sane_range_is_refused(emo_model, emo_vectors, alpha):
    with (
        pytest.raises(AffectlensError, match="sane range"),
        steer(emo_model, emo_vectors, {"calm": alpha}),
    ):
        pass


def test_layers_outside_the_artifact_are_refused(emo_model):
    vectors = build_emotion_vectors(emo_model, layers=[1, 2])
    with (
        pytest.raises(AffectlensError, match="layer 0 is not in the vectors file"),
        steer(emo_model, vectors, {"calm": 0.1}, layers=[0]),
    ):
        pass


def test_vectors_for_another_model_are_refused(emo_model):
    other = build_loaded("llama", 3, seed=1)
    vectors = build_emotion_vectors(other)
    before = _hooks(emo_model)
    with (
        pytest.raises(AffectlensError, match="do not fit"),
        steer(emo_model, vectors, {"calm": 0.1}),
    ):
        pass
    assert _hooks(emo_model) == before


@pytest.mark.parametrize("family", ["qwen2", "gemma3", "gpt2"])
def test_other_families_steer_the_same_with_and_without_cache(family):
    model = build_family_loaded(family, 2)
    vectors = build_emotion_vectors(model)
    ids = torch.tensor([encode(model.tokenizer, PROMPT + " then the long night began")])
    plain = _greedy(model, ids, steps=8).sequences
    for positions in ("all", "prompt", "generated"):
        with steer(model, vectors, {"angry": 1.0}, layers=[0, 1], positions=positions):
            cached = _greedy(model, ids, use_cache=True, steps=8)
            uncached = _greedy(model, ids, use_cache=False, steps=8)
        assert torch.equal(cached.sequences, uncached.sequences), positions
        assert not torch.equal(cached.sequences, plain), positions
        if positions == "generated":
            torch.testing.assert_close(cached.scores[0], _greedy(model, ids, steps=1).scores[0])
