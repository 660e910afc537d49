"""Residual streams of padded batches at chosen layers, and their projections onto emotions.

Built on :mod:`affectlens.capture`: the forward pass stops right after the deepest layer
needed, so monitoring never pays for the layers above it nor for the full-vocabulary logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from affectlens.capture import capture_residuals, run_captured
from affectlens.models.loading import LoadedModel
from affectlens.vectors import EmotionVectors


def pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask: causal attention keeps real tokens unchanged."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[index, : len(row)] = 1
    return ids, mask


def residuals(
    model: LoadedModel, ids: torch.Tensor, attention_mask: torch.Tensor, layers: Sequence[int]
) -> dict[int, torch.Tensor]:
    """Output hidden states [batch, tokens, hidden] (float32, CPU) of each of ``layers``."""
    wanted = sorted(set(layers))
    with capture_residuals(model, wanted) as captured:
        hidden = run_captured(
            model, captured, ids.to(model.device), attention_mask.to(model.device)
        )
    return {layer: value.float().cpu() for layer, value in hidden.items()}


def project(
    vectors: EmotionVectors, hidden: dict[int, torch.Tensor], layers: Sequence[int]
) -> torch.Tensor:
    """Raw projections [layer, batch, tokens, emotion] of the hidden states onto unit vectors."""
    return torch.stack([hidden[layer] @ vectors.at_layer(layer).float().T for layer in layers])
