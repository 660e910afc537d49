"""Reading the residual stream at chosen decoder layers, and projecting it onto emotions.

The forward pass stops right after the deepest layer needed: monitoring never pays for the
layers above it nor for the full-vocabulary logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from affectlens.models.loading import LoadedModel
from affectlens.vectors import EmotionVectors


class _Enough(Exception):
    """Raised by the deepest hook to end the forward pass early."""


def pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask: causal attention keeps real tokens unchanged."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[index, : len(row)] = 1
    return ids, mask


@torch.no_grad()
def residuals(
    model: LoadedModel, ids: torch.Tensor, attention_mask: torch.Tensor, layers: Sequence[int]
) -> dict[int, torch.Tensor]:
    """Output hidden states [batch, tokens, hidden] (float32, CPU) of each of ``layers``."""
    wanted = sorted(set(layers))
    captured: dict[int, torch.Tensor] = {}

    def capture(layer: int):
        def hook(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            captured[layer] = hidden.detach().float().cpu()
            if layer == wanted[-1]:
                raise _Enough

        return hook

    handles = [model.layers[layer].register_forward_hook(capture(layer)) for layer in wanted]
    try:
        model.model(
            input_ids=ids.to(model.device),
            attention_mask=attention_mask.to(model.device),
            use_cache=False,
        )
    except _Enough:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return captured


def project(
    vectors: EmotionVectors, hidden: dict[int, torch.Tensor], layers: Sequence[int]
) -> torch.Tensor:
    """Raw projections [layer, batch, tokens, emotion] of the hidden states onto unit vectors."""
    return torch.stack([hidden[layer] @ vectors.at_layer(layer).float().T for layer in layers])
