"""``generate_monitored``: replies and their emotion readouts from the same forward passes.

Reading emotions after generating means a second forward pass over prompt and reply, which
costs about as much as the prefill again. Here the engine reads them while it generates: the
prefill gives the readout at the last prompt token (the assistant-turn token of a chat, the
paper's main probe) and every decoding step gives the readout at the token it reads, so every
reply token has one. Steering given as ``steering`` (or an enclosing ``steer`` block) is in
the readouts, as ``monitor`` under ``steer`` would give. A reply ends before its first
end-of-sequence token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from affectlens.engine import Engine, ReadoutSpec, SamplingParams, SteeringSpec
from affectlens.errors import AffectlensError
from affectlens.generation import Prompt, request_for, row_seeds
from affectlens.models.loading import LoadedModel
from affectlens.monitor import readout_layers
from affectlens.steer import validate_steering
from affectlens.vectors import EmotionVectors


@dataclass
class MonitoredReply:
    """A generated reply with the emotion scores read while it was produced.

    ``prompt_scores`` is [emotion] at the last prompt token; ``reply_scores`` is
    [reply token, emotion], one row per token of the reply (none for an empty reply). Scores
    are in ``units`` and averaged over ``layers``.
    """

    text: str
    token_ids: list[int]
    emotions: list[str]
    layers: list[int]
    units: str
    prompt_scores: torch.Tensor
    reply_scores: torch.Tensor

    def assistant_turn(self) -> dict[str, float]:
        """Emotion -> score at the token where the reply begins (the last prompt token)."""
        return dict(zip(self.emotions, self.prompt_scores.tolist(), strict=True))

    def reply_mean(self) -> dict[str, float] | None:
        """Emotion -> mean score over the reply's tokens, or ``None`` for an empty reply."""
        if not len(self.reply_scores):
            return None
        return dict(zip(self.emotions, self.reply_scores.mean(dim=0).tolist(), strict=True))

    def top_k(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` highest-scoring emotions at the assistant turn, best first."""
        values, indices = self.prompt_scores.topk(min(k, len(self.emotions)))
        return [
            (self.emotions[i], v) for i, v in zip(indices.tolist(), values.tolist(), strict=True)
        ]


def generate_monitored(
    model: LoadedModel,
    vectors: EmotionVectors,
    prompts: Sequence[Prompt],
    *,
    layers: Sequence[int] | None = None,
    units: str = "z",
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int | None = None,
    seeds: Sequence[int | None] | None = None,
    steering: SteeringSpec | None = None,
) -> list[MonitoredReply]:
    """Generate a reply to each prompt and read its emotions from the generation's own passes.

    Texts equal :func:`~affectlens.generation.generate_batch` with the same arguments; scores
    equal ``monitor`` of prompt plus reply tokens at the same layers, up to float error.
    ``seeds`` gives each row its own seed (default ``seed + i``), so a row's text depends on
    its seed only, not on the batch it is in.
    """
    if max_new_tokens < 1:
        raise AffectlensError("max_new_tokens must be at least 1")
    if not prompts:
        return []
    if steering is not None:
        steered_layers = list(steering.layers or [vectors.default_layer])
        validate_steering(model, vectors, steering.alphas, steered_layers, steering.positions)
    chosen = readout_layers(model, vectors, layers, units)
    per_row = list(seeds) if seeds is not None else row_seeds(len(prompts), seed)
    if len(per_row) != len(prompts):
        raise AffectlensError("give one seed per prompt")
    readouts = ReadoutSpec(layers=tuple(chosen), units=units)
    requests = [
        request_for(
            prompt,
            SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=row_seed),
            readouts=readouts,
            steering=steering,
        )
        for prompt, row_seed in zip(prompts, per_row, strict=True)
    ]
    emotions = list(vectors.emotions)
    replies = []
    for completion in Engine(model, vectors).run(requests):
        if completion.finish_reason == "error":
            raise AffectlensError(f"generation failed: {completion.error}")
        rows = [[scores[e] for e in emotions] for scores in completion.token_readouts]
        replies.append(
            MonitoredReply(
                text=completion.text,
                token_ids=completion.token_ids,
                emotions=emotions,
                layers=chosen,
                units=units,
                prompt_scores=torch.tensor([completion.prompt_readouts[e] for e in emotions]),
                reply_scores=torch.tensor(rows).reshape(len(rows), len(emotions)),
            )
        )
    return replies
