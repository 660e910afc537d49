"""The headline figures and 2-D PCA map of a validation report found beside a vectors artifact.

``affectlens validate --out DIR`` writes ``DIR/report.json``; the dashboard shows it when it lies
beside the artifact the server holds: ``<artifact dir>/validation/report.json`` or
``<artifact dir>/<artifact stem>.validation/report.json``.
"""

from __future__ import annotations

import json
from pathlib import Path


def find_validation_report(vectors_path: str | Path | None) -> Path | None:
    """The ``report.json`` beside ``vectors_path``, or ``None`` when there is none."""
    if vectors_path is None:
        return None
    vectors_path = Path(vectors_path)
    folder = vectors_path if vectors_path.is_dir() else vectors_path.parent
    for candidate in (
        folder / f"{vectors_path.stem}.validation" / "report.json",
        folder / "validation" / "report.json",
    ):
        if candidate.is_file():
            return candidate
    return None


def _layer_row(classification: dict, layer: int | None) -> dict:
    rows = classification.get("per_layer") or []
    for row in rows:
        if row.get("layer") == layer:
            return row
    return rows[0] if rows else {}


def validation_summary(report: dict) -> dict:
    """What the dashboard shows of a ``report.json``: headline figures and the PC1 x PC2 map.

    Missing sections give missing keys rather than errors, so a partial or older report still
    shows what it has.
    """
    results = report.get("results") or {}
    classification = results.get("classification") or {}
    geometry = results.get("geometry") or {}
    layer = results.get("layer", classification.get("recommended_layer"))
    row = _layer_row(classification, layer)
    correlations = {
        name: {
            "pearson_r": (value.get("pearson") or {}).get("r"),
            "n": (value.get("pearson") or {}).get("n"),
        }
        for name, value in (geometry.get("correlations") or {}).items()
    }
    scores = geometry.get("scores") or {}
    return {
        "created": report.get("created"),
        "command": report.get("command"),
        "layer": layer,
        "held_out_n": classification.get("n"),
        "recommended_layer": results.get(
            "recommended_layer", classification.get("recommended_layer")
        ),
        "top1": (row.get("top1") or {}).get("value"),
        "top5": (row.get("top5") or {}).get("value"),
        "chance_top1": classification.get("chance_top1"),
        "chance_top5": classification.get("chance_top5"),
        "explained_variance": list(geometry.get("explained_variance") or [])[:5],
        "correlations": correlations,
        "flipped": geometry.get("flipped") or {},
        "pca": [
            {"emotion": name, "x": xy[0], "y": xy[1] if len(xy) > 1 else 0.0}
            for name, xy in scores.items()
            if xy
        ],
        "valence": geometry.get("valence") or {},
    }


def load_validation_summary(vectors_path: str | Path | None) -> dict | None:
    """:func:`validation_summary` of the report beside ``vectors_path``; ``None`` if absent."""
    path = find_validation_report(vectors_path)
    if path is None:
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {"path": str(path), **validation_summary(report)}
