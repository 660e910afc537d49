"""``monitor``: read every token's emotion projections from one forward pass.

Each token's residual stream at the chosen layers is projected onto every emotion's unit
vector, converted to the requested units and averaged over layers, giving a [token, emotion]
matrix. For chat transcripts the model's own template is used and the assistant-turn tokens
are recorded: the paper's main readout is the last of them, where the reply is about to start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from affectlens.activations import pad_right, project, residuals
from affectlens.calibration import check_units, to_units
from affectlens.errors import AffectlensError
from affectlens.models.chat import (
    Message,
    assistant_turn_positions,
    encode,
    format_chat,
    validate_messages,
)
from affectlens.models.loading import LoadedModel
from affectlens.vectors import EmotionVectors

Content = str | list[dict]


def user_turn(text: str) -> list[Message]:
    """A plain text as a one-message user turn, so it is read where the paper reads.

    Monitoring it reads at the token where the chat template opens the assistant's reply,
    instead of at the text's last token.
    """
    return [{"role": "user", "content": text}]


@dataclass(frozen=True)
class MessageSpan:
    """Tokens ``[start, end)`` of one message (role ``text`` for plain text)."""

    role: str
    start: int
    end: int


@dataclass
class EmotionTrace:
    """Per-token emotion scores of one input; ``units`` says how scores are scaled."""

    tokens: list[str]
    emotions: list[str]
    layers: list[int]
    scores: torch.Tensor
    units: str
    assistant_positions: list[int]
    spans: list[MessageSpan]

    def readout_position(self) -> int:
        """The last assistant-turn token, or for plain text the last token."""
        return self.assistant_positions[-1] if self.assistant_positions else len(self.tokens) - 1

    def at(self, position: int) -> dict[str, float]:
        """Emotion -> score at one token."""
        return dict(zip(self.emotions, self.scores[position].tolist(), strict=True))

    def assistant_turn(self) -> dict[str, float]:
        """Emotion -> score at the last assistant-turn token (the paper's main probe)."""
        return self.at(self.readout_position())

    def top_k(self, position: int, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` highest-scoring emotions at ``position``, best first."""
        values, indices = self.scores[position].topk(min(k, len(self.emotions)))
        return [
            (self.emotions[i], v) for i, v in zip(indices.tolist(), values.tolist(), strict=True)
        ]

    def per_message(self) -> list[dict]:
        """Per message: role, token span and mean score of each emotion over its tokens."""
        return [
            {
                "role": span.role,
                "start": span.start,
                "end": span.end,
                "mean": dict(
                    zip(
                        self.emotions,
                        self.scores[span.start : span.end].mean(0).tolist(),
                        strict=True,
                    )
                ),
            }
            for span in self.spans
            if span.end > span.start
        ]


@dataclass
class _Prepared:
    ids: list[int]
    assistant_positions: list[int]
    spans: list[MessageSpan]


def _prepare(tokenizer, content: Content) -> _Prepared:
    """Token ids, assistant-turn positions and message spans of a text or a transcript."""
    if isinstance(content, str):
        ids = encode(tokenizer, content)
        return _Prepared(ids, [], [MessageSpan("text", 0, len(ids))])
    messages: list[Message] = validate_messages(content)
    opens_turn = messages[-1]["role"] != "assistant"
    ids = encode(tokenizer, format_chat(tokenizer, messages, add_generation_prompt=opens_turn))
    spans, start = [], 0
    for index, message in enumerate(messages):
        prefix = format_chat(tokenizer, messages[: index + 1], add_generation_prompt=False)
        end = min(len(encode(tokenizer, prefix)), len(ids))
        spans.append(MessageSpan(message["role"], start, end))
        start = end
    return _Prepared(ids, assistant_turn_positions(tokenizer, messages), spans)


def readout_layers(
    model: LoadedModel, vectors: EmotionVectors, layers: Sequence[int] | None, units: str
) -> list[int]:
    """The layers to read (default: the artifact's), refusing bad layers, units or model."""
    chosen = list(layers) if layers is not None else [vectors.default_layer]
    if not chosen:
        raise AffectlensError("monitoring needs at least one layer")
    for layer in chosen:
        vectors.layer_index(layer)
    check_units(vectors, chosen, units)
    vectors.check_fits(model)
    return chosen


def monitor_batch(
    model: LoadedModel,
    vectors: EmotionVectors,
    contents: Sequence[Content],
    *,
    layers: Sequence[int] | None = None,
    units: str = "z",
) -> list[EmotionTrace]:
    """``monitor`` for several inputs in one right-padded forward pass."""
    if not contents:
        return []
    chosen = readout_layers(model, vectors, layers, units)
    prepared = [_prepare(model.tokenizer, content) for content in contents]
    if any(not item.ids for item in prepared):
        raise AffectlensError("cannot monitor an empty text")
    ids, mask = pad_right([item.ids for item in prepared], model.tokenizer.pad_token_id)
    raw = project(vectors, residuals(model, ids, mask, chosen), chosen)
    scores = to_units(raw, vectors, chosen, units).mean(dim=0)
    traces = []
    for row, item in enumerate(prepared):
        length = len(item.ids)
        traces.append(
            EmotionTrace(
                tokens=[model.tokenizer.decode([token]) for token in item.ids],
                emotions=list(vectors.emotions),
                layers=chosen,
                scores=scores[row, :length].clone(),
                units=units,
                assistant_positions=item.assistant_positions,
                spans=item.spans,
            )
        )
    return traces


def monitor(
    model: LoadedModel,
    vectors: EmotionVectors,
    content: Content,
    *,
    layers: Sequence[int] | None = None,
    units: str = "z",
) -> EmotionTrace:
    """Emotion scores of every token of a text or chat transcript (averaged over ``layers``)."""
    return monitor_batch(model, vectors, [content], layers=layers, units=units)[0]
