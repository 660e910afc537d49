"""The geometry section's sanity tables: variance per PC, the cross-half PCA, antonym pairs."""

from __future__ import annotations

import html

import numpy as np

from affectlens.validation.antonyms import positive_pairs
from affectlens.validation.html_parts import fmt, table


def components_html(geometry: dict) -> str:
    """Per PC: explained variance, cumulative, and |r| with valence / arousal when rated."""
    explained = geometry["explained_variance"]
    rated = {row["pc"]: row for row in (geometry.get("components") or {}).get("abs_pearson", [])}
    rows = []
    for pc, (share, total) in enumerate(zip(explained, np.cumsum(explained), strict=True), 1):
        row = rated.get(pc, {})
        rows.append(
            [
                str(pc),
                fmt(share),
                fmt(float(total)),
                fmt(row.get("valence")),
                fmt(row.get("arousal")),
            ]
        )
    header = ["PC", "explained variance", "cumulative", "|r| with valence", "|r| with arousal"]
    best = (geometry.get("components") or {}).get("best_pc")
    text = (
        f"<p>Valence is carried most by PC{best['valence']}, arousal by PC{best['arousal']} "
        "(largest |Pearson r| of the PC's scores with the human ratings).</p>"
        if best
        else ""
    )
    return f'<div id="geometry-components">{text}{table(header, rows, "pc-table")}</div>'


def cross_half_html(cross: dict) -> str:
    """The cross-half PCA's agreement with the ordinary PCA."""
    if "skipped" in cross:
        body = f"<p>Skipped: {html.escape(cross['skipped'])}</p>"
        return f'<div id="geometry-cross-half"><h3>Cross-half PCA</h3>{body}</div>'
    shares = cross.get("reliable_variance_share") or [None] * cross["k"]
    rated = {row["pc"]: row for row in (cross.get("components") or {}).get("abs_pearson", [])}
    rows = [
        [
            str(i + 1),
            fmt(shares[i]),
            fmt(cross["abs_cos_with_pca"][i]),
            f"PC{cross['best_matching_pc'][i]}",
            fmt(cross["subspace_overlap"][i]),
            fmt(rated.get(i + 1, {}).get("valence")),
            fmt(rated.get(i + 1, {}).get("arousal")),
        ]
        for i in range(cross["k"])
    ]
    header = [
        "axis",
        "share of reliable variance",
        "|cos| with same-rank PC",
        "best matching PC",
        "overlap of top-k spans",
        "|r| with valence",
        "|r| with arousal",
    ]
    intro = (
        f"<p>Train stories split into two random halves (seed {cross['seed']}, "
        f"{cross['emotions_in_both_halves']} emotions in both, layer {cross['layer']}); axes of "
        "the symmetrised cross-covariance of the halves' per-emotion vectors, compared with "
        "the ordinary PCA of the artifact's vectors. Overlap 1 means the same span; noise "
        "would give about k / hidden size.</p>"
    )
    return (
        f'<div id="geometry-cross-half"><h3>Cross-half PCA</h3>{intro}'
        f"{table(header, rows, 'cross-half-table')}</div>"
    )


def antonyms_html(antonyms: dict) -> str:
    """Antonym pairs with their cosine at the report's layer; a positive cosine is flagged."""
    layer = antonyms["layer"]
    rows = [
        [
            html.escape(p["a"]),
            html.escape(p["b"]),
            "yes" if p["basic"] else "no",
            fmt(p["cosine"][str(layer)]),
            "<b>POSITIVE</b>" if p["cosine"][str(layer)] > 0 else "",
        ]
        for p in antonyms["pairs"]
    ]
    flagged = positive_pairs(antonyms, layer)
    summary = (
        f"<p>Layer {layer}: {len(flagged)} of {len(antonyms['pairs'])} pairs point the same way"
        + (f" ({html.escape(', '.join(flagged))})" if flagged else "")
        + ".</p>"
    )
    missing = (
        f"<p>Not in the vectors: {html.escape(', '.join(antonyms['missing']))}</p>"
        if antonyms["missing"]
        else ""
    )
    header = ["emotion", "antonym", "basic pair", "cosine", "flag"]
    return (
        f'<div id="geometry-antonyms"><h3>Antonym pairs</h3>{summary}'
        f"{table(header, rows, 'antonym-table')}{missing}</div>"
    )
