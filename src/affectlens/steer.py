"""``steer``: add emotion vectors to the residual stream while the model runs.

Each chosen decoder layer's output gets ``sum_e alpha_e * residual_norm[layer] * unit_e``, so an
alpha is a fraction of the layer's typical residual norm (the paper's convention). Restricting
the edit to prompt or generated tokens needs absolute token positions: during cached decoding a
layer sees one token per step, so positions come from the positions the model's own forward
receives (``cache_position`` or ``position_ids``; the cache length as the fallback), not from
the layer's local index or from the name a transformers release gives its cache argument.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch

from affectlens.errors import AffectlensError
from affectlens.models.loading import LoadedModel
from affectlens.vectors import EmotionVectors

Positions = Literal["all", "prompt", "generated"]
MAX_ALPHA = 1.0
_POSITIONS = ("all", "prompt", "generated")


def steering_direction(
    vectors: EmotionVectors, alphas: dict[str, float], layer: int
) -> torch.Tensor:
    """The vector added at ``layer``: alphas times unit directions, scaled by the residual norm."""
    column = vectors.layer_index(layer)
    total = torch.zeros(vectors.hidden_size, dtype=torch.float32)
    for emotion, alpha in alphas.items():
        total += float(alpha) * vectors.vectors[vectors.emotion_index(emotion), column].float()
    return total * float(vectors.residual_norms[column])


def validate_steering(
    model: LoadedModel,
    vectors: EmotionVectors,
    alphas: dict[str, float],
    layers: list[int],
    positions: str,
) -> None:
    """Refuse unknown emotions, alphas outside [-1, 1], missing layers and a foreign model."""
    if positions not in _POSITIONS:
        raise AffectlensError(
            f"positions must be one of {', '.join(_POSITIONS)}, not {positions!r}"
        )
    for emotion, alpha in alphas.items():
        vectors.emotion_index(emotion)
        if not abs(float(alpha)) <= MAX_ALPHA:
            raise AffectlensError(
                f"alpha {alpha} for {emotion!r} is outside the sane range "
                f"[-{MAX_ALPHA}, {MAX_ALPHA}] (it is a fraction of the residual norm)"
            )
    if not layers:
        raise AffectlensError("steering needs at least one layer")
    for layer in layers:
        vectors.layer_index(layer)
    vectors.check_fits(model)


@dataclass
class _Tracker:
    """Absolute positions of the tokens in the forward pass under way, per row.

    Positions come from what the model's forward itself receives, whatever transformers calls
    its arguments: ``cache_position`` where it is passed, else ``position_ids`` (per row, so
    left padding is handled), else the KV cache's length plus the local index. A pass over an
    empty cache starts a new prompt, whose end per row is one past its largest position.
    Without any cache every step re-reads the whole sequence from 0, so there a pass that
    extends the remembered prompt counts as a continuation, not a new prompt.
    """

    positions: torch.Tensor | None = None
    prompt_end: torch.Tensor | None = None
    prompt_ids: torch.Tensor | None = None

    def before_forward(self, module, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        shape = ids.shape if ids is not None else embeds.shape
        batch, length = int(shape[0]), int(shape[1])
        past = _cache_argument(kwargs)
        cached = _cache_length(past)
        self.positions = _absolute_positions(kwargs, cached, batch, length)
        if cached > 0:
            return
        if past is None and ids is not None and self._continues_prompt(ids):
            return
        self.prompt_end = self.positions.max(dim=1).values + 1
        self.prompt_ids = ids.detach().clone() if ids is not None else None

    def _continues_prompt(self, ids: torch.Tensor) -> bool:
        known = self.prompt_ids
        return (
            known is not None
            and ids.shape[1] > known.shape[1]
            and ids.shape[0] == known.shape[0]
            and bool(torch.equal(ids[:, : known.shape[1]], known.to(ids.device)))
        )

    def mask(self, batch: int, length: int, positions: str, device: torch.device):
        """A [batch, tokens] bool mask of the tokens to steer, or ``None`` for all of them."""
        if positions == "all" or self.positions is None or self.prompt_end is None:
            return None
        absolute = self.positions.to(device).expand(batch, length)
        end = self.prompt_end.to(device)[:, None]
        return absolute < end if positions == "prompt" else absolute >= end


def _cache_argument(kwargs: dict):
    """The KV cache the forward received, under any of the names transformers has used."""
    for name in ("past_key_values", "cache", "past_key_value"):
        if kwargs.get(name) is not None:
            return kwargs[name]
    return None


def _absolute_positions(kwargs: dict, cached: int, batch: int, length: int) -> torch.Tensor:
    """[batch or 1, tokens] absolute positions of this pass's tokens."""
    cache_position = kwargs.get("cache_position")
    if cache_position is not None:
        return cache_position.reshape(1, -1).long()
    position_ids = kwargs.get("position_ids")
    if position_ids is not None and position_ids.shape[-1] == length:
        return position_ids.reshape(-1, length).long()
    return torch.arange(cached, cached + length).reshape(1, -1).expand(batch, length)


def _cache_length(past) -> int:
    """Tokens already in a KV cache (a ``Cache`` object or the legacy tuple), 0 for none."""
    if past is None:
        return 0
    if hasattr(past, "get_seq_length"):
        return int(past.get_seq_length())
    if isinstance(past, (tuple, list)) and past and past[0] is not None:
        return int(past[0][0].shape[-2])
    return 0


def _layer_hook(direction: torch.Tensor, positions: str, tracker: _Tracker):
    """A forward hook adding ``direction`` to the layer's hidden states (tensor or tuple[0])."""
    cache: dict[tuple, torch.Tensor] = {}

    def hook(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        key = (hidden.device, hidden.dtype)
        if key not in cache:
            cache[key] = direction.to(device=hidden.device, dtype=hidden.dtype)
        delta = cache[key]
        mask = tracker.mask(hidden.shape[0], hidden.shape[1], positions, hidden.device)
        if mask is None:
            steered = hidden + delta
        else:
            steered = hidden + mask[:, :, None].to(hidden.dtype) * delta
        if isinstance(output, tuple):
            return (steered, *output[1:])
        return steered

    return hook


@contextmanager
def steer(
    model: LoadedModel,
    vectors: EmotionVectors,
    alphas: dict[str, float],
    *,
    layers: list[int] | None = None,
    positions: Positions = "all",
) -> Iterator[None]:
    """Within the block, every forward pass of ``model`` is steered by ``alphas``.

    ``alphas`` maps emotions to fractions of the layer's mean residual norm (|alpha| <= 1);
    ``layers`` defaults to the artifact's recommended layer; ``positions`` limits the edit to
    prompt or generated tokens, correctly with or without a KV cache. Hooks are removed on exit,
    also when the block raises.
    """
    chosen = list(layers) if layers is not None else [vectors.default_layer]
    validate_steering(model, vectors, alphas, chosen, positions)
    tracker = _Tracker()
    handles = [model.model.register_forward_pre_hook(tracker.before_forward, with_kwargs=True)]
    try:
        for layer in chosen:
            direction = steering_direction(vectors, alphas, layer)
            hook = _layer_hook(direction, positions, tracker)
            handles.append(model.layers[layer].register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()
