"""Geometry of the vectors: PCA, and how its axes line up with human valence and arousal.

Norms CSV layouts accepted (header names matched case-insensitively):

- Warriner et al. (2013): ``Word``, ``V.Mean.Sum``, ``A.Mean.Sum`` (other columns ignored);
- simple: ``emotion``, ``valence``, ``arousal`` (``word`` may replace ``emotion``).

Matching an emotion to a norm word: the lower-cased name itself; if absent, its hyphen-free
form (``self-conscious`` -> ``selfconscious``, also with a space); if still absent, its first
word (``at ease`` -> ``at``, ``worn-out`` -> ``worn``). The word actually used is recorded.

Sign convention: a principal component's sign is arbitrary, so PC1 is flipped to correlate
positively (Pearson) with valence and PC2 with arousal; the flips are recorded, and every
reported score / correlation is after the flip.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from affectlens.errors import AffectlensError
from affectlens.stats import spearman_bootstrap_ci

_LAYOUTS = (
    ("word", "v.mean.sum", "a.mean.sum"),
    ("emotion", "valence", "arousal"),
    ("word", "valence", "arousal"),
)


@dataclass(frozen=True)
class Norm:
    """Human ratings of one word."""

    valence: float
    arousal: float


def load_norms(path: str | Path) -> dict[str, Norm]:
    """Valence / arousal per lower-cased word from a Warriner-style or simple CSV."""
    path = Path(path)
    if not path.is_file():
        raise AffectlensError(f"norms file not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AffectlensError(f"cannot read norms file {path} ({type(exc).__name__})") from exc
    if not rows:
        raise AffectlensError(f"norms file {path} is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    for word_col, v_col, a_col in _LAYOUTS:
        if {word_col, v_col, a_col} <= set(header):
            columns = header.index(word_col), header.index(v_col), header.index(a_col)
            break
    else:
        raise AffectlensError(
            f"norms file {path} needs columns Word,V.Mean.Sum,A.Mean.Sum (Warriner et al.) "
            "or emotion,valence,arousal"
        )
    norms: dict[str, Norm] = {}
    for number, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            word, valence, arousal = (row[c].strip() for c in columns)
            norm = Norm(float(valence), float(arousal))
        except (IndexError, ValueError):
            raise AffectlensError(
                f"norms file {path} line {number}: needs a word and numeric valence/arousal"
            ) from None
        if word and math.isfinite(norm.valence) and math.isfinite(norm.arousal):
            norms.setdefault(word.lower(), norm)
    if not norms:
        raise AffectlensError(f"norms file {path} has no rated words")
    return norms


def norm_word(emotion: str, norms: dict[str, Norm]) -> str | None:
    """The norm word used for ``emotion``: itself, hyphen-free form, or first word."""
    name = emotion.strip().lower()
    candidates = [
        name,
        name.replace("-", ""),
        name.replace("-", " "),
        name.replace("_", " "),
        re.split(r"[\s\-_]+", name)[0],
    ]
    return next((c for c in candidates if c in norms), None)


def match_norms(emotions: list[str], norms: dict[str, Norm]) -> dict[str, str]:
    """``emotion -> norm word`` for the emotions that have one; none at all is an error."""
    matched = {e: w for e in emotions if (w := norm_word(e, norms)) is not None}
    if not matched:
        raise AffectlensError("no emotion in the vectors file is a word in the norms file")
    return matched


@dataclass(frozen=True)
class PCA:
    """Scores [E, k], explained-variance ratios [k] and components [k, H]."""

    scores: np.ndarray
    explained: np.ndarray
    components: np.ndarray


def pca(vectors: np.ndarray, k: int = 10) -> PCA:
    """PCA of the rows (centred over emotions) by SVD."""
    x = np.asarray(vectors, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2:
        raise AffectlensError("PCA needs at least two emotion vectors")
    centred = x - x.mean(axis=0)
    _, singular, right = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    total = variance.sum()
    k = min(k, len(singular))
    explained = variance[:k] / total if total > 0 else np.zeros(k)
    return PCA(centred @ right[:k].T, explained, right[:k])


def pearson_fisher(x, y, confidence: float = 0.95) -> dict:
    """Pearson r with a Fisher-z interval (NaN bounds for n <= 3 or |r| = 1)."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = a.size
    if n < 3 or a.std() == 0 or b.std() == 0:
        return {"r": math.nan, "low": math.nan, "high": math.nan, "p": math.nan, "n": int(n)}
    result = stats.pearsonr(a, b)
    r = float(result.statistic)
    if n > 3 and abs(r) < 1:
        z, half = math.atanh(r), stats.norm.ppf(0.5 + confidence / 2) / math.sqrt(n - 3)
        low, high = math.tanh(z - half), math.tanh(z + half)
    else:
        low = high = math.nan
    return {"r": r, "low": low, "high": high, "p": float(result.pvalue), "n": int(n)}


