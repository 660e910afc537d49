"""affectlens: find, monitor and steer the functional emotion vectors of language models."""

__version__ = "0.1.0"
