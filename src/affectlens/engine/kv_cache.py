"""A running batch's KV cache: rows join, leave and share one left-padded column space.

Every row of the batch occupies the same number of cache columns; a row that joined later, or
with a shorter prompt, is padded on the left with zero keys and values that its attention mask
hides. Sliding-window layers keep only their last ``window - 1`` columns, which in this shared
column space are each row's last tokens too (the padding is only ever on the far left).
"""

from __future__ import annotations

import torch


def _stored(layer, columns: int) -> int:
    """How many columns a layer keeps when the batch spans ``columns``."""
    if getattr(layer, "is_sliding", False):
        return min(columns, int(layer.sliding_window) - 1)
    return columns


def _fit_left(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """Pad [batch, heads, seq, dim] on the left with zeros, or drop its oldest columns."""
    have = tensor.shape[-2]
    if have >= width:
        return tensor[:, :, have - width :, :]
    pad = tensor.new_zeros(*tensor.shape[:-2], width - have, tensor.shape[-1])
    return torch.cat([pad, tensor], dim=-2)


def _restride(cache, columns: int) -> None:
    for layer in cache.layers:
        width = _stored(layer, columns)
        layer.keys = _fit_left(layer.keys, width)
        layer.values = _fit_left(layer.values, width)
        if getattr(layer, "is_sliding", False):
            layer.cumulative_length = columns


def merge(cache, columns: int, mask: torch.Tensor, other, other_columns: int, other_mask):
    """Append ``other``'s rows to ``cache``; return the merged cache, columns and mask.

    ``cache`` is modified in place (its layers get the merged tensors); ``mask`` [batch,
    columns] marks real tokens.
    """
    width = max(columns, other_columns)
    for layer, extra in zip(cache.layers, other.layers, strict=True):
        stored = _stored(layer, width)
        layer.keys = torch.cat([_fit_left(layer.keys, stored), _fit_left(extra.keys, stored)])
        layer.values = torch.cat([_fit_left(layer.values, stored), _fit_left(extra.values, stored)])
        if getattr(layer, "is_sliding", False):
            layer.cumulative_length = width
    merged_mask = torch.cat([pad_mask(mask, width), pad_mask(other_mask, width)])
    return cache, width, merged_mask


def pad_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Left-pad an attention mask [batch, columns] with zeros to ``width`` columns."""
    missing = width - mask.shape[1]
    if missing <= 0:
        return mask
    return torch.cat([mask.new_zeros(mask.shape[0], missing), mask], dim=1)


def keep_rows(cache, columns: int, mask: torch.Tensor, rows: list[int]):
    """Keep only ``rows`` of the batch, and drop leading columns that are padding for all."""
    index = torch.tensor(rows, dtype=torch.long)
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, index.to(layer.keys.device))
        layer.values = layer.values.index_select(0, index.to(layer.values.device))
    mask = mask.index_select(0, index.to(mask.device))
    real = mask.any(dim=0).nonzero()
    unused = int(real[0]) if len(real) else mask.shape[1]
    if unused > 0:
        mask = mask[:, unused:]
        columns -= unused
        _restride(cache, columns)
    return cache, columns, mask
