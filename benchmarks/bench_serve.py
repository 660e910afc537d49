"""The server against the engine it serves, and telemetry against none, measured side by side.

    python benchmarks/bench_serve.py [--new-tokens 64] [--reps 3]
    python benchmarks/bench_serve.py --smoke                  # seconds-long check, tiny model

One process holds the model, a started engine and ``affectlens serve``'s app under uvicorn on
a free loopback port. The clients are the official ``openai`` client, one per thread, in a
second process: a streamed reply is parsed chunk by chunk in Python (171 readouts per chunk
with telemetry), and client threads in the server's process would take that work out of the
server's share of the GIL, the same lock the engine's stepping thread and uvicorn's loop take
turns on, so they would charge the benchmark's own parsing to the server. In their own
process they still share the machine's cores, as any client on the same host does. "Engine"
means the same started engine called directly (``submit`` and wait, from threads of the
server's process), so the server's cost is everything between the socket and the engine:
HTTP, validation, JSON, SSE and the asyncio hand-off. Every reply is forced to the same length
(the model's ``min_new_tokens`` is set to ``--new-tokens``, and the server's usage is checked
against it), greedy, unsteered. Variants run interleaved (AB, BA, ...) after a warm-up; a
ratio is the median of per-repetition ratios. Vectors are random with the real shape (171
emotions x all layers, measured residual norms, identity calibration): the cost of reading
them does not depend on what they contain. No audit store is attached (as with ``serve --db
none``), so a request with ``telemetry: "none"`` reads no emotions at all.

Measures (goals from the serving issue):
1. 1 client: tokens/s through the server vs the engine (>= 0.95x);
2. 8 concurrent clients, non-streamed and streamed: aggregate tokens/s vs the engine (>= 0.95x);
3. 8 streamed clients: ``telemetry: "tokens"`` (171 readouts in every chunk) vs ``"none"``
   (overhead <= 3%, i.e. >= 0.97x);
4. 8 streamed clients: p50 and p99 time to first token vs the engine's own (reported);
5. 8 streamed clients, ``"tokens"`` vs ``"none"``: CPU time per token of the server's process
   (engine, HTTP and encoding, all threads) and of the clients' process (reported), which
   splits 3's cost between serving the readouts and parsing them on the same cores;
6. 8 requests to the engine directly, reading every token's 171 emotions vs reading none
   (reported): the part of 3 that is the engine's, not the server's. A request that reads
   emotions sees each token from the pass that reads it, one decoding step after sampling it,
   so its reply takes one more step.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from multiprocessing.connection import Connection

import openai
import torch
import uvicorn
from _common import (
    CHAT_PROMPTS,
    fixed_length,
    interleaved,
    load_bench_model,
    paired_ratio,
    print_table,
    random_vectors,
)

from affectlens.cli.serve_cmd import METRIC_EMOTIONS
from affectlens.engine import (
    Engine,
    GenerationRequest,
    ReadoutSpec,
    SamplingParams,
    TokenEvent,
)
from affectlens.serve.app import ServerSettings, create_app

PROMPTS = CHAT_PROMPTS
CLIENTS = 8


def _messages(index: int) -> list[dict]:
    return [{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}]


@contextmanager
def _serving(engine: Engine, vectors, name: str) -> Iterator[str]:
    """The server's app over ``engine`` on a free loopback port; its ``/v1`` URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = ServerSettings(
        model_name=name,
        units="z",
        max_in_flight=4 * CLIENTS,
        metric_emotions=tuple(e for e in METRIC_EMOTIONS if e in vectors.emotions),
    )  # as ``affectlens serve`` sets it up
    app = create_app(engine, vectors, settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _server_one(
    client: openai.OpenAI,
    name: str,
    new_tokens: int,
    index: int,
    stream: bool,
    telemetry: str | None,
) -> float | None:
    """One request through the server; its time to first token when streamed.

    The time is to the first token with text, which is the first the server streams (or to
    the end of the reply, where no token has text). A reply of the wrong length raises.
    """
    extra = {} if telemetry is None else {"affectlens": {"telemetry": telemetry}}
    started = time.perf_counter()
    reply = client.chat.completions.create(
        model=name,
        messages=_messages(index),
        max_tokens=new_tokens,
        temperature=0,
        stream=stream,
        stream_options={"include_usage": True} if stream else None,
        extra_body=extra,
    )
    if not stream:
        _check(reply.usage.completion_tokens, new_tokens)
        return None
    first, usage = None, None
    for chunk in reply:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
    _check(usage, new_tokens)
    return first or time.perf_counter() - started


def _check(tokens: int | None, new_tokens: int) -> None:
    if tokens != new_tokens:
        raise RuntimeError(f"a reply of {tokens} tokens, not {new_tokens}")


def _cpu_seconds() -> float:
    """This process's CPU time so far (user + system, all threads)."""
    times = os.times()
    return times.user + times.system


def _client_process(conn: Connection, url: str, name: str, new_tokens: int) -> None:
    """The clients' process: run each batch of requests it is sent, one thread per request,
    and send back their times to first token (or the first error's text); ``None`` ends it."""
    clients = [
        openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
        for _ in range(CLIENTS)
    ]
    with ThreadPoolExecutor(CLIENTS) as pool:
        while (job := conn.recv()) is not None:
            count, stream, telemetry = job
            cpu = _cpu_seconds()
            futures = [
                pool.submit(_server_one, clients[i % CLIENTS], name, new_tokens, i, stream,
                            telemetry)
                for i in range(count)
            ]  # fmt: skip
            try:
                times = [future.result() for future in futures]
                conn.send((times, _cpu_seconds() - cpu))
            except Exception as error:  # the parent raises it, with the run's label
                conn.send(f"{type(error).__name__}: {error}")
    for client in clients:
        client.close()


class Load:
    """``count`` concurrent requests, through the server or to the engine, one thread each.

    Engine requests run in threads of this process; server requests in threads of a client
    process (see the module's docstring). Each run checks every reply's length and records
    each streamed request's time to first token in ``ttft`` under the run's label.
    """

    def __init__(self, engine: Engine, url: str, name: str, new_tokens: int) -> None:
        self.engine, self.new_tokens = engine, new_tokens
        self.pool = ThreadPoolExecutor(CLIENTS)
        self.ttft: dict[str, list[float]] = {}
        self.cpu: dict[str, list[tuple[float, float]]] = {}  # (server, client) CPU s per run
        context = multiprocessing.get_context("spawn")  # no fork of a process running threads
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_client_process, args=(child, url, name, new_tokens), daemon=True
        )
        self._process.start()
        child.close()

    def _record(self, label: str, seconds: float) -> None:
        self.ttft.setdefault(label, []).append(seconds)

    def _engine_one(self, index: int, label: str, readouts: bool) -> None:
        sampling = SamplingParams(max_new_tokens=self.new_tokens)
        spec = ReadoutSpec(units="z") if readouts else None
        started = time.perf_counter()
        handle = self.engine.submit(
            GenerationRequest(messages=_messages(index), sampling=sampling, readouts=spec)
        )
        first = None
        for event in handle:
            if first is None and isinstance(event, TokenEvent) and event.text:
                first = time.perf_counter() - started
        completion = handle.result()
        try:
            _check(completion.usage.completion_tokens, self.new_tokens)
        except RuntimeError as error:
            raise RuntimeError(f"{label}: {error}") from None
        self._record(label, first or time.perf_counter() - started)

    def engine_run(self, count: int, label: str, *, readouts: bool = False) -> Callable[[], None]:
        def run() -> None:
            futures = [self.pool.submit(self._engine_one, i, label, readouts) for i in range(count)]
            for future in futures:
                future.result()

        return run

    def server_run(
        self, count: int, label: str, *, stream: bool = False, telemetry: str | None = None
    ) -> Callable[[], None]:
        def run() -> None:
            cpu = _cpu_seconds()
            self._conn.send((count, stream, telemetry))
            answer = self._conn.recv()
            if isinstance(answer, str):
                raise RuntimeError(f"{label}: {answer}")
            times, client_cpu = answer
            self.cpu.setdefault(label, []).append((_cpu_seconds() - cpu, client_cpu))
            if stream:
                for seconds in times:
                    self._record(label, seconds)

        return run

    def close(self) -> None:
        self.pool.shutdown()
        self._conn.send(None)
        self._process.join(timeout=30)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens per reply")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--smoke", action="store_true", help="tiny random model, few tokens")
    args = parser.parse_args()
    tiny = args.smoke
    new_tokens = 8 if tiny else args.new_tokens
    reps = 2 if tiny else args.reps
    torch.manual_seed(0)
    model = load_bench_model(tiny)
    vectors = random_vectors(model)
    print(f"model: {model.name}  new tokens per reply: {new_tokens}  reps: {reps}")
    print(f"torch threads: {torch.get_num_threads()}; random vectors, {len(vectors.emotions)} "
          f"emotions; {CLIENTS} clients in threads of a separate process")  # fmt: skip
    rows = []

    def row(measure, base, ours, ratio, goal, passed):
        result = "report" if passed is None else "pass" if passed else "FAIL"
        rows.append({"measure": measure, "baseline": base, "affectlens": ours,
                     "ratio": f"{ratio:.3f}x", "goal": goal, "result": result})  # fmt: skip

    def rate(times: list[float], tokens: int) -> str:
        return f"{tokens / statistics.median(times):.1f}"

    engine = Engine(model, vectors)
    with engine, fixed_length(model, new_tokens), _serving(engine, vectors, model.name) as url:
        load = Load(engine, url, model.name, new_tokens)
        try:
            ones = {"engine": load.engine_run(1, "e1"), "server": load.server_run(1, "s1")}
            eights = {
                "engine": load.engine_run(CLIENTS, "engine"),
                "read": load.engine_run(CLIENTS, "read", readouts=True),
                "server": load.server_run(CLIENTS, "s8"),
                "stream": load.server_run(CLIENTS, "none", stream=True, telemetry="none"),
                "tokens": load.server_run(CLIENTS, "tokens", stream=True, telemetry="tokens"),
            }
            for run in [*ones.values(), *eights.values()]:  # warm-up, untimed
                run()
            load.ttft.clear()
            load.cpu.clear()
            one = interleaved(ones, reps, warmup=False)
            eight = interleaved(eights, reps, warmup=False)
        finally:
            load.close()

    ratio = paired_ratio(one["engine"], one["server"])
    row("1 client: server vs engine, tokens/s (", rate(one["engine"], new_tokens),
        rate(one["server"], new_tokens), ratio, ">= 0.95x", ratio >= 0.95)  # fmt: skip
    total = CLIENTS * new_tokens
    for name, label in (("server", "non-streamed"), ("stream", "streamed")):
        ratio = paired_ratio(eight["engine"], eight[name])
        row(f"{CLIENTS} clients, {label}: server vs engine, aggregate tokens/s (",
            rate(eight["engine"], total), rate(eight[name], total), ratio, ">= 0.95x",
            ratio >= 0.95)  # fmt: skip
    ratio = paired_ratio(eight["stream"], eight["tokens"])
    row(f"{CLIENTS} clients, streamed: telemetry tokens vs none, tokens/s (",
        rate(eight["stream"], total), rate(eight["tokens"], total), ratio,
        ">= 0.97x (<= 3%)", ratio >= 0.97)  # fmt: skip
    for side, column in (("server", 0), ("client", 1)):
        base, ours = (
            1000 * statistics.median(c[column] for c in load.cpu[label]) / total
            for label in ("none", "tokens")
        )
        row(f"{CLIENTS} clients, streamed: {side} process CPU ms per token, tokens vs none (",
            f"{base:.2f}", f"{ours:.2f}", ours / base, "reported", None)  # fmt: skip
    ratio = paired_ratio(eight["engine"], eight["read"])
    row(f"{CLIENTS} requests, engine alone: readouts vs none, tokens/s (",
        rate(eight["engine"], total), rate(eight["read"], total), ratio, "reported",
        None)  # fmt: skip
    for q, name in ((0.5, "p50"), (0.99, "p99")):
        base = _percentile(load.ttft["engine"], q)
        ours = _percentile(load.ttft["none"], q)
        row(f"{CLIENTS} clients, streamed: {name} time to first token, ms (",
            f"{1000 * base:.0f}", f"{1000 * ours:.0f}", ours / base, "reported", None)  # fmt: skip
    print(f"time to first token over {len(load.ttft['none'])} requests per variant")
    print_table(rows)


if __name__ == "__main__":
    main()
