"""Saving matplotlib figures headlessly and atomically."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(figure, path: Path) -> Path:
    """Write ``figure`` as PNG via a temporary name, then close it."""
    partial = path.with_name(path.name + ".partial.png")
    figure.savefig(partial, dpi=120, bbox_inches="tight")
    plt.close(figure)
    os.replace(partial, path)
    return path
