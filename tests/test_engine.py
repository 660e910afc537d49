"""The engine: batched tokens equal solo tokens, steering equals ``steer``, readouts equal a
second pass, per-request seeds, and one row's end or failure leaves the others alone."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from affectlens.activations import pad_right, project, residuals
from affectlens.engine import (
    Engine,
    EngineConfig,
    FinishEvent,
    GenerationRequest,
    ReadoutSpec,
    SamplingParams,
    SteeringSpec,
    TokenEvent,
    detokenize,
)
from affectlens.engine.validation import prompt_ids
from affectlens.errors import AffectlensError
from affectlens.guardrails import GuardrailPolicy
from affectlens.models.chat import encode
from affectlens.steer import steer
from conftest import CORE_FAMILIES, build_emotion_vectors, build_family_loaded

PROMPTS = [
    "The lights went out and",
    "Once upon a time there was a very long story about a lighthouse keeper who",
    "Hi",
    "The cat sat on the mat while the dog",
    "Snow fell all night on the quiet village",
]


def _request(prompt, n=10, steering=None, readouts=None, **sampling):
    return GenerationRequest(
        prompt=prompt,
        sampling=SamplingParams(max_new_tokens=n, **sampling),
        steering=steering,
        readouts=readouts,
    )


@pytest.fixture(scope="module", params=CORE_FAMILIES)
def family(request):
    model = build_family_loaded(request.param, 3)
    return model, build_emotion_vectors(model)


def _mixed_requests():
    """Different lengths, steering settings and positions, some reading emotions."""
    return [
        _request(PROMPTS[0], 9),
        _request(PROMPTS[1], 12, SteeringSpec({"afraid": 0.8}, (1,), "generated")),
        _request(PROMPTS[2], 7, SteeringSpec({"calm": -0.6, "happy": 0.4}, (0, 2), "all")),
        _request(PROMPTS[3], 11, readouts=ReadoutSpec(layers=(1,), units="raw")),
        _request(PROMPTS[4], 10, SteeringSpec({"angry": 1.0}, (2,), "prompt")),
    ]


def test_a_request_in_a_mixed_batch_with_late_joiners_decodes_as_alone(family):
    model, vectors = family
    engine = Engine(model, vectors)
    alone = [engine.run([request])[0].token_ids for request in _mixed_requests()]
    requests = _mixed_requests()
    handles = [engine.submit(requests[0]), engine.submit(requests[1])]
    for joiner in requests[2:]:  # each joins while the others are mid-reply
        engine.step()
        engine.step()
        handles.append(engine.submit(joiner))
    together = [handle.result() for handle in handles]
    assert [c.token_ids for c in together] == alone
    assert [c.finish_reason for c in together] == ["length"] * 5
    assert [len(c.token_ids) for c in together] == [9, 12, 7, 11, 10]


def _prefill_passes(engine, model) -> int:
    """Forward passes of the engine's next step that read more than one token per row."""
    widths = []
    hook = model.model.register_forward_pre_hook(
        lambda _m, _a, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        engine.step()
    finally:
        hook.remove()
    return sum(1 for width in widths if width > 1)


@pytest.mark.parametrize("cap", [8192, 40])
def test_requests_arriving_together_are_prefilled_together_and_decode_as_alone(family, cap):
    model, vectors = family
    engine = Engine(model, vectors, config=EngineConfig(max_prefill_tokens=cap))
    alone = [engine.run([request])[0] for request in _mixed_requests()]
    handles = [engine.submit(request) for request in _mixed_requests()]
    passes = _prefill_passes(engine, model)
    together = [handle.result() for handle in handles]
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]
    first = torch.tensor([[c.prompt_readouts[e] for e in vectors.emotions] for c in together
                          if c.prompt_readouts])  # fmt: skip
    solo = torch.tensor([[c.prompt_readouts[e] for e in vectors.emotions] for c in alone
                         if c.prompt_readouts])  # fmt: skip
    torch.testing.assert_close(first, solo, atol=1e-4, rtol=1e-4)
    widths = sorted(len(prompt_ids(model.tokenizer, r)) for r in _mixed_requests())
    if cap == 8192:
        assert passes == 1
    else:  # sorted by length, each group's rows x longest prompt within the cap
        groups, size = 0, []
        for width in widths:
            if size and (len(size) + 1) * width <= cap:
                size.append(width)
            else:
                groups, size = groups + 1, [width]
        assert passes == groups > 1


