"""Capturing the residual stream: forward hooks on decoder-layer outputs.

``watch_layers`` hands each chosen layer's output to a callback on every forward pass (used to
read emotions while the model generates). ``capture_residuals`` records the hidden states each
chosen layer writes; with ``stop_after`` the forward pass is cut short after the deepest
captured layer, so no later layer and no full-vocabulary logits are ever computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from affectlens.models.loading import LoadedModel


class _StopForward(Exception):
    """Raised inside the deepest hook to end a forward pass early."""


def hidden_of(output: object) -> torch.Tensor:
    """The hidden states in a decoder layer's output (a tensor or a tuple led by one)."""
    return output[0] if isinstance(output, tuple) else output  # type: ignore[return-value]


@contextmanager
def watch_layers(
    model: LoadedModel, layers: list[int], callback: Callable[[int, torch.Tensor], None]
) -> Iterator[None]:
    """Call ``callback(layer, hidden)`` with each chosen layer's output on every forward pass.

    Hooks registered inside an active ``steer`` block run after its edits, so they see the
    steered stream. Hooks are removed on exit, even after an exception.
    """

    def make_hook(layer: int):
        def hook(_module, _inputs, output):
            callback(layer, hidden_of(output).detach())

        return hook

    handles = []
    try:
        for layer in layers:
            handles.append(model.layers[layer].register_forward_hook(make_hook(layer)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_residuals(
    model: LoadedModel, layers: list[int], *, stop_after: bool = True
) -> Iterator[dict[int, torch.Tensor]]:
    """Record ``{layer: hidden [batch, tokens, hidden]}`` for every forward pass in the block.

    The dict is refilled on each pass. Hooks are removed on exit, even after an exception.
    """
    captured: dict[int, torch.Tensor] = {}
    deepest = max(layers)

    def keep(layer: int, hidden: torch.Tensor) -> None:
        captured[layer] = hidden
        if stop_after and layer == deepest:
            raise _StopForward

    with watch_layers(model, layers, keep):
        yield captured


def run_captured(
    model: LoadedModel,
    captured: dict[int, torch.Tensor],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> dict[int, torch.Tensor]:
    """One forward pass inside :func:`capture_residuals`, tolerating the early stop."""
    captured.clear()
    try:
        with torch.inference_mode():
            model.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _StopForward:
        pass
    return dict(captured)
