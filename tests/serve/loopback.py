"""A real ``affectlens`` server on a free loopback port, in a thread, for the serving tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from affectlens.engine import Engine
from affectlens.serve.app import ServerSettings, create_app
from affectlens.vectors import EmotionVectors
from live_server import uvicorn_serving


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


@contextmanager
def serving(model, vectors: EmotionVectors, settings: ServerSettings) -> Iterator[Running]:
    """Start the engine and uvicorn on 127.0.0.1; stop both on exit."""
    engine = Engine(model, vectors).start()
    app = create_app(engine, vectors, settings)
    try:
        with uvicorn_serving(app) as url:
            yield Running(url, app, engine, vectors)
    finally:
        engine.close()
