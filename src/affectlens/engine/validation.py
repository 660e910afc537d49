"""Checking a request before it starts, and the token ids it begins and ends with.

Every bad request is refused with one :class:`AffectlensError` line before it takes a slot:
a missing or doubled prompt, a bad transcript, sampling out of range, steering or readouts
the artifact cannot serve, a guardrail naming emotions the artifact lacks, a prompt longer
than the model's context.
"""

from __future__ import annotations

import math

from affectlens.calibration import check_units
from affectlens.engine.requests import GenerationRequest
from affectlens.errors import AffectlensError
from affectlens.models.chat import encode, format_chat, validate_messages
from affectlens.models.loading import LoadedModel
from affectlens.steer import MAX_ALPHA, validate_steering
from affectlens.vectors import EmotionVectors


def prompt_ids(tokenizer, request: GenerationRequest) -> list[int]:
    """Token ids of a plain prompt, or of a transcript with the assistant's turn opened."""
    if request.messages is not None:
        messages = validate_messages(request.messages)
        return encode(tokenizer, format_chat(tokenizer, messages, add_generation_prompt=True))
    return encode(tokenizer, request.prompt or "")


def stop_token_ids(model: LoadedModel) -> set[int]:
    """The generation config's end-of-sequence ids: a reply ends before any of them."""
    configured = getattr(model.model.generation_config, "eos_token_id", None)
    configured = configured if isinstance(configured, list) else [configured]
    return {int(token) for token in configured if token is not None}


def _check_sampling(request: GenerationRequest) -> None:
    sampling = request.sampling
    if int(sampling.max_new_tokens) < 1:
        raise AffectlensError("max_new_tokens must be at least 1")
    if not (sampling.temperature >= 0 and math.isfinite(sampling.temperature)):
        raise AffectlensError("temperature must be a finite number >= 0")
    if not 0 < sampling.top_p <= 1:
        raise AffectlensError("top_p must be in (0, 1]")
    if sampling.seed is not None and not -(2**63) <= sampling.seed < 2**64:
        raise AffectlensError("seed must fit in 64 bits")
    if sampling.top_k < 0:
        raise AffectlensError("top_k cannot be negative")


def _need_vectors(vectors: EmotionVectors | None, what: str) -> EmotionVectors:
    if vectors is None:
        raise AffectlensError(f"{what} needs an emotion-vectors artifact, and none is loaded")
    return vectors


def validate_request(
    model: LoadedModel,
    vectors: EmotionVectors | None,
    request: GenerationRequest,
    context: int,
) -> None:
    """Refuse ``request`` with one clear line if the engine cannot serve it as asked."""
    if (request.prompt is None) == (request.messages is None):
        raise AffectlensError("a request needs exactly one of a prompt or messages")
    _check_sampling(request)
    if request.steering is not None and request.steering.alphas:
        chosen = _need_vectors(vectors, "steering")
        layers = list(request.steering.layers or [chosen.default_layer])
        validate_steering(
            model, chosen, request.steering.alphas, layers, request.steering.positions
        )
    if request.readouts is not None:
        chosen = _need_vectors(vectors, "emotion readouts")
        layers = list(request.readouts.layers or [chosen.default_layer])
        if not layers:
            raise AffectlensError("readouts need at least one layer")
        for layer in layers:
            chosen.layer_index(layer)
        check_units(chosen, layers, request.readouts.units)
        for emotion in request.readouts.emotions or ():
            chosen.emotion_index(emotion)
        decimals = request.readouts.decimals
        if decimals is not None and not 0 <= decimals <= 12:
            raise AffectlensError(f"readout decimals must be 0 to 12, not {decimals}")
    if request.guardrail is not None:
        chosen = _need_vectors(vectors, "a guardrail")
        request.guardrail.check(chosen.emotions, MAX_ALPHA)
        check_units(chosen, [chosen.default_layer], request.guardrail.units)
    length = len(prompt_ids(model.tokenizer, request))
    if length == 0:
        raise AffectlensError("cannot generate from an empty prompt")
    if context and length >= context:
        raise AffectlensError(
            f"the prompt is {length} tokens, longer than the model's context of {context}"
        )
