"""Loading causal language models and finding their parts (layers, norm, unembedding)."""

from affectlens.models.loading import LoadedModel, load_model

__all__ = ["LoadedModel", "load_model"]
