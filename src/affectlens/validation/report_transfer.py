"""The report's transfer section: accuracy per form with CIs, chance, n, confusion matrix."""

from __future__ import annotations

import html

import numpy as np
from matplotlib.figure import Figure

from affectlens.validation.html_parts import (
    ci,
    finish_accuracy_axes,
    fmt,
    plot_accuracy_band,
    png,
    table,
)
from affectlens.validation.transfer import FORMS

TASK_TITLES = {
    "basic6": "6 basic emotions, 6-way",
    "set24": "transfer emotions, all-way",
}


def plot_confusion(emotions: list[str], matrix: list[list[int]]) -> str:
    """Row-normalised confusion heatmap (true emotion down, predicted across), counts written."""
    counts = np.array(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 2.5 + 0.45 * len(emotions)
    figure = Figure(figsize=(size + 1, size))
    ax = figure.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=ax, label="share of the true emotion's texts")
    ticks = range(len(emotions))
    ax.set_xticks(ticks, emotions, rotation=90, fontsize=8)
    ax.set_yticks(ticks, emotions, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(emotions) <= 12:
        for (i, j), value in np.ndenumerate(counts):
            colour = "white" if shares[i, j] > 0.5 else "black"
            ax.text(j, i, str(int(value)), ha="center", va="center", fontsize=7, color=colour)
    return png(figure)


def plot_by_layer(task: dict) -> str:
    """Top-1 accuracy per layer for each form and pooled, Wilson bands, chance line."""
    figure = Figure(figsize=(7, 3.6))
    ax = figure.add_subplot()
    series = [(form, entry) for form, entry in task["per_form"].items()]
    series.append(("pooled", task["pooled"]))
    for number, (name, entry) in enumerate(series):
        layers = [r["layer"] for r in entry["per_layer"]]
        cells = [r["top1"] for r in entry["per_layer"]]
        colour = "k" if name == "pooled" else f"C{number}"
        label = f"{name} (n={entry['n']})"
        plot_accuracy_band(ax, layers, cells, colour, label, alpha=0.12)
    ax.axhline(task["chance"], color="grey", ls=":", label="chance")
    finish_accuracy_axes(ax, "top-1 accuracy")
    return png(figure)


def _ready(transfer: dict) -> list[tuple[str, dict]]:
    if "skipped" in transfer:
        return []
    return [(name, transfer[name]) for name in TASK_TITLES if "skipped" not in transfer[name]]


def transfer_figures(transfer: dict, layer: int) -> list[dict]:
    """The section's figures: accuracy by layer per task, and the 6x6 confusion at ``layer``."""
    figures = []
    for name, task in _ready(transfer):
        figures.append(
            {
                "id": f"transfer-{name}-by-layer",
                "section": "transfer",
                "title": f"Transfer accuracy by layer, {TASK_TITLES[name]} ({transfer['split']})",
                "n": task["n"],
                "ci": "Wilson 95%",
                "png": plot_by_layer(task),
            }
        )
        if name == "basic6":
            figures.append(
                {
                    "id": "transfer-basic6-confusion",
                    "section": "transfer",
                    "title": f"Confusion matrix, 6 basic emotions, all forms (layer {layer})",
                    "n": task["n"],
                    "ci": None,
                    "png": plot_confusion(task["emotions"], task["confusion"][str(layer)]),
                }
            )
    return figures


def _task_html(name: str, task: dict, layer: int) -> str:
    if "skipped" in task:
        return f"<h3>{TASK_TITLES[name]}</h3><p>Skipped: {html.escape(task['skipped'])}</p>"
    column = [r["layer"] for r in task["pooled"]["per_layer"]].index(layer)
    series = [(form, task["per_form"][form]) for form in FORMS if form in task["per_form"]]
    series.append(("pooled", task["pooled"]))
    at_layer = [
        [html.escape(form), str(entry["n"]), ci(entry["per_layer"][column]["top1"])]
        for form, entry in series
    ]
    layers = [r["layer"] for r in task["pooled"]["per_layer"]]
    by_layer = [
        [str(lay)] + [ci(entry["per_layer"][i]["top1"]) for _, entry in series]
        for i, lay in enumerate(layers)
    ]
    missing = (
        f" Not in the vectors: {html.escape(', '.join(task['missing']))}."
        if task["missing"]
        else ""
    )
    return (
        f"<h3>{TASK_TITLES[name]}</h3><p>{len(task['emotions'])} emotions, chance "
        f"{fmt(task['chance'])}, n = {task['n']} texts.{missing}</p>"
        + table(["form", "n", f"top-1 at layer {layer} [Wilson 95%]"], at_layer, f"transfer-{name}")
        + table(["layer"] + [form for form, _ in series], by_layer, f"transfer-{name}-by-layer")
    )


def transfer_html(transfer: dict, layer: int, figures_html: str) -> str:
    """The section's HTML body."""
    if "skipped" in transfer:
        return f"<p>Skipped: {html.escape(transfer['skipped'])}</p>"
    readout = transfer["readout"]
    intro = (
        f"<p>Out-of-genre texts ({html.escape(transfer['source'])}), split "
        f"<b>{html.escape(transfer['split'])}</b>, {transfer['n_texts']} texts; read like the "
        f"held-out stories ({html.escape(readout['pooling'])}, start token "
        f"{readout['start_token']}; {readout['texts_shorter_than_start']} texts are no longer "
        f"than that, so only their last token is read; median {fmt(readout['median_tokens'], 0)}"
        " tokens) and classified by cosine with the vectors.</p>"
    )
    if transfer["split"] == "test":
        intro += "<p><b>Test split: score it once per method, never tune on it.</b></p>"
    tasks = "".join(_task_html(name, transfer[name], layer) for name in TASK_TITLES)
    return intro + tasks + figures_html