def spearman_boot(x, y, n_boot: int = 2000, seed: int = 0) -> dict:
    """Spearman rho with a percentile bootstrap interval."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.size < 3 or a.std() == 0 or b.std() == 0:
        return {"rho": math.nan, "low": math.nan, "high": math.nan, "n": int(a.size)}
    estimate = spearman_bootstrap_ci(a, b, n_boot=n_boot, seed=seed)
    return {"rho": estimate.value, "low": estimate.low, "high": estimate.high, "n": int(a.size)}


def _flip(score: np.ndarray, target: np.ndarray) -> bool:
    if score.std() == 0 or target.std() == 0:
        return False
    return float(np.corrcoef(score, target)[0, 1]) < 0


def affect_alignment(
    emotions: list[str], vectors: np.ndarray, norms: dict[str, Norm] | None, *, n_boot: int = 2000
) -> dict:
    """PCA at one layer and, with norms, PC1~valence and PC2~arousal after the sign flip."""
    decomposition = pca(vectors)
    scores = decomposition.scores.copy()
    result: dict = {
        "n_emotions": len(emotions),
        "explained_variance": decomposition.explained.tolist(),
        "sign_convention": "PC1 flipped to correlate positively with valence, PC2 with arousal",
        "flipped": {"pc1": False, "pc2": False},
        "matched": {},
        "correlations": {},
    }
    if norms is not None:
        matched = match_norms(emotions, norms)
        rows = [i for i, e in enumerate(emotions) if e in matched]
        valence = np.array([norms[matched[emotions[i]]].valence for i in rows])
        arousal = np.array([norms[matched[emotions[i]]].arousal for i in rows])
        for column, (name, target) in enumerate((("pc1", valence), ("pc2", arousal))):
            if column < scores.shape[1] and _flip(scores[rows, column], target):
                scores[:, column] *= -1
                result["flipped"][name] = True
        result["matched"] = matched
        result["unmatched"] = [e for e in emotions if e not in matched]
        pairs = {
            "pc1_valence": (0, valence),
            "pc1_arousal": (0, arousal),
            "pc2_valence": (1, valence),
            "pc2_arousal": (1, arousal),
        }
        for key, (column, target) in pairs.items():
            if column < scores.shape[1]:
                x = scores[rows, column]
                result["correlations"][key] = {
                    "pearson": pearson_fisher(x, target),
                    "spearman": spearman_boot(x, target, n_boot=n_boot),
                }
        result["components"] = component_alignment(decomposition.scores[rows], valence, arousal)
        result["valence"] = {emotions[i]: float(v) for i, v in zip(rows, valence, strict=True)}
        result["arousal"] = {emotions[i]: float(a) for i, a in zip(rows, arousal, strict=True)}
    result["scores"] = {e: scores[i, :2].tolist() for i, e in enumerate(emotions)}
    return result


def component_alignment(scores: np.ndarray, valence: np.ndarray, arousal: np.ndarray) -> dict:
    """|Pearson r| of each of the top PCs with valence and arousal, and the best PC for each.

    When the corpus is small, nuisance factors (topic, style) can outrank valence in variance;
    this says which component carries it instead of only reporting that PC1 does not.
    """
    table = []
    for column in range(scores.shape[1]):
        table.append(
            {
                "pc": column + 1,
                "valence": abs(pearson_fisher(scores[:, column], valence)["r"]),
                "arousal": abs(pearson_fisher(scores[:, column], arousal)["r"]),
            }
        )
    best = {
        key: max(table, key=lambda row: -1.0 if math.isnan(row[key]) else row[key])["pc"]
        for key in ("valence", "arousal")
    }
    return {"abs_pearson": table, "best_pc": best}


def valence_by_layer(
    emotions: list[str], vectors: np.ndarray, layers: list[int], norms: dict[str, Norm]
) -> list[dict]:
    """Per layer: Pearson r (Fisher CI) of sign-flipped PC1 with valence, PC2 with arousal.

    ``vectors`` is [E, L, H]. After the flip each r is non-negative by construction, so it is
    the strength of the alignment, not its direction.
    """
    matched = match_norms(emotions, norms)
    rows = [i for i, e in enumerate(emotions) if e in matched]
    valence = np.array([norms[matched[emotions[i]]].valence for i in rows])
    arousal = np.array([norms[matched[emotions[i]]].arousal for i in rows])
    out = []
    for column, layer in enumerate(layers):
        scores = pca(np.asarray(vectors)[:, column], k=2).scores
        entry: dict = {"layer": layer}
        for pc, (name, target) in enumerate((("pc1_valence", valence), ("pc2_arousal", arousal))):
            if pc < scores.shape[1]:
                x = scores[rows, pc]
                if _flip(x, target):
                    x = -x
                entry[name] = pearson_fisher(x, target)
        out.append(entry)
    return out
