"""Forward hooks for one engine step: per-row steering deltas and last-token projections.

Steering adds a [batch, hidden] delta to a layer's output, one row per request (zeros for a
row that is not steered there), so every request in the batch is steered by its own settings.
Readout hooks, registered after the steering ones, project each row's last token at the
readout layers onto every emotion's unit vector: the readouts come from the same forward pass
that produces the next token, steered where steering is on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from affectlens.capture import hidden_of
from affectlens.models.loading import LoadedModel


class ReadoutsDone(Exception):  # noqa: N818 - a signal, not an error
    """Raised after the last layer a read-only pass needs: the rest of the model is skipped."""


@contextmanager
def step_hooks(
    model: LoadedModel,
    deltas: dict[int, torch.Tensor],
    directions: dict[int, torch.Tensor],
    raw: dict[int, torch.Tensor],
    stop_after: int | None = None,
) -> Iterator[None]:
    """Within the block, add ``deltas[layer]`` [batch, hidden] to each layer's output and fill
    ``raw[layer]`` with the last token's projections [batch, emotion] on ``directions[layer]``
    [emotion, hidden]; with ``stop_after``, raise :class:`ReadoutsDone` once that layer is
    read (a pass that only reads, whose logits nobody samples from)."""

    def add(delta: torch.Tensor):
        def hook(_module, _inputs, output):
            hidden = hidden_of(output)
            steered = hidden + delta.to(device=hidden.device, dtype=hidden.dtype)[:, None, :]
            if isinstance(output, tuple):
                return (steered, *output[1:])
            return steered

        return hook

    def read(layer: int, units: torch.Tensor):
        def hook(_module, _inputs, output):
            last = hidden_of(output)[:, -1, :].detach().float()
            raw[layer] = (last @ units.to(last.device).T).cpu()

        return hook

    handles = []
    try:
        for layer, delta in deltas.items():
            handles.append(model.layers[layer].register_forward_hook(add(delta)))
        for layer, units in directions.items():
            handles.append(model.layers[layer].register_forward_hook(read(layer, units)))
        if stop_after is not None:
            handles.append(model.layers[stop_after].register_forward_hook(_stop))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _stop(_module, _inputs, _output) -> None:
    raise ReadoutsDone
