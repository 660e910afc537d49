"""Making and saving matplotlib figures headlessly and atomically.

Figures are built with matplotlib's object API and drawn by the Agg canvas, so neither
importing this module nor plotting selects a pyplot backend or registers a figure globally:
a program embedding the package keeps whatever backend it chose.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def subplots(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Figure, Any]:
    """A new figure and its axes, like ``pyplot.subplots``, rendered by the Agg canvas."""
    figsize = kwargs.pop("figsize", None)
    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure, figure.subplots(nrows, ncols, **kwargs)


def save_figure(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as PNG via a temporary name (an interrupted save leaves no PNG)."""
    partial = path.with_name(path.name + ".partial.png")
    figure.savefig(partial, dpi=120, bbox_inches="tight")
    os.replace(partial, path)
    return path
