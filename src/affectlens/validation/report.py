"""``report.json`` and a self-contained ``index.html`` (plots inlined as base64 PNG).

Both files are written into a temporary sibling folder that then replaces ``out``, so a
crashed run never leaves a half-written report behind.
"""

from __future__ import annotations

import html
import json
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from affectlens.atomic_files import json_safe
from affectlens.validation.html_parts import ci as _ci
from affectlens.validation.html_parts import finish_accuracy_axes, plot_accuracy_band
from affectlens.validation.html_parts import fmt as _fmt
from affectlens.validation.html_parts import png as _png
from affectlens.validation.html_parts import table as _table
from affectlens.validation.report_geometry import antonyms_html, components_html, cross_half_html
from affectlens.validation.report_transfer import transfer_figures, transfer_html

SECTIONS = ("classification", "geometry", "clusters", "logit-lens", "stability", "transfer")
FORMAT = "affectlens.validation/1"


def plot_accuracy(classification: dict) -> str:
    """Top-1 / top-5 / cluster accuracy per layer with Wilson bands and chance lines."""
    rows = classification["per_layer"]
    layers = [r["layer"] for r in rows]
    figure = Figure(figsize=(7, 3.6))
    ax = figure.add_subplot()
    for key, colour in (("top1", "C0"), ("top5", "C1"), ("cluster", "C2")):
        if rows and rows[0].get(key) is None:
            continue
        plot_accuracy_band(ax, layers, [r[key] for r in rows], colour, key, alpha=0.2)
    ax.axhline(classification["chance_top1"], color="C0", ls=":", label="chance top1")
    ax.axhline(classification["chance_top5"], color="C1", ls=":", label="chance top5")
    finish_accuracy_axes(ax, "held-out accuracy")
    return _png(figure)


def plot_explained(geometry: dict) -> str:
    """Explained-variance ratio of the first principal components."""
    explained = geometry["explained_variance"]
    figure = Figure(figsize=(5, 3))
    ax = figure.add_subplot()
    ax.bar(range(1, len(explained) + 1), explained)
    ax.set_xlabel("principal component")
    ax.set_ylabel("explained variance ratio")
    return _png(figure)