def test_a_row_that_stops_at_its_first_token_leaves_its_prefill_group(family):
    model, vectors = family
    engine = Engine(model, vectors)
    alone = [engine.run([request])[0].token_ids for request in _mixed_requests()]
    requests = _mixed_requests()
    first = alone[1][0]
    requests[1] = _request(PROMPTS[1], 12, requests[1].steering, stop_token_ids=(first,))
    results = engine.run(requests)
    assert results[1].finish_reason == "stop" and results[1].token_ids == []
    assert [r.token_ids for i, r in enumerate(results) if i != 1] == [
        a for i, a in enumerate(alone) if i != 1
    ]


def _hf_steered(model, vectors, prompt, alphas, layers, positions, n):
    ids = torch.tensor([encode(model.tokenizer, prompt)])
    with steer(model, vectors, alphas, layers=layers, positions=positions):
        output = model.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=model.tokenizer.pad_token_id,
        )
    return output[0, ids.shape[1] :].tolist()


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_steered_tokens_equal_the_steer_context_manager(family, positions):
    model, vectors = family
    engine = Engine(model, vectors, config=EngineConfig(max_batch_size=4))
    spec = SteeringSpec({"afraid": 1.0, "calm": -0.3}, (0, 1), positions)
    others = [_request(PROMPTS[3], 6), _request(PROMPTS[4], 8, SteeringSpec({"angry": 0.9}))]
    completions = engine.run([_request(PROMPTS[0], 8, spec, stop_token_ids=()), *others])
    expected = _hf_steered(model, vectors, PROMPTS[0], spec.alphas, [0, 1], positions, 8)
    # the engine stops at an end-of-sequence token where generate(min_new_tokens) goes on
    assert completions[0].token_ids == expected[: len(completions[0].token_ids)]
    assert completions[0].token_ids, "the steered reply should not be empty"


def _second_pass(model, vectors, prompt, reply_ids, layers):
    ids = encode(model.tokenizer, prompt) + list(reply_ids)
    batch, mask = pad_right([ids], model.tokenizer.pad_token_id)
    return project(vectors, residuals(model, batch, mask, layers), layers).mean(0)[0]


def test_readouts_equal_a_second_pass_in_a_mixed_batch(family):
    model, vectors = family
    engine = Engine(model, vectors)
    readouts = ReadoutSpec(layers=(0, 2), units="raw")
    steered = SteeringSpec({"desperate": 0.7}, (1,), "all")
    requests = [
        _request(PROMPTS[1], 8, readouts=readouts),
        _request(PROMPTS[0], 6, steered, readouts=readouts),
        _request(PROMPTS[2], 9, SteeringSpec({"calm": 0.5}, (2,))),
    ]
    plain, steered_reply, _ = engine.run(requests)
    for completion, prompt, alphas in ((plain, PROMPTS[1], None), (steered_reply, PROMPTS[0], 1)):
        if alphas:
            with steer(model, vectors, steered.alphas, layers=[1]):
                reference = _second_pass(model, vectors, prompt, completion.token_ids, [0, 2])
        else:
            reference = _second_pass(model, vectors, prompt, completion.token_ids, [0, 2])
        width = len(encode(model.tokenizer, prompt))
        got = torch.tensor([[r[e] for e in vectors.emotions] for r in completion.token_readouts])
        assert got.shape == (len(completion.token_ids), len(vectors.emotions))
        torch.testing.assert_close(got, reference[width:], atol=1e-4, rtol=1e-4)
        first = torch.tensor([completion.prompt_readouts[e] for e in vectors.emotions])
        torch.testing.assert_close(first, reference[width - 1], atol=1e-4, rtol=1e-4)


