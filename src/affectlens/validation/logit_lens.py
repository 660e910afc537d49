"""Logit lens: each emotion vector read through the final norm and the unembedding.

Every vector is scaled to the layer's mean residual norm (so the norm sees a typical
magnitude), then all emotions go through ``final_norm`` and ``unembedding`` in one batched
matmul; no forward pass through the decoder layers is run.
"""

from __future__ import annotations

import torch

from affectlens.models.loading import LoadedModel


def _decode(tokenizer, token_id: int) -> str:
    return tokenizer.decode([token_id])


@torch.no_grad()
def lens_logits(model: LoadedModel, vectors: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Logits [E, vocab] of ``vectors`` [E, H] (times ``scale``) after norm and unembedding."""
    weight = next(model.unembedding.parameters())
    x = (vectors.float() * scale).to(device=weight.device, dtype=weight.dtype)
    return model.unembedding(model.final_norm(x[None]))[0].float().cpu()


def top_tokens(model: LoadedModel, logits: torch.Tensor, emotions: list[str], k: int = 10):
    """Per emotion, the ``k`` tokens the vector promotes most and least, with their logits."""
    k = min(k, logits.shape[-1])
    top = logits.topk(k, dim=-1)
    bottom = logits.topk(k, dim=-1, largest=False)
    out = []
    for row, emotion in enumerate(emotions):
        out.append(
            {
                "emotion": emotion,
                "top": [
                    {"token": _decode(model.tokenizer, int(t)), "id": int(t), "logit": float(v)}
                    for t, v in zip(top.indices[row], top.values[row], strict=True)
                ],
                "bottom": [
                    {"token": _decode(model.tokenizer, int(t)), "id": int(t), "logit": float(v)}
                    for t, v in zip(bottom.indices[row], bottom.values[row], strict=True)
                ],
            }
        )
    return out


def logit_lens(
    model: LoadedModel,
    vectors: torch.Tensor,
    emotions: list[str],
    *,
    scale: float = 1.0,
    k: int = 10,
) -> list[dict]:
    """Top and bottom ``k`` tokens of every emotion vector."""
    return top_tokens(model, lens_logits(model, vectors, scale), emotions, k)
