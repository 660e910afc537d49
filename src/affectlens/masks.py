"""Which tokens count when averaging activations over a text.

Padding never counts; tokens before ``start`` are skipped (the paper averages from about the
50th token on, once the emotional content has had a chance to build up); and "massive
activation" tokens, whose residual norm dwarfs the rest (Qwen2.5's first token reaches ~1200
against ~16), are dropped per layer because a plain mean would be dominated by them.
"""

from __future__ import annotations

import torch


def position_mask(attention_mask: torch.Tensor, start: int) -> torch.Tensor:
    """[batch, tokens] bool: real tokens at index >= ``start`` within their own sequence.

    Works for left or right padding: a token's index is counted among real tokens only.
    """
    real = attention_mask.bool()
    index_in_text = real.long().cumsum(dim=1) - 1
    lengths = real.sum(dim=1, keepdim=True)
    start_here = torch.clamp(torch.full_like(lengths, start), max=lengths - 1).clamp(min=0)
    return real & (index_in_text >= start_here)


def outlier_mask(hidden: torch.Tensor, valid: torch.Tensor, factor: float) -> torch.Tensor:
    """[batch, tokens] bool: tokens whose norm is at most ``factor`` x the text's median norm."""
    norms = hidden.float().norm(dim=-1)
    masked = norms.masked_fill(~valid, float("nan"))
    median = masked.nanmedian(dim=1, keepdim=True).values
    return valid & (norms <= factor * median)