def test_rounded_readouts_are_reported_rounded_and_guardrails_read_them_unrounded(family):
    model, vectors = family
    engine = Engine(model, vectors)
    full_spec = ReadoutSpec(layers=(1,), units="raw")
    rounded_spec = ReadoutSpec(layers=(1,), units="raw", decimals=2)
    always = GuardrailPolicy.from_dict(
        {"name": "t", "units": "raw",
         "rules": [{"name": "f", "when": {"emotion": "calm", "above": -1e9}, "action": "flag"}]}
    )  # fmt: skip
    full, rounded = engine.run(
        [
            _request(PROMPTS[0], 6, readouts=full_spec),
            GenerationRequest(
                prompt=PROMPTS[0],
                sampling=SamplingParams(max_new_tokens=6),
                readouts=rounded_spec,
                guardrail=always,
            ),
        ]
    )
    assert rounded.token_ids == full.token_ids
    exact = [value for r in full.token_readouts for value in r.values()]
    shown = [value for r in rounded.token_readouts for value in r.values()]
    assert shown == pytest.approx([round(v, 2) for v in exact], abs=1e-9)
    assert shown != pytest.approx(exact, abs=1e-6)
    [event] = rounded.guardrail_events
    assert event.values["calm"] == pytest.approx(full.token_readouts[0]["calm"], abs=1e-6)
    assert event.values["calm"] != pytest.approx(round(event.values["calm"], 2), abs=1e-6)


def test_the_pass_that_only_reads_the_last_tokens_stops_at_the_readout_layer(family):
    model, vectors = family
    engine = Engine(model, vectors)
    calls = {"head": 0, "top": 0}

    def count(name):
        def hook(*_):
            calls[name] += 1

        return hook

    head = model.model.get_output_embeddings().register_forward_hook(count("head"))
    top = model.layers[2].register_forward_hook(count("top"))
    try:
        reading = ReadoutSpec(layers=(1,), units="raw")
        replies = engine.run([_request(p, 6, readouts=reading) for p in PROMPTS[:2]])
    finally:
        head.remove()
        top.remove()
    assert [len(r.token_readouts) for r in replies] == [6, 6]
    # prefill (one pass for both prompts) + 6 decode passes, the last of which reads and stops
    assert calls == {"head": 6, "top": 6}


def test_a_sampled_reply_depends_only_on_its_own_seed(family):
    model, vectors = family
    engine = Engine(model, vectors)
    sampled = _request(PROMPTS[0], 12, temperature=1.0, top_p=0.9, top_k=50, seed=7)
    alone = engine.run([sampled])[0].token_ids
    neighbours = [_request(p, 9, temperature=1.0, seed=100 + i) for i, p in enumerate(PROMPTS)]
    crowded = engine.run([*neighbours[:2], sampled, *neighbours[2:]])[2].token_ids
    assert crowded == alone
    other_seed = _request(PROMPTS[0], 12, temperature=1.0, top_p=0.9, top_k=50, seed=8)
    assert engine.run([other_seed])[0].token_ids != alone


def test_cancelling_and_a_failing_stop_check_leave_the_others_decoding(family, monkeypatch):
    model, vectors = family
    engine = Engine(model, vectors)
    keep = [_request(PROMPTS[0], 10), _request(PROMPTS[3], 8, SteeringSpec({"calm": 0.5}))]
    alone = [engine.run([request])[0].token_ids for request in keep]
    original = detokenize.IncrementalText.add

    def failing(self, token_id):
        if "BOOM" in self._stop and len(self._ids) == 2:
            raise RuntimeError("stop check exploded")
        return original(self, token_id)

    monkeypatch.setattr(detokenize.IncrementalText, "add", failing)
    doomed = _request(PROMPTS[1], 10, stop=("BOOM",))
    cancelled = _request(PROMPTS[2], 10)
    handles = [engine.submit(r) for r in (keep[0], doomed, cancelled, keep[1])]
    engine.step()
    engine.step()
    handles[2].cancel()
    results = [handle.result() for handle in handles]
    assert [r.finish_reason for r in results] == ["length", "error", "cancelled", "length"]
    assert "stop check exploded" in results[1].error
    assert [results[0].token_ids, results[3].token_ids] == alone


