"""Schemathesis fuzzes a real server on loopback from its own ``/openapi.json``.

Every operation the server lists gets valid and invalid requests (at most 30 of each kind,
per operation, within a time limit). The checks: no answer is a 5xx, and every 4xx comes back in
OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from loopback import serving
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from affectlens.guardrails import GuardrailPolicy
from affectlens.serve.app import ServerSettings
from conftest import build_emotion_vectors, build_loaded

KEY = "fuzz-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}
POLICY = {
    "name": "calm-watch",
    "units": "raw",
    "rules": [{"name": "afraid", "when": {"emotion": "afraid", "above": 5.0}, "action": "flag"}],
}


@pytest.fixture(scope="module")
def server():
    model = build_loaded("llama", 3)
    vectors = build_emotion_vectors(model)
    settings_ = ServerSettings(
        model_name="tiny", api_key=KEY, units="raw", default_max_tokens=4, max_tokens_limit=8,
        policies={"calm-watch": GuardrailPolicy.from_dict(POLICY)},
    )  # fmt: skip
    with serving(model, vectors, settings_) as running:
        yield running


def openai_error_shape(ctx, response, case) -> None:
    """A 4xx answer is ``{"error": {"message": str, "type": str, "param", "code"}}``."""
    if not 400 <= response.status_code < 500:
        return
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"not an OpenAI error: {body}"
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, f"error fields: {sorted(error)}"
    assert isinstance(error["message"], str) and error["message"], "empty error message"
    assert isinstance(error["type"], str) and error["type"], "empty error type"
    for name in ("param", "code"):
        assert error[name] is None or isinstance(error[name], str), f"{name} is not a string"


def test_the_schema_is_served_and_names_every_route(server):
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert {"/v1/models", "/v1/chat/completions", "/v1/completions", "/metrics"} <= set(paths)


@pytest.mark.parametrize(
    "sampling", [{"top_p": 5e-324}, {"temperature": 5e-324}, {"temperature": 1e-9, "top_p": 1e-9}]
)
def test_found_by_the_fuzzer_vanishing_top_p_or_temperature_is_no_5xx(server, sampling):
    """A top_p below float32's smallest number dropped every token, and a temperature near 0
    overflowed the logits: both made NaN probabilities and a 500 "generation failed"."""
    body = {"prompt": "Once upon a time", "max_tokens": 4, "seed": 1, **sampling}
    reply = httpx.post(server.url + "/v1/completions", json=body, headers=HEADERS, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["completion_tokens"] >= 1


@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
def test_no_request_gets_a_5xx_and_every_4xx_is_openai_shaped(server, mode):
    """Each operation the server lists, with up to 30 generated requests of this ``mode``.

    (Hypothesis drives each operation directly: schemathesis' lazy pytest fixture loader
    does not run under this pytest.)
    """
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5
    fuzzed = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)  # fmt: skip
        def fuzz(case):
            case.call_and_validate(
                headers=HEADERS, timeout=30, checks=[not_a_server_error, openai_error_shape]
            )

        try:
            fuzz()
        except Unsatisfiable:
            # Only invalid requests can be impossible to make: for a route without parameters
            # or body, or with a lone string path parameter.
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        except BaseException as failure:
            failure.add_note(f"operation: {operation.label} ({mode.value} requests)")
            raise
        fuzzed.append(operation.label)
    assert {"POST /v1/chat/completions", "POST /v1/completions"} <= set(fuzzed)
