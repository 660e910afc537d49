"""A generation engine for live use: continuous batching, per-request steering and readouts,
streamed events and closed-loop guardrails (see :class:`Engine`)."""

from affectlens.engine.engine import Engine, EngineConfig, EngineStats
from affectlens.engine.handle import RequestHandle
from affectlens.engine.requests import (
    Completion,
    FinishEvent,
    GenerationRequest,
    ReadoutSpec,
    SamplingParams,
    SteeringSpec,
    TokenEvent,
    Usage,
)

__all__ = [
    "Completion",
    "Engine",
    "EngineConfig",
    "EngineStats",
    "FinishEvent",
    "GenerationRequest",
    "ReadoutSpec",
    "RequestHandle",
    "SamplingParams",
    "SteeringSpec",
    "TokenEvent",
    "Usage",
]
