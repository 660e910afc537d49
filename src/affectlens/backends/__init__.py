"""Clients of generation servers that stand in for a local model (see :class:`OpenAICompatible`)."""

from affectlens.backends.openai_compatible import OpenAICompatible

__all__ = ["OpenAICompatible"]
