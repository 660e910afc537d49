"""A real ``affectlens`` server on a free loopback port, in a thread, for the serving tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from affectlens.engine import Engine
from affectlens.serve.app import ServerSettings, create_app
from affectlens.vectors import EmotionVectors


@dataclass
class Running:
    """A started server: its base URL (no ``/v1``), app, engine and vectors."""

    url: str
    app: FastAPI
    engine: Engine
    vectors: EmotionVectors

    def requests_finished(self) -> float:
        """How many requests the server has finished, by its own Prometheus counter."""
        registry = self.app.state.metrics.registry
        return sum(
            sample.value
            for metric in registry.collect()
            if metric.name == "affectlens_requests"
            for sample in metric.samples
            if sample.name == "affectlens_requests_total"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(model, vectors: EmotionVectors, settings: ServerSettings) -> Iterator[Running]:
    """Start the engine and uvicorn on 127.0.0.1; stop both on exit."""
    engine = Engine(model, vectors).start()
    app = create_app(engine, vectors, settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    try:
        while not server.started:
            assert thread.is_alive() and time.time() < deadline, "server did not start"
            time.sleep(0.05)
        yield Running(f"http://127.0.0.1:{port}", app, engine, vectors)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.close()
