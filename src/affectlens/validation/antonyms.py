"""Antonym pairs: opposite emotions should point apart, so a positive cosine is a red flag.

The pairs are opposites among the 171 concept words; pairs with a basic emotion (afraid,
angry, disgusted, happy, sad, surprised) are marked, as the issue's goal concerns those.
Pairs whose words the artifact lacks are listed as missing.
"""

from __future__ import annotations

import numpy as np

from affectlens.validation.transfer import BASIC_EMOTIONS

ANTONYM_PAIRS = (
    ("happy", "sad"),
    ("afraid", "safe"),
    ("angry", "peaceful"),
    ("calm", "anxious"),
    ("hopeful", "desperate"),
    ("relaxed", "tense"),
    ("proud", "ashamed"),
    ("grateful", "resentful"),
    ("excited", "bored"),
    ("patient", "impatient"),
    ("energized", "tired"),
    ("loving", "hateful"),
    ("satisfied", "frustrated"),
    ("joyful", "miserable"),
)


def antonym_cosines(
    emotions: list[str],
    vectors: np.ndarray,
    layers: list[int],
    pairs: tuple[tuple[str, str], ...] = ANTONYM_PAIRS,
) -> dict:
    """Cosine of each present pair at every layer; ``vectors`` is [E, L, H]."""
    x = np.asarray(vectors, dtype=float)
    x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    rows, missing = [], []
    for a, b in pairs:
        if a not in emotions or b not in emotions:
            missing.append(f"{a}/{b}")
            continue
        cosine = (x[emotions.index(a)] * x[emotions.index(b)]).sum(axis=-1)
        rows.append(
            {
                "a": a,
                "b": b,
                "basic": a in BASIC_EMOTIONS or b in BASIC_EMOTIONS,
                "cosine": {str(layer): float(c) for layer, c in zip(layers, cosine, strict=True)},
            }
        )
    return {"pairs": rows, "missing": missing}


def positive_pairs(antonyms: dict, layer: int) -> list[str]:
    """``a/b`` of the pairs with a positive cosine at ``layer``."""
    return [f"{p['a']}/{p['b']}" for p in antonyms["pairs"] if p["cosine"][str(layer)] > 0]