def test_stop_strings_end_the_reply_before_them(family):
    model, vectors = family
    engine = Engine(model, vectors)
    full = engine.run([_request(PROMPTS[0], 12)])[0]
    assert len(full.text) > 4
    stop = full.text[3:5]
    cut = engine.run([_request(PROMPTS[0], 12, stop=(stop,))])[0]
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.find(stop)]


def test_events_stream_in_order_and_add_up_to_the_text(family):
    model, vectors = family
    engine = Engine(model, vectors)
    handle = engine.submit(_request(PROMPTS[0], 6, readouts=ReadoutSpec(units="raw")))
    events = list(handle)
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert isinstance(events[-1], FinishEvent) and events[-1].usage.completion_tokens == 6
    assert [t.index for t in tokens] == list(range(6))
    assert "".join(t.text for t in tokens) == events[-1].text == handle.result().text
    assert all(set(t.readouts) == set(vectors.emotions) for t in tokens)


def test_the_stepping_thread_serves_threads_and_asyncio(family):
    model, vectors = family
    with Engine(model, vectors) as engine:
        expected = [engine.run([_request(p, 6)])[0].token_ids for p in PROMPTS[:3]]
        results: dict[int, list[int]] = {}

        def client(index):
            results[index] = engine.run([_request(PROMPTS[index], 6)])[0].token_ids

        threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [results[i] for i in range(3)] == expected

        async def stream(index):
            handle = engine.submit(_request(PROMPTS[index], 6))
            return [e.token_id async for e in handle.aiter() if isinstance(e, TokenEvent)]

        async def main():
            return await asyncio.gather(*(stream(i) for i in range(3)))

        assert asyncio.run(main()) == expected


def test_caps_queue_requests_without_changing_them(family):
    model, vectors = family
    free = Engine(model, vectors)
    capped = Engine(model, vectors, config=EngineConfig(max_batch_size=2, max_tokens_in_flight=60))
    requests = [_request(p, 8) for p in PROMPTS]
    handles = [capped.submit(r) for r in requests]
    capped.step()
    assert capped.stats().batch_size <= 2 and capped.stats().queue_depth >= 3
    assert [h.result().token_ids for h in handles] == [c.token_ids for c in free.run(requests)]


@pytest.mark.parametrize(
    "request_, message",
    [
        (GenerationRequest(), "exactly one of a prompt or messages"),
        (_request("x", steering=SteeringSpec({"calmm": 0.1})), "did you mean calm"),
        (_request("x", steering=SteeringSpec({"calm": 1.5})), "sane range"),
        (_request("x", steering=SteeringSpec({"calm": 0.1}, (9,))), "layer 9"),
        (_request("x", readouts=ReadoutSpec(units="z")), "calibration"),
        (_request("x", readouts=ReadoutSpec(units="raw", decimals=13)), "decimals"),
        (_request("x", 0), "max_new_tokens"),
        (_request("x", temperature=-1.0), "temperature"),
        (_request("x", top_p=0.0), "top_p"),
        (_request("x", temperature=1.0, seed=2**64), "64 bits"),
        (_request("word " * 1000), "longer than the model's context"),
        (
            GenerationRequest(messages=[{"role": "wizard", "content": "hi"}]),
            "role",
        ),
    ],
)
def test_bad_requests_are_refused_with_one_line(family, request_, message):
    model, vectors = family
    engine = Engine(model, vectors)
    with pytest.raises(AffectlensError, match=message) as caught:
        engine.submit(request_)
    assert "\n" not in str(caught.value)
    assert engine.stats().queue_depth == 0


def test_chat_requests_use_the_models_template(family):
    model, vectors = family
    engine = Engine(model, vectors)
    messages = [{"role": "user", "content": "My dog is sick."}]
    request = GenerationRequest(messages=messages, sampling=SamplingParams(max_new_tokens=4))
    completion = engine.run([request])[0]
    assert completion.usage.prompt_tokens == len(prompt_ids(model.tokenizer, request))
