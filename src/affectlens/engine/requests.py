"""What a caller asks the engine for, and what it gets back.

A :class:`GenerationRequest` bundles a prompt (plain text or a chat transcript) with its own
sampling, steering, readout and guardrail settings; the engine answers with a stream of events
(:class:`TokenEvent`, guardrail events, one closing :class:`FinishEvent`) and, at the end, a
:class:`Completion` that collects them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from affectlens.guardrails import GuardrailEvent, GuardrailPolicy

FinishReason = Literal["stop", "length", "cancelled", "guardrail", "error"]


@dataclass(frozen=True)
class SamplingParams:
    """How a request picks its tokens; ``temperature`` 0 is greedy.

    ``seed`` seeds the request's own generator, so a sampled reply depends on nothing else in
    the batch; ``stop`` strings end the reply before them, ``stop_token_ids`` add to the
    model's end-of-sequence tokens, which cannot be drawn before ``min_new_tokens`` (or the
    model's ``generation_config.min_new_tokens``, as in transformers).
    """

    max_new_tokens: int = 64
    min_new_tokens: int = 0
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class SteeringSpec:
    """Emotion -> alpha (a fraction of the layer's mean residual norm) added at ``layers``.

    ``layers`` defaults to the artifact's recommended layer; ``positions`` limits the edit to
    prompt or generated tokens, as in :func:`affectlens.steer.steer`.
    """

    alphas: dict[str, float]
    layers: tuple[int, ...] | None = None
    positions: Literal["all", "prompt", "generated"] = "all"


@dataclass(frozen=True)
class ReadoutSpec:
    """Which emotions to read for every token, at which layers (averaged) and in which units.

    ``decimals`` rounds the reported values (not what a guardrail reads): a server sending
    every token's readouts sends half the bytes at 4 decimals, far finer than a readout's noise.
    """

    emotions: tuple[str, ...] | None = None
    layers: tuple[int, ...] | None = None
    units: str = "z"
    decimals: int | None = None


@dataclass
class GenerationRequest:
    """One generation: exactly one of ``prompt`` (plain text) or ``messages`` (a chat)."""

    prompt: str | None = None
    messages: list[dict] | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    steering: SteeringSpec | None = None
    readouts: ReadoutSpec | None = None
    guardrail: GuardrailPolicy | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class Usage:
    """Token counts in the OpenAI sense."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TokenEvent:
    """One reply token: its id, the text it adds (may be empty mid-character) and readouts.

    ``readouts`` (emotion -> score, the request's units, mean over its layers) is the residual
    stream at this token, from the forward pass that read it; ``None`` without a readout spec.
    """

    index: int
    token_id: int
    text: str
    readouts: dict[str, float] | None


@dataclass(frozen=True)
class FinishEvent:
    """The last event of a request."""

    finish_reason: FinishReason
    usage: Usage
    text: str
    error: str | None = None
    prompt_readouts: dict[str, float] | None = None


@dataclass
class Completion:
    """Everything a finished request produced, collected from its events."""

    request_id: str
    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    usage: Usage
    prompt_readouts: dict[str, float] | None
    token_readouts: list[dict[str, float]]
    guardrail_events: list[GuardrailEvent]
    error: str | None = None
