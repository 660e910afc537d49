"""Reading emotions during generation: same texts as generate, same scores as a second pass."""

from __future__ import annotations

import pytest
import torch

from affectlens.activations import pad_right, project, residuals
from affectlens.engine.validation import prompt_ids as _request_ids
from affectlens.errors import AffectlensError
from affectlens.generation import generate_batch, generate_completions, request_for
from affectlens.monitored_generation import generate_monitored
from affectlens.steer import steer
from conftest import build_emotion_vectors, build_family_loaded, build_loaded

PROMPTS = [
    "Once upon a time",
    [{"role": "user", "content": "My dog is sick, what do I do?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
]


def prompt_ids(tokenizer, prompt):
    return _request_ids(tokenizer, request_for(prompt, None))


def _second_pass(model, vectors, prompt, reply_ids, layers):
    """Raw scores [tokens, emotion] of prompt + reply ids from a separate forward pass."""
    ids = prompt_ids(model.tokenizer, prompt) + list(reply_ids)
    batch, mask = pad_right([ids], model.tokenizer.pad_token_id)
    return project(vectors, residuals(model, batch, mask, layers), layers).mean(0)[0]


def _assert_matches_second_pass(model, vectors, prompts, replies, layers):
    for prompt, reply in zip(prompts, replies, strict=True):
        reference = _second_pass(model, vectors, prompt, reply.token_ids, layers)
        width = len(prompt_ids(model.tokenizer, prompt))
        torch.testing.assert_close(reply.prompt_scores, reference[width - 1], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(reply.reply_scores, reference[width:], atol=1e-4, rtol=1e-4)


def test_a_rows_seed_alone_decides_its_sample(emo_model, emo_vectors):
    """A rollout's text is the same alone, in a batch of 8 and after a resume (a smaller
    batch of the rows still to run), when each row carries its own seed."""
    prompts = [PROMPTS[0]] * 8
    seeds = list(range(40, 48))
    batch = generate_monitored(
        emo_model,
        emo_vectors,
        prompts,
        units="raw",
        max_new_tokens=6,
        temperature=1.0,
        seeds=seeds,
    )
    alone = generate_monitored(
        emo_model,
        emo_vectors,
        prompts[:1],
        units="raw",
        max_new_tokens=6,
        temperature=1.0,
        seeds=seeds[5:6],
    )
    resumed = generate_monitored(
        emo_model,
        emo_vectors,
        prompts[:3],
        units="raw",
        max_new_tokens=6,
        temperature=1.0,
        seeds=seeds[5:],
    )
    assert alone[0].token_ids == batch[5].token_ids == resumed[0].token_ids
    assert len({tuple(reply.token_ids) for reply in batch}) > 1


def test_texts_equal_generate_batch(emo_model, emo_vectors):
    replies = generate_monitored(emo_model, emo_vectors, PROMPTS, units="raw", max_new_tokens=7)
    assert [r.text for r in replies] == generate_batch(emo_model, PROMPTS, max_new_tokens=7)
    assert all(len(r.token_ids) == 7 and r.reply_scores.shape == (7, 5) for r in replies)
    sampled = generate_monitored(
        emo_model, emo_vectors, PROMPTS, units="raw", max_new_tokens=6, temperature=1.0, seed=4
    )
    expected = generate_batch(emo_model, PROMPTS, max_new_tokens=6, temperature=1.0, seed=4)
    assert [r.text for r in sampled] == expected


def test_scores_equal_a_second_pass_over_prompt_and_reply(emo_model, emo_vectors):
    replies = generate_monitored(
        emo_model, emo_vectors, PROMPTS, layers=[0, 2], units="raw", max_new_tokens=6
    )
    _assert_matches_second_pass(emo_model, emo_vectors, PROMPTS, replies, [0, 2])
    assert replies[1].layers == [0, 2] and replies[1].units == "raw"
    mean = replies[1].reply_mean()
    assert mean["calm"] == pytest.approx(float(replies[1].reply_scores[:, 0].mean()))


def test_steered_scores_equal_a_steered_second_pass(emo_model, emo_vectors):
    with steer(emo_model, emo_vectors, {"desperate": 0.5}, layers=[1]):
        replies = generate_monitored(
            emo_model, emo_vectors, PROMPTS, layers=[1, 2], units="raw", max_new_tokens=5
        )
        _assert_matches_second_pass(emo_model, emo_vectors, PROMPTS, replies, [1, 2])
        [steered] = generate_monitored(emo_model, emo_vectors, PROMPTS[:1], layers=[1], units="raw")
    [plain] = generate_monitored(emo_model, emo_vectors, PROMPTS[:1], layers=[1], units="raw")
    shift = steered.assistant_turn()["desperate"] - plain.assistant_turn()["desperate"]
    assert shift == pytest.approx(0.5 * float(emo_vectors.residual_norms[1]), rel=1e-4)


def test_a_reply_ends_before_its_first_stop_token():
    model = build_loaded("llama", 3, seed=1)
    vectors = build_emotion_vectors(model)
    greedy = generate_completions(model, PROMPTS[:1], max_new_tokens=8)[0].token_ids
    stop = greedy[3]
    length = greedy.index(stop)
    model.model.generation_config.eos_token_id = stop
    [reply] = generate_monitored(model, vectors, PROMPTS[:1], units="raw", max_new_tokens=8)
    assert reply.token_ids == greedy[:length]
    assert reply.reply_scores.shape[0] == length
    _assert_matches_second_pass(model, vectors, PROMPTS[:1], [reply], [vectors.default_layer])


def test_an_empty_reply_has_no_mean(emo_model, emo_vectors):
    first = generate_completions(emo_model, PROMPTS[1:2], max_new_tokens=1)[0].token_ids[0]
    model = build_loaded("llama", 3)
    model.model.generation_config.eos_token_id = first
    [reply] = generate_monitored(model, emo_vectors, PROMPTS[1:2], units="raw")
    assert reply.text == "" and reply.reply_mean() is None
    assert reply.assistant_turn().keys() == set(emo_vectors.emotions)


def test_hooks_are_removed_and_bad_inputs_refused(emo_model, emo_vectors):
    before = [len(layer._forward_hooks) for layer in emo_model.layers]
    assert generate_monitored(emo_model, emo_vectors, []) == []
    generate_monitored(emo_model, emo_vectors, PROMPTS[:1], units="raw", max_new_tokens=2)
    assert [len(layer._forward_hooks) for layer in emo_model.layers] == before
    with pytest.raises(AffectlensError, match="run .*calibrat"):
        generate_monitored(emo_model, emo_vectors, PROMPTS[:1], units="z")
    with pytest.raises(AffectlensError, match="layer 7"):
        generate_monitored(emo_model, emo_vectors, PROMPTS[:1], layers=[7], units="raw")
    with pytest.raises(AffectlensError, match="at least 1"):
        generate_monitored(emo_model, emo_vectors, PROMPTS[:1], units="raw", max_new_tokens=0)
    assert [len(layer._forward_hooks) for layer in emo_model.layers] == before


@pytest.mark.parametrize("family", ["qwen2", "gemma3", "gpt2"])
def test_other_families_read_the_same_during_generation(family):
    model = build_family_loaded(family, 3)
    vectors = build_emotion_vectors(model)
    replies = generate_monitored(model, vectors, PROMPTS, layers=[1], units="raw", max_new_tokens=4)
    _assert_matches_second_pass(model, vectors, PROMPTS, replies, [1])
