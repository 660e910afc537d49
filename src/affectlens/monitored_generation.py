"""``generate_monitored``: replies and their emotion readouts from the same forward passes.

Reading emotions after generating means a second forward pass over prompt and reply, which
costs about as much as the prefill again. Here a hook at the readout layers projects each
pass's residual stream onto the emotion vectors while ``generate`` runs: the prefill gives the
readout at the last prompt token (the assistant-turn token of a chat, the paper's main probe)
and every decoding step gives the readout at the token it reads, one generated token at a
time. Run it inside ``steer`` and the readouts are of the steered stream, as ``monitor`` under
``steer`` would give.

The model never reads its last generated token back, so one extra token is generated and
dropped: every reply token then has a readout. A reply ends before its first end-of-sequence
token (the padding that fills a finished row follows it); that token and the steps after it
carry no readout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from affectlens.calibration import to_units
from affectlens.capture import watch_layers
from affectlens.errors import AffectlensError
from affectlens.generation import Prompt, generate_tokens, prompt_ids
from affectlens.models.loading import LoadedModel
from affectlens.monitor import readout_layers
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


def stop_token_ids(model: LoadedModel) -> set[int]:
    """The tokens ``generate`` stops a row at: the generation config's end-of-sequence ids.

    Only those end a row (it is then filled with padding), so a reply cut at them is exactly
    the text ``generate_batch`` decodes.
    """
    configured = getattr(model.model.generation_config, "eos_token_id", None)
    configured = configured if isinstance(configured, list) else [configured]
    return {int(token) for token in configured if token is not None}


def reply_lengths(new_tokens: torch.Tensor, stops: set[int], limit: int) -> list[int]:
    """Per row, the tokens before the first stop token, at most ``limit``."""
    is_stop = torch.isin(new_tokens, torch.tensor(sorted(stops), dtype=new_tokens.dtype))
    lengths = []
    for row in is_stop:
        hits = row.nonzero()
        lengths.append(min(int(hits[0]) if len(hits) else len(row), limit))
    return lengths


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
) -> list[MonitoredReply]:
    """Generate a reply to each prompt and read its emotions from the generation's own passes.

    Texts equal :func:`~affectlens.generation.generate_batch` with the same arguments; scores
    equal ``monitor`` of prompt plus reply tokens at the same layers, up to float error.
    """
    if max_new_tokens < 1:
        raise AffectlensError("max_new_tokens must be at least 1")
    if not prompts:
        return []
    chosen = readout_layers(model, vectors, layers, units)
    units_by_layer = {layer: vectors.at_layer(layer).float() for layer in chosen}
    passes: dict[int, list[torch.Tensor]] = {layer: [] for layer in chosen}

    def record(layer: int, hidden: torch.Tensor) -> None:
        directions = units_by_layer[layer].to(hidden.device)
        passes[layer].append((hidden.float() @ directions.T).cpu())

    with watch_layers(model, sorted(set(chosen)), record):
        new_tokens = generate_tokens(
            model, prompts, max_new_tokens=max_new_tokens + 1, temperature=temperature, seed=seed
        )
    raw = torch.stack([torch.cat(passes[layer], dim=1) for layer in chosen])
    scores = to_units(raw, vectors, chosen, units).mean(dim=0)  # [batch, columns, emotion]
    prompt_width = max(len(prompt_ids(model.tokenizer, prompt)) for prompt in prompts)
    if scores.shape[1] != prompt_width + new_tokens.shape[1] - 1:
        raise AffectlensError(
            "generate ran an unexpected sequence of forward passes (one prefill, then one "
            "token per step, is needed to read emotions during generation)"
        )
    lengths = reply_lengths(new_tokens, stop_token_ids(model), max_new_tokens)
    replies = []
    for row, length in enumerate(lengths):
        ids = new_tokens[row, :length].tolist()
        replies.append(
            MonitoredReply(
                text=model.tokenizer.decode(ids, skip_special_tokens=True),
                token_ids=ids,
                emotions=list(vectors.emotions),
                layers=chosen,
                units=units,
                prompt_scores=scores[row, prompt_width - 1].clone(),
                reply_scores=scores[row, prompt_width : prompt_width + length].clone(),
            )
        )
    return replies
