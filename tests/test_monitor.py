"""Monitoring: per-token projections, chat positions, batching, units and early stopping."""

from __future__ import annotations

import pytest
import torch

from affectlens.errors import AffectlensError
from affectlens.generation import generate, generate_batch
from affectlens.models.chat import assistant_turn_positions, encode
from affectlens.monitor import monitor, monitor_batch
from conftest import build_emotion_vectors, build_family_loaded, build_loaded

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "My dog is sick."},
    {"role": "assistant", "content": "I am sorry."},
    {"role": "user", "content": "What now?"},
]


def _hidden_states(model, text: str, layer: int) -> torch.Tensor:
    ids = torch.tensor([encode(model.tokenizer, text)])
    with torch.no_grad():
        out = model.model(input_ids=ids, output_hidden_states=True)
    return out.hidden_states[layer + 1][0]


def test_raw_scores_are_projections_onto_unit_vectors(emo_model, emo_vectors):
    text = "She smiled at the sunrise."
    trace = monitor(emo_model, emo_vectors, text, layers=[1], units="raw")
    expected = _hidden_states(emo_model, text, 1) @ emo_vectors.at_layer(1).T
    assert trace.scores.shape == (len(encode(emo_model.tokenizer, text)), len(emo_vectors.emotions))
    torch.testing.assert_close(trace.scores, expected, atol=1e-4, rtol=1e-4)
    assert "".join(trace.tokens) == text
    assert trace.units == "raw" and trace.layers == [1]


def test_scores_are_averaged_over_layers(emo_model, emo_vectors):
    text = "Rain again."
    both = monitor(emo_model, emo_vectors, text, layers=[0, 2], units="raw").scores
    first = monitor(emo_model, emo_vectors, text, layers=[0], units="raw").scores
    last = monitor(emo_model, emo_vectors, text, layers=[2], units="raw").scores
    torch.testing.assert_close(both, (first + last) / 2)


def test_forward_pass_stops_after_the_last_needed_layer(emo_model, emo_vectors):
    before = [len(layer._forward_hooks) for layer in emo_model.layers]
    calls = []
    handle = emo_model.layers[2].register_forward_hook(lambda *args: calls.append(1))
    head = emo_model.model.lm_head.register_forward_hook(lambda *args: calls.append(2))
    try:
        monitor(emo_model, emo_vectors, "hello", layers=[1], units="raw")
    finally:
        handle.remove()
        head.remove()
    assert calls == []
    assert [len(layer._forward_hooks) for layer in emo_model.layers] == before


def test_chat_positions_and_spans(emo_model, emo_vectors):
    trace = monitor(emo_model, emo_vectors, CHAT, units="raw")
    tokenizer = emo_model.tokenizer
    assert trace.assistant_positions == assistant_turn_positions(tokenizer, CHAT)
    last = trace.assistant_positions[-1]
    assert last == len(trace.tokens) - 1 and trace.tokens[last] == "<|assistant|>"
    assert trace.tokens[trace.assistant_positions[0]] == "<|assistant|>"
    assert trace.assistant_turn() == trace.at(last)
    roles = [span.role for span in trace.spans]
    assert roles == ["system", "user", "assistant", "user"]
    assert trace.spans[0].start == 0 and trace.spans[-1].end <= len(trace.tokens)
    summary = trace.per_message()
    assert [item["role"] for item in summary] == roles
    user = trace.spans[1]
    expected = trace.scores[user.start : user.end].mean(0)
    torch.testing.assert_close(torch.tensor(list(summary[1]["mean"].values())), expected)


def test_top_k_is_sorted(emo_model, emo_vectors):
    trace = monitor(emo_model, emo_vectors, "Why me?", units="raw")
    top = trace.top_k(2, k=3)
    assert len(top) == 3
    assert [score for _, score in top] == sorted((s for _, s in top), reverse=True)
    assert top[0][1] == pytest.approx(float(trace.scores[2].max()))


def test_batch_matches_single_inputs(emo_model, emo_vectors):
    contents = ["short", "a somewhat longer text here", CHAT]
    batch = monitor_batch(emo_model, emo_vectors, contents, layers=[0, 1], units="raw")
    for content, trace in zip(contents, batch, strict=True):
        single = monitor(emo_model, emo_vectors, content, layers=[0, 1], units="raw")
        assert trace.tokens == single.tokens
        torch.testing.assert_close(trace.scores, single.scores, atol=1e-4, rtol=1e-4)


def test_z_units_need_calibration(emo_model, emo_vectors):
    with pytest.raises(AffectlensError, match="run .*calibrat"):
        monitor(emo_model, emo_vectors, "hello", units="z")
    with pytest.raises(AffectlensError, match="units must be one of"):
        monitor(emo_model, emo_vectors, "hello", units="sigma")


def test_bad_inputs_are_refused(emo_model, emo_vectors):
    with pytest.raises(AffectlensError, match="layer 7"):
        monitor(emo_model, emo_vectors, "hi", layers=[7], units="raw")
    with pytest.raises(AffectlensError, match="role"):
        monitor(emo_model, emo_vectors, [{"role": "robot", "content": "x"}], units="raw")
    foreign = build_emotion_vectors(build_loaded("llama", 3, seed=5))
    with pytest.raises(AffectlensError, match="do not fit"):
        monitor(emo_model, foreign, "hi", units="raw")


def test_generate_greedy_is_deterministic_and_batches(emo_model):
    prompts = ["Once upon", [{"role": "user", "content": "Hi"}]]
    single = [generate(emo_model, prompt, max_new_tokens=5) for prompt in prompts]
    assert single == [generate(emo_model, prompt, max_new_tokens=5) for prompt in prompts]
    assert generate_batch(emo_model, prompts, max_new_tokens=5) == single


def test_generate_sampling_is_seeded(emo_model):
    first = generate(emo_model, "Once", max_new_tokens=6, temperature=1.0, seed=3)
    assert first == generate(emo_model, "Once", max_new_tokens=6, temperature=1.0, seed=3)


@pytest.mark.parametrize("family", ["qwen2", "gemma3", "gpt2"])
def test_other_families_monitor_consistently(family):
    model = build_family_loaded(family, 3)
    vectors = build_emotion_vectors(model)
    text = "A long quiet evening by the sea, and then a storm."
    traces = monitor_batch(model, vectors, ["Hi", text, CHAT], layers=[1], units="raw")
    expected = _hidden_states(model, text, 1) @ vectors.at_layer(1).T
    torch.testing.assert_close(traces[1].scores, expected, atol=1e-4, rtol=1e-4)
    single = monitor(model, vectors, CHAT, layers=[1], units="raw")
    torch.testing.assert_close(traces[2].scores, single.scores, atol=1e-4, rtol=1e-4)
