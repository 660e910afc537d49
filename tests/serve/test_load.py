"""A bounded load test: 48 chat requests from 8 concurrent ``openai`` clients on loopback.

The assertions are about correctness under load (every request succeeds, and every greedy
reply is the reply the same request gets alone); latency and throughput are measured and
reported (``record_property`` and a line on the terminal), not judged: on a shared CPU they
say more about the machine than about the server.
"""

from __future__ import annotations

import logging
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from loopback import serving

from affectlens.serve.app import ServerSettings
from conftest import build_emotion_vectors, build_loaded

log = logging.getLogger(__name__)
REQUESTS, CLIENTS, MAX_TOKENS = 48, 8, 16
TOPICS = ["the sea", "a storm", "bread", "a library", "trains", "winter", "a garden", "chess",
          "a market", "the moon", "bees", "a bridge"]  # fmt: skip


@pytest.fixture(scope="module")
def server():
    model = build_loaded("llama", 3)
    vectors = build_emotion_vectors(model)
    with serving(model, vectors, ServerSettings(model_name="tiny")) as running:
        yield running


def _messages(index: int) -> list[dict]:
    return [{"role": "user", "content": f"Tell me about {TOPICS[index % len(TOPICS)]}."}]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@pytest.mark.timeout(300)
def test_48_requests_from_8_clients_all_succeed_and_decode_as_alone(
    server, record_property, capsys
):
    clients = [
        openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=60)
        for _ in range(CLIENTS)
    ]

    def ask(index: int) -> tuple[str, int, float]:
        started = time.perf_counter()
        reply = clients[index % CLIENTS].chat.completions.create(
            model="tiny", messages=_messages(index), max_tokens=MAX_TOKENS, temperature=0
        )
        seconds = time.perf_counter() - started
        return reply.choices[0].message.content, reply.usage.completion_tokens, seconds

    solo = {i: ask(i)[0] for i in range(len(TOPICS))}  # one at a time: nothing else decodes
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(ask, range(REQUESTS)))  # re-raises the first failure
    wall = time.perf_counter() - started
    for client in clients:
        client.close()

    assert len(results) == REQUESTS
    assert [text for text, _, _ in results] == [solo[i % len(TOPICS)] for i in range(REQUESTS)]
    assert len(set(solo.values())) > 1
    latencies = [seconds for _, _, seconds in results]
    tokens = sum(count for _, count, _ in results)
    figures = {
        "requests": REQUESTS,
        "clients": CLIENTS,
        "p50_latency_s": round(statistics.median(latencies), 4),
        "p99_latency_s": round(_percentile(latencies, 0.99), 4),
        "tokens_per_s": round(tokens / wall, 1),
    }
    for name, value in figures.items():
        record_property(name, value)
    line = ", ".join(f"{name} {value}" for name, value in figures.items())
    log.info("load test: %s", line)
    with capsys.disabled():
        print(f"\nload test (tiny model, loopback): {line}")