def plot_scatter(geometry: dict) -> str:
    """PC1 x PC2 of the emotion vectors, each point labelled, coloured by valence if known."""
    names = list(geometry["scores"])
    xy = np.array([geometry["scores"][n] + [0.0] * (2 - len(geometry["scores"][n])) for n in names])
    valence = geometry.get("valence") or {}
    figure = Figure(figsize=(8, 7))
    ax = figure.add_subplot()
    rated = np.array([n in valence for n in names], dtype=bool)
    if rated.any():
        points = ax.scatter(
            xy[rated, 0],
            xy[rated, 1],
            c=[valence[n] for n in np.array(names)[rated]],
            cmap="coolwarm",
            s=14,
        )
        figure.colorbar(points, ax=ax, label="human valence")
    if (~rated).any():
        label = "no norm" if rated.any() else None
        ax.scatter(xy[~rated, 0], xy[~rated, 1], color="grey", s=14, label=label)
        if label:
            ax.legend(fontsize=7)
    for name, (x, y) in zip(names, xy, strict=True):
        ax.annotate(name, (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    flipped = geometry.get("flipped", {})
    ax.set_xlabel("PC1" + (" (flipped)" if flipped.get("pc1") else ""))
    ax.set_ylabel("PC2" + (" (flipped)" if flipped.get("pc2") else ""))
    return _png(figure)


def plot_by_layer(by_layer: list[dict]) -> str:
    """Sign-flipped PC1~valence and PC2~arousal Pearson r per layer, Fisher bands."""
    layers = [r["layer"] for r in by_layer]
    figure = Figure(figsize=(7, 3.4))
    ax = figure.add_subplot()
    for key, colour in (("pc1_valence", "C3"), ("pc2_arousal", "C4")):
        if not by_layer or key not in by_layer[0]:
            continue
        ax.plot(layers, [r[key]["r"] for r in by_layer], marker="o", color=colour, label=key)
        low = [np.nan if r[key]["low"] is None else r[key]["low"] for r in by_layer]
        high = [np.nan if r[key]["high"] is None else r[key]["high"] for r in by_layer]
        ax.fill_between(layers, low, high, color=colour, alpha=0.2)
    ax.set_xlabel("layer")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("Pearson r (after sign flip)")
    ax.set_ylim(-0.05, 1.02)
    ax.legend(fontsize=7)
    return _png(figure)


def plot_heatmap(clusters: dict) -> str:
    """Cosine similarity of the vectors, rows and columns ordered by cluster."""
    matrix = np.array(clusters["cosine"])
    names = clusters["order"]
    size = min(14, 3 + 0.08 * len(names))
    figure = Figure(figsize=(size + 1, size))
    ax = figure.add_subplot()
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
    figure.colorbar(image, ax=ax, label="cosine")
    ticks = range(len(names))
    font = max(3, min(8, 400 // max(len(names), 1)))
    ax.set_xticks(ticks, names, rotation=90, fontsize=font)
    ax.set_yticks(ticks, names, fontsize=font)
    return _png(figure)


def plot_stability(stability: dict) -> str:
    """Histogram of per-emotion split-half cosines with the mean marked."""
    values = list(stability["per_emotion"].values())
    figure = Figure(figsize=(6, 3))
    ax = figure.add_subplot()
    ax.hist(values, bins=min(30, max(5, len(values) // 3)), range=(-1, 1))
    ax.axvline(stability["mean_cosine"], color="k", ls="--", label="mean")
    ax.set_xlabel("split-half cosine")
    ax.set_ylabel("emotions")
    ax.legend(fontsize=7)
    return _png(figure)


def build_figures(results: dict, command: str) -> list[dict]:
    """Every figure: id, section, title, n, CI (where applicable), command and PNG."""
    c, g, k, s = (results[x] for x in ("classification", "geometry", "clusters", "stability"))
    layer = results["layer"]
    figures = [
        {
            "id": "classification-accuracy",
            "section": "classification",
            "title": "Held-out classification accuracy by layer",
            "n": c["n"],
            "ci": "Wilson 95% per layer",
            "png": plot_accuracy(c),
        },
        {
            "id": "geometry-explained-variance",
            "section": "geometry",
            "title": f"PCA explained variance of the vectors (layer {layer})",
            "n": g["n_emotions"],
            "ci": None,
            "png": plot_explained(g),
        },
        {
            "id": "geometry-pc-scatter",
            "section": "geometry",
            "title": f"PC1 x PC2 of the vectors (layer {layer})",
            "n": g["n_emotions"],
            "ci": (
                "Pearson: Fisher z 95%; Spearman: percentile bootstrap 95%"
                if g.get("correlations")
                else None
            ),
            "png": plot_scatter(g),
        },
    ]
    if g.get("by_layer"):
        figures.append(
            {
                "id": "geometry-by-layer",
                "section": "geometry",
                "title": "PC1~valence and PC2~arousal by layer",
                "n": len(g.get("matched", {})),
                "ci": "Fisher z 95%",
                "png": plot_by_layer(g["by_layer"]),
            }
        )
    figures.append(
        {
            "id": "clusters-heatmap",
            "section": "clusters",
            "title": f"Cosine similarity ordered by k-means cluster (k={k['k']}, layer {layer})",
            "n": len(k["order"]),
            "ci": None,
            "png": plot_heatmap(k),
        }
    )
    if "per_emotion" in s:
        figures.append(
            {
                "id": "stability-split-half",
                "section": "stability",
                "title": f"Split-half cosine per emotion (layer {layer})",
                "n": s["n_emotions"],
                "ci": "Student t 95% of the mean over emotions",
                "png": plot_stability(s),
            }
        )
    figures += transfer_figures(_transfer(results), layer)
    for figure in figures:
        figure["command"] = command
    return figures


def _transfer(results: dict) -> dict:
    return results.get("transfer") or {"skipped": "not run"}


def _figure_html(figure: dict) -> str:
    meta = f"n = {figure['n']}" + (f"; CI: {html.escape(figure['ci'])}" if figure["ci"] else "")
    return (
        f'<figure id="fig-{figure["id"]}"><img alt="{html.escape(figure["title"])}" '
        f'src="data:image/png;base64,{figure["png"]}"><figcaption>'
        f"{html.escape(figure['title'])} ({meta})</figcaption></figure>"
    )


def _sections(results: dict, figures: list[dict]) -> dict[str, str]:
    by_section: dict[str, list[str]] = {name: [] for name in SECTIONS}
    for figure in figures:
        by_section[figure["section"]].append(_figure_html(figure))
    c, g, k, lens, s = (
        results[x] for x in ("classification", "geometry", "clusters", "logit_lens", "stability")
    )
    parts: dict[str, str] = {}

    rows = [
        [
            str(r["layer"]),
            _ci(r["top1"]),
            _ci(r["top5"]),
            _ci(r["cluster"]) if r.get("cluster") else "–",
        ]
        for r in c["per_layer"]
    ]
    confusion = [
        [html.escape(x["true"]), html.escape(x["predicted"]), str(x["count"])]
        for x in c.get("confusions", [])
    ]
    parts["classification"] = (
        f"<p>{c['n']} held-out test stories ({c['ignored_test_stories']} of emotions not in "
        f"the vectors ignored). Chance: top-1 {_fmt(c['chance_top1'])}, top-5 "
        f"{_fmt(c['chance_top5'])}. Best top-1 at layer {c['recommended_layer']}; recommended "
        f"layer <b>{results.get('recommended_layer', c['recommended_layer'])}</b> "
        f"({html.escape(results.get('recommendation_rule', 'best held-out top-1'))}). "
        "Cluster accuracy counts a prediction in the true "
        "emotion's k-means cluster as correct.</p>"
        + "".join(by_section["classification"])
        + _table(["layer", "top-1 [95% CI]", "top-5 [95% CI]", "cluster [95% CI]"], rows)
        + f"<h3>Most frequent confusions (layer {results['layer']})</h3>"
        + _table(["true", "predicted", "count"], confusion)
    )

    explained = ", ".join(_fmt(v) for v in g["explained_variance"][:5])
    text = (
        f"<p>Layer {g['layer']}; explained variance of PC1-5: {explained}. "
        f"Sign convention: {html.escape(g['sign_convention'])}; flipped: PC1 "
        f"{g['flipped']['pc1']}, PC2 {g['flipped']['pc2']}.</p>"
    )
    if g.get("correlations"):
        corr_rows = [
            [
                html.escape(name),
                _ci(value["pearson"], "r"),
                _ci(value["spearman"], "rho"),
                str(value["pearson"]["n"]),
            ]
            for name, value in g["correlations"].items()
        ]
        text += _table(
            ["pair", "Pearson r [Fisher 95%]", "Spearman rho [bootstrap 95%]", "n"], corr_rows
        )
        if g.get("unmatched"):
            text += f"<p>No norm for: {html.escape(', '.join(g['unmatched']))}</p>"
    else:
        text += "<p>No norms file given (--norms), so no valence/arousal correlations.</p>"
    text += components_html(g)
    if "cross_half" in g:
        text += cross_half_html(g["cross_half"])
    if "antonyms" in g:
        text += antonyms_html(g["antonyms"])
    parts["geometry"] = text + "".join(by_section["geometry"])

    members = [[str(i), html.escape(", ".join(group))] for i, group in enumerate(k["members"])]
    parts["clusters"] = (
        f"<p>k-means, k={k['k']}, seed {k['seed']}, layer {k['layer']} (k-means++ init).</p>"
        + _table(["cluster", "emotions"], members)
        + "".join(by_section["clusters"])
    )

    def tokens(items: list[dict]) -> str:
        return html.escape(" · ".join(repr(t["token"]) for t in items))

    lens_rows = [
        [html.escape(row["emotion"]), tokens(row["top"]), tokens(row["bottom"])]
        for row in lens["tokens"]
    ]
    parts["logit-lens"] = (
        f"<p>Each vector at layer {lens['layer']}, scaled to the layer's mean residual norm "
        f"({_fmt(lens['scale'])}), through the final norm and unembedding.</p>"
        + _table(["emotion", f"top {lens['k']}", f"bottom {lens['k']}"], lens_rows)
    )

    if "skipped" in s:
        parts["stability"] = f"<p>Skipped: {html.escape(s['skipped'])}</p>"
    else:
        parts["stability"] = (
            f"<p>Mean split-half cosine over {s['n_emotions']} emotions at layer {s['layer']}: "
            f"{_ci(s, 'mean_cosine')} ({s['stories']} train stories, at most "
            f"{s['max_stories_per_emotion']} per emotion).</p>" + "".join(by_section["stability"])
        )
    parts["transfer"] = transfer_html(
        _transfer(results), results["layer"], "".join(by_section["transfer"])
    )
    return parts


TITLES = {
    "classification": "Held-out classification",
    "geometry": "Geometry: PCA and human valence / arousal",
    "clusters": "Clusters",
    "logit-lens": "Logit lens",
    "stability": "Split-half stability",
    "transfer": "Transfer to other kinds of text",
}

STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
    "table{border-collapse:collapse;font-size:13px;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
    "img{max-width:100%}figcaption{font-size:13px;color:#444}code{background:#f4f4f4}"
)


def render_html(results: dict, figures: list[dict], command: str) -> str:
    """The standalone HTML page: one ``<section id=...>`` per check, no external resources."""
    parts = _sections(results, figures)
    nav = " · ".join(f'<a href="#{name}">{TITLES[name]}</a>' for name in SECTIONS)
    body = "".join(
        f'<section id="{name}"><h2>{TITLES[name]}</h2>{parts[name]}</section>' for name in SECTIONS
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>affectlens validation: {html.escape(results['model'])}</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>Emotion vectors validation</h1><p>Model <code>{html.escape(results['model'])}"
        f"</code>, {len(results['emotions'])} emotions, layers {results['layers'][0]}-"
        f"{results['layers'][-1]}; chosen layer {results['layer']} "
        f"({html.escape(results['layer_source'])}).</p>"
        f"<p>Command: <code>{html.escape(command)}</code></p><nav>{nav}</nav>{body}"
        "</body></html>"
    )


def build_report(results: dict, command: str, extra: dict | None = None) -> tuple[dict, str]:
    """``(report.json content, index.html text)``."""
    figures = build_figures(results, command)
    report = {
        "format": FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        **(extra or {}),
        "results": results,
        "figures": [{k: v for k, v in f.items() if k != "png"} for f in figures],
    }
    return json_safe(report), render_html(results, figures, command)


def write_report(results: dict, out: str | Path, command: str, extra: dict | None = None) -> Path:
    """Write ``out/report.json`` and ``out/index.html`` atomically; returns ``out``."""
    out = Path(out)
    report, page = build_report(results, command, extra)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (staging / "report.json").write_text(
            json.dumps(report, indent=1, allow_nan=False), encoding="utf-8"
        )
        (staging / "index.html").write_text(page, encoding="utf-8")
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{staging.name[-8:]}")
            out.rename(old)
        staging.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
