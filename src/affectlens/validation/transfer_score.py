"""Transfer accuracy: do the vectors recognise emotions in texts that are not stories?

Each transfer text is read exactly as held-out stories are (:func:`read_activations` with
the artifact's recorded extraction settings: the masked mean over the text's tokens from
``start_token`` on, outliers dropped, plain text without a chat template, which is also how
``monitor`` reads a plain string) and classified by :func:`classify` (cosine of the centred
activation with each unit vector). Two tasks:

- ``basic6``: the six basic emotions' texts, 6-way among the six vectors;
- ``set24``: all texts, among the 24 transfer emotions the artifact has.

Each task gets top-1 accuracy per layer with a Wilson 95% interval, per form and pooled, the
chance level, and a confusion matrix per layer (rows: true emotion, columns: predicted).
Only the ``dev`` split is scored unless the caller asks for ``test`` explicitly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict

import numpy as np
import torch

from affectlens.extract import ExtractionSettings
from affectlens.models.chat import encode
from affectlens.models.loading import LoadedModel
from affectlens.validation.classification import (
    Rate,
    classify,
    read_activations,
    settings_from,
    vector_centre,
)
from affectlens.validation.transfer import (
    BASIC_EMOTIONS,
    FORMS,
    TRANSFER_EMOTIONS,
    TransferText,
    select_split,
)
from affectlens.vectors import EmotionVectors

TASKS = {"basic6": BASIC_EMOTIONS, "set24": TRANSFER_EMOTIONS}


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, size: int) -> list[list[int]]:
    """Counts [true][predicted] over rows ``0..size-1``."""
    matrix = np.zeros((size, size), dtype=int)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix.tolist()


def score_task(
    activations: torch.Tensor,
    texts: list[TransferText],
    vectors: EmotionVectors,
    candidates: tuple[str, ...],
) -> dict:
    """One task: accuracy per form and pooled at every layer, chance and confusion matrices.

    ``activations`` [text, layer, hidden] are in the order of ``texts`` and at
    ``vectors.layers``. Texts of emotions outside ``candidates`` or the artifact are left out
    (counted in ``ignored``); fewer than two candidates in the artifact skips the task.
    """
    emotions = [e for e in candidates if e in vectors.emotions]
    missing = [e for e in candidates if e not in vectors.emotions]
    if len(emotions) < 2:
        return {
            "skipped": f"the vectors have {len(emotions)} of these emotions",
            "missing": missing,
        }
    rows = [vectors.emotion_index(e) for e in emotions]
    keep = [i for i, t in enumerate(texts) if t.emotion in emotions]
    base = {"emotions": emotions, "missing": missing, "chance": 1 / len(emotions)}
    if not keep:
        return base | {"skipped": "no text of these emotions"}
    centre = vector_centre(vectors)
    units = vectors.vectors[rows]
    labels = np.array([emotions.index(texts[i].emotion) for i in keep])
    forms = [texts[i].form for i in keep]
    pooled = classify(activations[keep], labels, units, centre, vectors.layers)

    def rates(mask: np.ndarray) -> list[dict]:
        hits = pooled.predictions[mask] == labels[mask][:, None]
        n = int(mask.sum())
        return [
            {"layer": layer, "top1": asdict(Rate.of(int(hits[:, c].sum()), n))}
            for c, layer in enumerate(vectors.layers)
        ]

    everything = np.ones(len(keep), dtype=bool)
    per_form = {
        form: {"n": int(mask.sum()), "per_layer": rates(mask)}
        for form in FORMS
        if (mask := np.array([f == form for f in forms])).any()
    }
    per_emotion_n = Counter(texts[i].emotion for i in keep)
    return base | {
        "n": len(keep),
        "ignored": len(texts) - len(keep),
        "n_per_emotion": {e: per_emotion_n[e] for e in emotions},
        "pooled": {"n": len(keep), "per_layer": rates(everything)},
        "per_form": per_form,
        "confusion": {
            str(layer): confusion_matrix(labels, pooled.predictions[:, c], len(emotions))
            for c, layer in enumerate(vectors.layers)
        },
    }


def score_transfer(
    activations: torch.Tensor, texts: list[TransferText], vectors: EmotionVectors
) -> dict:
    """Both tasks on already-read activations (in the order of ``texts``)."""
    return {
        name: score_task(activations, texts, vectors, emotions) for name, emotions in TASKS.items()
    }


def transfer_section(
    model: LoadedModel,
    vectors: EmotionVectors,
    texts: list[TransferText],
    *,
    split: str = "dev",
    settings: ExtractionSettings | None = None,
    source: str = "shipped",
    show_progress: bool = False,
) -> dict:
    """Read and score the ``split`` half of ``texts``; the report's transfer section."""
    chosen = select_split(texts, split)
    settings = settings or settings_from(vectors)
    section: dict = {
        "source": source,
        "split": split,
        "layers": vectors.layers,
        "readout": {
            "pooling": "masked mean over tokens from start_token on, outlier tokens dropped",
            "start_token": settings.start_token,
            "chat_template": False,
        },
    }
    if not chosen:
        return section | {"skipped": f"no {split} text in the transfer set ({source})"}
    activations = read_activations(
        model,
        chosen,
        vectors.layers,
        settings,
        show_progress=show_progress,
        description=f"transfer ({split})",
    )
    lengths = [len(encode(model.tokenizer, t.text)) for t in chosen]
    section["n_texts"] = len(chosen)
    section["readout"]["texts_shorter_than_start"] = sum(n <= settings.start_token for n in lengths)
    section["readout"]["median_tokens"] = float(np.median(lengths))
    return section | score_transfer(activations, chosen, vectors)
