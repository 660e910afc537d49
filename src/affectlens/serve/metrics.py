"""Prometheus metrics of one server: traffic, latency, the engine's queue and batch, guardrail
firings, audit records dropped, and the readouts of a bounded set of emotions (one per-app
registry)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from affectlens.engine import Engine, FinishEvent

_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_READOUT = (-4, -3, -2, -1, -0.5, 0, 0.5, 1, 2, 3, 4)


class ServerMetrics:
    """The server's metrics, registered in their own registry (not the process-global one)."""

    def __init__(self, engine: Engine, emotions: Sequence[str]) -> None:
        self.engine = engine
        self.emotions = tuple(emotions)
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("affectlens_requests", "finished requests", ["finish_reason"],
                                registry=r)  # fmt: skip
        self.tokens = Counter("affectlens_tokens", "tokens", ["kind"], registry=r)
        self.ttft = Histogram("affectlens_time_to_first_token_seconds", "time to first token",
                              buckets=_LATENCY, registry=r)  # fmt: skip
        self.latency = Histogram("affectlens_request_seconds", "request latency",
                                 buckets=_LATENCY, registry=r)  # fmt: skip
        self.queue = Gauge("affectlens_queue_depth", "requests waiting", registry=r)
        self.batch = Gauge("affectlens_batch_size", "rows decoding", registry=r)
        self.in_flight = Gauge("affectlens_requests_in_flight",
                               "requests accepted and not yet ended", registry=r)  # fmt: skip
        self.guardrail = Counter("affectlens_guardrail_firings", "guardrail firings",
                                 ["rule", "action"], registry=r)  # fmt: skip
        self.readout = Histogram("affectlens_emotion_readout", "per-token readouts",
                                 ["emotion"], buckets=_READOUT, registry=r)  # fmt: skip
        self._readout_children = {emotion: self.readout.labels(emotion) for emotion in emotions}
        self.audit_dropped = Counter("affectlens_audit_dropped",
                                     "audit records dropped because the writer's queue was full",
                                     registry=r)  # fmt: skip

    def sample_engine(self) -> None:
        stats = self.engine.stats()
        self.queue.set(stats.queue_depth)
        self.batch.set(stats.batch_size)

    def observe_token(self, readouts: dict[str, float] | None) -> None:
        if readouts is None:
            return
        for emotion, child in self._readout_children.items():
            if emotion in readouts:
                child.observe(readouts[emotion])

    def finished(self, event: FinishEvent, seconds: float) -> None:
        self.requests.labels(event.finish_reason).inc()
        self.tokens.labels("prompt").inc(event.usage.prompt_tokens)
        self.tokens.labels("completion").inc(event.usage.completion_tokens)
        self.latency.observe(seconds)
