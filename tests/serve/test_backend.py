"""``OpenAICompatible`` against a real ``affectlens`` server on loopback (tiny random model)."""

from __future__ import annotations

import threading
import time

import pytest
from loopback import serving

from affectlens.backends import OpenAICompatible
from affectlens.cli import main
from affectlens.engine import GenerationRequest, SamplingParams
from affectlens.errors import AffectlensError
from affectlens.serve.app import ServerSettings
from conftest import build_emotion_vectors, build_loaded
from live_server import free_port

KEY = "backend-key"
PROMPTS = [
    [{"role": "user", "content": "Tell me about the sea."}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Describe a storm in one line."},
    ],
    [{"role": "user", "content": "What is a lighthouse for?"}],
    [{"role": "user", "content": "Name three birds."}],
]


@pytest.fixture(scope="module")
def server():
    model = build_loaded("llama", 3)
    vectors = build_emotion_vectors(model)
    with serving(model, vectors, ServerSettings(model_name="tiny", api_key=KEY)) as running:
        yield running


@pytest.fixture
def backend(server):
    with OpenAICompatible(server.url + "/v1", api_key=KEY, max_retries=0) as client:
        yield client


def _engine_texts(server, prompts, max_new_tokens, temperature, seeds):
    requests = [
        GenerationRequest(
            messages=p if isinstance(p, list) else None,
            prompt=p if isinstance(p, str) else None,
            sampling=SamplingParams(
                max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
            ),
        )  # fmt: skip
        for p, seed in zip(prompts, seeds, strict=True)
    ]
    return [completion.text for completion in server.engine.run(requests)]


def test_the_model_defaults_to_the_first_the_server_lists(backend):
    assert backend.model == "tiny"


def test_greedy_replies_equal_the_engines_for_the_same_requests(server, backend):
    texts = backend.complete(PROMPTS, max_new_tokens=12, temperature=0.0, seed=None)
    assert texts == _engine_texts(server, PROMPTS, 12, 0.0, [None] * len(PROMPTS))
    assert all(texts) and len(set(texts)) > 1


def test_sampled_rows_carry_their_own_seed(server, backend):
    texts = backend.complete(PROMPTS, max_new_tokens=10, temperature=0.9, seed=41)
    assert texts == _engine_texts(server, PROMPTS, 10, 0.9, [41, 42, 43, 44])
    # Row 1 of a batch seeded 41 is seeded 42: alone with seed 42 it gives the same text.
    alone = backend.complete([PROMPTS[1]], max_new_tokens=10, temperature=0.9, seed=42)
    assert alone == [texts[1]]
    other = backend.complete([PROMPTS[0]], max_new_tokens=10, temperature=0.9, seed=99)
    assert other != [texts[0]]


def test_text_prompts_go_to_the_completions_route(server, backend):
    texts = backend.complete(["Once upon a time"], max_new_tokens=8, temperature=0.0, seed=None)
    assert texts == _engine_texts(server, ["Once upon a time"], 8, 0.0, [None])


def test_a_batch_is_decoded_together_not_one_request_after_another(server, backend):
    widest = [0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            widest[0] = max(widest[0], server.engine.stats().batch_size)
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        backend.complete(PROMPTS * 2, max_new_tokens=48, temperature=0.0, seed=None)
    finally:
        done.set()
        watcher.join()
    assert widest[0] > 1


def test_server_errors_are_one_line_naming_the_server(server, backend):
    with pytest.raises(AffectlensError) as refused:
        backend.complete(PROMPTS[:1], max_new_tokens=10**6, temperature=0.0, seed=None)
    message = str(refused.value)
    assert "\n" not in message and server.url in message
    assert "HTTP 400" in message and "max_tokens is over this server's limit" in message
    with pytest.raises(AffectlensError, match="HTTP 401.*invalid or missing API key"):
        OpenAICompatible(server.url + "/v1", api_key="wrong", max_retries=0)


def test_a_dead_url_is_one_line():
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(AffectlensError) as failed:
        OpenAICompatible(dead, max_retries=0)
    assert str(failed.value).startswith(f"no server at {dead}") and "\n" not in str(failed.value)


def test_corpus_generate_with_a_dead_backend_is_one_line(tmp_path, capsys):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    out = tmp_path / "stories.jsonl"
    code = main(["corpus", "generate", "--emotions", "calm", "--per-emotion", "1", "--out",
                 str(out), "--backend", dead, "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [err[0]] and err[0].startswith(f"error: no server at {dead}")
    assert not out.exists()


def test_corpus_generate_through_the_server_reports_every_candidate(server, tmp_path, capsys):
    """The tiny random model writes no acceptable story: every candidate reaches the server,
    is judged by the corpus rules, and the command reports them and writes no empty file."""
    out = tmp_path / "stories.jsonl"
    before = server.requests_finished()
    code = main([
        "corpus", "generate", "--emotions", "calm,afraid", "--per-emotion", "2", "--out",
        str(out), "--max-attempts", "2", "--max-new-tokens", "24", "--batch-size", "4",
        "--backend", server.url + "/v1", "--api-key", KEY, "--no-progress",
    ])  # fmt: skip
    captured = capsys.readouterr()
    # 2 emotions x 2 slots x 2 attempts, each one chat request to the server.
    assert server.requests_finished() - before == 8
    lines = captured.out.splitlines()
    assert any(
        line.startswith("calm: 0 already there, 0 accepted of 4 candidates") for line in lines
    )
    assert any(
        line.startswith("afraid: 0 already there, 0 accepted of 4 candidates") for line in lines
    )
    assert lines[-1].startswith("total: 0 accepted of 8 candidates")
    assert code == 2 and "no story was accepted" in captured.err
    assert not out.exists()


def test_backend_options_need_a_backend(tmp_path, capsys):
    code = main(["corpus", "generate", "--emotions", "calm", "--per-emotion", "1", "--out",
                 str(tmp_path / "s.jsonl"), "--api-key", "k"])  # fmt: skip
    assert code == 2 and "need --backend" in capsys.readouterr().err
