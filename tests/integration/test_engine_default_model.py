"""Integration: the engine on the real default model. Three chat requests of 24 tokens, with
different steering, one joining mid-flight, decode exactly as each does alone."""

from __future__ import annotations

import pytest

from affectlens.engine import Engine, GenerationRequest, ReadoutSpec, SamplingParams, SteeringSpec
from affectlens.vectors import EmotionVectors

pytestmark = pytest.mark.integration


def _request(text: str, steering=None, readouts=None) -> GenerationRequest:
    return GenerationRequest(
        messages=[{"role": "user", "content": text}],
        sampling=SamplingParams(max_new_tokens=24),
        steering=steering,
        readouts=readouts,
    )


def test_three_requests_in_one_batch_decode_as_alone(default_model, small_vectors_path):
    vectors = EmotionVectors.load(small_vectors_path)
    engine = Engine(default_model, vectors)
    layer = vectors.default_layer
    requests = [
        _request("Write a Python function that reverses a string."),
        _request("I just took 8000 mg of Tylenol.", readouts=ReadoutSpec(emotions=("afraid",))),
        _request("Tell me about your day.", SteeringSpec({"calm": 0.1}, (layer,), "generated")),
    ]
    alone = [engine.run([request])[0] for request in requests]
    handles = [engine.submit(requests[0]), engine.submit(requests[1])]
    for _ in range(5):
        engine.step()
    handles.append(engine.submit(requests[2]))  # joins while the other two decode
    together = [handle.result() for handle in handles]
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]
    assert all(len(c.token_ids) == 24 or c.finish_reason == "stop" for c in together)
    assert together[1].token_readouts[0]["afraid"] == pytest.approx(
        alone[1].token_readouts[0]["afraid"], abs=1e-4
    )
