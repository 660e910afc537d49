"""The server, started for real on loopback, driven by the official ``openai`` client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from affectlens.cli import main
from affectlens.engine import Engine
from affectlens.guardrails import GuardrailPolicy
from affectlens.serve.app import ServerSettings, create_app
from conftest import build_emotion_vectors, build_loaded
from live_server import uvicorn_serving

KEY = "test-key-123"
ALWAYS = {
    "name": "always",
    "units": "raw",
    "rules": [
        {"name": "any-afraid", "when": {"emotion": "afraid", "above": -1e6}, "action": "flag"}
    ],
}


@pytest.fixture(scope="module")
def server():
    model = build_loaded("llama", 3)
    vectors = build_emotion_vectors(model)
    engine = Engine(model, vectors).start()
    settings = ServerSettings(
        model_name="tiny", api_key=KEY, units="raw", max_body_bytes=20_000,
        policies={"always": GuardrailPolicy.from_dict(ALWAYS)}, metric_emotions=("afraid",),
    )  # fmt: skip
    with uvicorn_serving(create_app(engine, vectors, settings)) as url:
        yield url, engine, vectors
    engine.close()


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key=KEY, max_retries=0)


MESSAGES = [{"role": "user", "content": "Tell me about the sea."}]


def test_chat_without_the_extension_is_a_plain_openai_reply(client, server):
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6,
                                           temperature=0)  # fmt: skip
    assert reply.object == "chat.completion" and reply.model == "tiny"
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 6 and reply.usage.prompt_tokens > 0
    assert "affectlens" not in reply.model_dump()
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_streamed_telemetry_equals_the_non_streamed(client):
    extra = {
        "affectlens": {
            "telemetry": "tokens",
            "steer": {"calm": 0.4},
            "emotions": ["calm", "afraid"],
        }
    }
    whole = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=8, temperature=0, extra_body=extra
    ).model_dump()
    stream = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=8, temperature=0, extra_body=extra,
        stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = [chunk.model_dump() for chunk in stream]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    tokens = [
        c["affectlens"]["readouts"] for c in chunks if "readouts" in (c.get("affectlens") or {})
    ]
    assert text == whole["choices"][0]["message"]["content"]
    assert tokens == whole["affectlens"]["tokens"] and set(tokens[0]) == {"calm", "afraid"}
    last = [c for c in chunks if c["choices"]][-1]
    assert last["affectlens"]["summary"] == whole["affectlens"]["summary"]
    assert "tokens" not in last["affectlens"]  # the chunks carried them
    assert chunks[-1]["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"]


def test_text_completions_stream_and_not(client):
    whole = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=6,
                                      temperature=0)  # fmt: skip
    stream = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=6,
                                       temperature=0, stream=True)  # fmt: skip
    assert "".join(c.choices[0].text for c in stream) == whole.choices[0].text


def test_16_concurrent_clients_with_16_steering_settings_each_get_their_own_reply(client):
    emotions = ["calm", "desperate", "happy", "afraid"]
    settings = [{emotions[i % 4]: round(0.1 + 0.05 * i, 2)} for i in range(16)]

    def ask(steer):
        reply = client.chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=6, temperature=0,
            extra_body={"affectlens": {"steer": steer}},
        )  # fmt: skip
        return reply.choices[0].message.content

    alone = [ask(steer) for steer in settings]
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(ask, settings))
    assert together == alone
    assert len(set(alone)) > 1


def test_a_guardrail_fires_in_the_stream_and_in_the_metrics(client, server):
    stream = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=4, temperature=0, stream=True,
        extra_body={"affectlens": {"guardrail": "always"}},
    )  # fmt: skip
    events = [c.model_dump()["affectlens"]["guardrail"] for c in stream
              if "guardrail" in (c.model_dump().get("affectlens") or {})]  # fmt: skip
    assert events and events[0]["rule"] == "any-afraid" and events[0]["token_index"] == 0
    metrics = httpx.get(server[0] + "/metrics").text
    assert 'affectlens_guardrail_firings_total{action="flag",rule="any-afraid"}' in metrics
    assert "affectlens_time_to_first_token_seconds_count" in metrics


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"messages": MESSAGES, "affectlens": {"steer": {"calmm": 0.1}}}, 400, "did you mean"),
        ({"messages": MESSAGES, "affectlens": {"steer": {"calm": 3}}}, 400, "sane range"),
        ({"messages": MESSAGES, "affectlens": {"steer": {"calm": 0.1}, "layers": [9]}}, 400,
         "layer 9"),
        ({"messages": MESSAGES, "affectlens": {"guardrail": "nope"}}, 400, "no guardrail"),
        ({"messages": MESSAGES, "affectlens": {"guardrail": {"rules": []}}}, 400, "rules"),
        ({"messages": MESSAGES, "max_tokens": "many"}, 400, "max_tokens"),
        ({"messages": MESSAGES, "max_tokens": 10**6}, 400, "limit"),
        ({"messages": [{"role": "user", "content": "x" * 5000}]}, 400, "context"),
        ({"messages": []}, 400, "messages"),
        ({"messages": MESSAGES, "n": 3}, 400, "n"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_4xx_in_the_openai_shape(server, body, status, fragment):
    url = server[0] + "/v1/chat/completions"
    response = httpx.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and fragment in error["message"]


def test_malformed_json_a_wrong_key_and_a_big_body(server):
    url = server[0] + "/v1/chat/completions"
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    assert httpx.post(url, content=b"{not json", headers=auth).status_code == 400
    wrong = httpx.post(url, json={"messages": MESSAGES}, headers={"Authorization": "Bearer no"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    big = json.dumps({"messages": [{"role": "user", "content": "y" * 30_000}]})
    assert httpx.post(url, content=big, headers=auth).status_code == 413
    assert httpx.get(server[0] + "/v1/affectlens/emotions", headers=auth).json()["emotions"]


def test_a_client_that_disconnects_mid_stream_frees_its_slot(server):
    base, engine, _ = server
    body = {"messages": MESSAGES, "max_tokens": 2000, "stream": True}
    headers = {"Authorization": f"Bearer {KEY}"}
    url = base + "/v1/chat/completions"
    with httpx.stream("POST", url, headers=headers, json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content"' in line:
                break
    deadline = time.time() + 20
    while engine.stats().batch_size:
        assert time.time() < deadline, "the disconnected request still decodes"
        time.sleep(0.05)


def test_a_stream_whose_client_is_gone_before_the_first_byte_frees_its_slot(server):
    """The response's start cannot be sent: the request must still end (in-flight count back
    to zero, engine row cancelled)."""
    _, engine, vectors = server
    app = create_app(engine, vectors, ServerSettings(model_name="tiny", units="raw"))
    body = json.dumps({"messages": MESSAGES, "max_tokens": 2000, "stream": True}).encode()
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
             "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 2),
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}  # fmt: skip
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)

    async def send(message):
        if message["type"] == "http.response.start":
            raise OSError("the client is gone")

    async def call():
        with contextlib.suppress(OSError):
            await app(scope, receive, send)

    asyncio.run(call())
    assert app.state.metrics.in_flight._value.get() == 0
    deadline = time.time() + 20
    while engine.stats().batch_size or engine.stats().queue_depth:
        assert time.time() < deadline, "the request whose client was gone still decodes"
        time.sleep(0.05)


def test_serve_refuses_a_public_bind_without_a_key(capsys):
    assert main(["serve", "--vectors", "missing.safetensors", "--host", "0.0.0.0"]) == 2
    assert "--api-key" in capsys.readouterr().err
