"""``steer``: add emotion vectors to the residual stream while the model runs.

Each chosen decoder layer's output gets ``sum_e alpha_e * residual_norm[layer] * unit_e``, so an
alpha is a fraction of the layer's typical residual norm (the paper's convention). Restricting
the edit to prompt or generated tokens needs absolute token positions: during cached decoding a
layer sees one token per step, so positions come from the cache length seen by the model's
forward, not from the layer's local index.
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
    """Absolute positions of the tokens in the forward pass under way.

    ``start`` is the cache length before this pass; ``prompt_length`` the length of the
    sequence's first pass. A pass over an empty cache starts a new prompt. Without any cache
    every step re-reads the whole sequence from 0, so there a pass that extends the remembered
    prompt counts as a continuation, not a new prompt.
    """

    start: int = 0
    prompt_length: int = 0
    prompt_ids: torch.Tensor | None = None

    def before_forward(self, module, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        length = int(ids.shape[1] if ids is not None else embeds.shape[1])
        past = kwargs.get("past_key_values")
        self.start = _cache_length(past)
        if self.start > 0:
            return
        if past is None and ids is not None and self._continues_prompt(ids, length):
            return
        self.prompt_length = length
        self.prompt_ids = ids.detach().clone() if ids is not None else None

    def _continues_prompt(self, ids: torch.Tensor, length: int) -> bool:
        known = self.prompt_ids
        return (
            known is not None
            and length > self.prompt_length
            and ids.shape[0] == known.shape[0]
            and bool(torch.equal(ids[:, : self.prompt_length], known.to(ids.device)))
        )

    def mask(self, length: int, positions: str, device: torch.device) -> torch.Tensor | None:
        """A [tokens] bool mask of the tokens to steer, or ``None`` for all of them."""
        if positions == "all":
            return None
        absolute = torch.arange(self.start, self.start + length, device=device)
        if positions == "prompt":
            return absolute < self.prompt_length
        return absolute >= self.prompt_length


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
        mask = tracker.mask(hidden.shape[1], positions, hidden.device)
        if mask is None:
            steered = hidden + delta
        else:
            steered = hidden + mask[None, :, None].to(hidden.dtype) * delta
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
