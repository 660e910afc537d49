"""Finding the decoder layers, final norm and unembedding of a causal LM, across families.

Known families (Llama, Qwen2, Mistral, Phi-3, Gemma 2/3, GPT-2, GPT-NeoX) are looked up by
attribute path; anything else falls back to the longest ``ModuleList`` with one entry per layer.
"""

from __future__ import annotations

from torch import nn

from affectlens.errors import AffectlensError

_LAYER_PATHS = (
    "model.layers",  # Llama, Qwen2, Mistral, Phi-3, Gemma 2/3
    "model.language_model.layers",  # Gemma 3 multimodal wrappers
    "transformer.h",  # GPT-2
    "gpt_neox.layers",  # GPT-NeoX
)
_NORM_PATHS = (
    "model.norm",
    "model.language_model.norm",
    "transformer.ln_f",
    "gpt_neox.final_layer_norm",
)


def _resolve(root: nn.Module, path: str) -> nn.Module | None:
    module: nn.Module | None = root
    for name in path.split("."):
        module = getattr(module, name, None)
        if module is None:
            return None
    return module


def num_layers_of(config) -> int:
    """The decoder layer count from a config, whatever the family calls it."""
    text_config = getattr(config, "text_config", None) or config
    for name in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(text_config, name, None)
        if isinstance(value, int):
            return value
    raise AffectlensError(f"cannot tell the layer count of a {type(config).__name__}")


def hidden_size_of(config) -> int:
    """The residual-stream width from a config."""
    text_config = getattr(config, "text_config", None) or config
    for name in ("hidden_size", "n_embd", "d_model"):
        value = getattr(text_config, name, None)
        if isinstance(value, int):
            return value
    raise AffectlensError(f"cannot tell the hidden size of a {type(config).__name__}")


def find_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers whose outputs are the residual stream after each block."""
    expected = num_layers_of(model.config)
    for path in _LAYER_PATHS:
        layers = _resolve(model, path)
        if isinstance(layers, nn.ModuleList) and len(layers) == expected:
            return layers
    candidates = [
        module
        for module in model.modules()
        if isinstance(module, nn.ModuleList) and len(module) == expected
    ]
    if not candidates:
        raise AffectlensError(f"cannot find the decoder layers of {type(model).__name__}")
    return candidates[0]


def find_final_norm(model: nn.Module) -> nn.Module:
    """The norm applied to the last residual stream before the unembedding."""
    for path in _NORM_PATHS:
        norm = _resolve(model, path)
        if norm is not None:
            return norm
    raise AffectlensError(f"cannot find the final norm of {type(model).__name__}")


def find_unembedding(model: nn.Module) -> nn.Module:
    """The output projection from the residual stream to vocabulary logits."""
    head = model.get_output_embeddings()
    if head is None:
        raise AffectlensError(f"{type(model).__name__} has no output embedding")
    return head
