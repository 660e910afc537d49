"""``generate``: text completions or chat replies, greedy or sampled, on the engine.

These are the simple, blocking entry points; they run on :class:`affectlens.engine.Engine`
like every other generation in affectlens, so a reply here is token for token the reply a
server or an experiment gets for the same request. Prompts are tokenized exactly as monitoring
tokenizes them (chat template for message lists). Row ``i`` of a sampled batch uses seed
``seed + i``: its text depends on its own seed, not on what else is in the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from affectlens.engine import Completion, Engine, GenerationRequest, SamplingParams
from affectlens.models.loading import LoadedModel

Prompt = str | list[dict]


def request_for(prompt: Prompt, sampling: SamplingParams, **extra) -> GenerationRequest:
    """The engine request of a plain prompt (str) or a chat transcript (list of messages)."""
    if isinstance(prompt, str):
        return GenerationRequest(prompt=prompt, sampling=sampling, **extra)
    return GenerationRequest(messages=list(prompt), sampling=sampling, **extra)


def row_seeds(count: int, seed: int | None) -> list[int | None]:
    """Per-row seeds of a batch: ``seed + i``, or none."""
    return [None if seed is None else seed + index for index in range(count)]


def generate_completions(
    model: LoadedModel,
    prompts: Sequence[Prompt],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int | None = None,
) -> list[Completion]:
    """The engine's completions of several prompts, one request each, batched together."""
    requests = [
        request_for(
            prompt,
            SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=row_seed),
        )
        for prompt, row_seed in zip(prompts, row_seeds(len(prompts), seed), strict=True)
    ]
    return Engine(model).run(requests) if requests else []


def generate_batch(
    model: LoadedModel,
    prompts: Sequence[Prompt],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int | None = None,
) -> list[str]:
    """Continuations of several prompts; temperature 0 means greedy."""
    completions = generate_completions(
        model, prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
    )
    return [completion.text for completion in completions]


def generate(
    model: LoadedModel,
    prompt: Prompt,
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int | None = None,
) -> str:
    """The continuation of a text prompt, or the assistant's reply to a transcript."""
    return generate_batch(
        model, [prompt], max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
    )[0]
