"""Small HTML and figure helpers shared by the validation report's sections."""

from __future__ import annotations

import base64
import html
import io
import math

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def png(figure: Figure) -> str:
    """The figure as a base64 PNG (for an inline ``data:`` image)."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plot_accuracy_band(
    ax: Axes, layers: list[int], cells: list[dict], colour: str, label: str, alpha: float
) -> None:
    """One accuracy-per-layer line and its band; ``cells`` hold ``value``, ``low``, ``high``."""
    ax.plot(layers, [c["value"] for c in cells], marker="o", color=colour, label=label)
    low = [c["low"] for c in cells]
    high = [c["high"] for c in cells]
    ax.fill_between(layers, low, high, color=colour, alpha=alpha)


def finish_accuracy_axes(ax: Axes, ylabel: str) -> None:
    """Integer layer ticks, accuracy from 0 to 1 and a small legend: every accuracy plot alike."""
    ax.set_xlabel("layer")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, ncol=2)


def fmt(value, digits: int = 3) -> str:
    """A number to ``digits`` decimals, ``–`` for missing or non-finite; other values escaped."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else html.escape(str(value))


def ci(entry: dict, key: str = "value") -> str:
    """``value [low, high]`` of an interval entry."""
    return f"{fmt(entry.get(key))} [{fmt(entry.get('low'))}, {fmt(entry.get('high'))}]"


def table(header: list[str], rows: list[list[str]], table_id: str | None = None) -> str:
    """An HTML table; cells are inserted as given (escape them first)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
