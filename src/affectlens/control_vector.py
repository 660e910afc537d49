"""Exporting one emotion as a llama.cpp control vector (GGUF, ``--control-vector``).

llama.cpp reads a GGUF of architecture ``controlvector`` whose 1-D float32 tensors
``direction.N`` are added to the output of block N, where N is the 0-based block index: the
same numbering as affectlens layers, whose layer N is the output of decoder layer N. llama.cpp
refuses ``direction.0`` (block 0's output is never steered), so usable layers start at 1.
Each direction is alpha x (that layer's mean residual norm) x the unit vector, exactly what
``steer`` adds at that layer. The ``controlvector.model_hint`` and ``controlvector.layer_count``
keys are written as llama.cpp's and repeng's exporters do; the loader does not read them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from affectlens.errors import AffectlensError
from affectlens.steer import MAX_ALPHA
from affectlens.vectors import EmotionVectors


def export_control_vector(
    vectors: EmotionVectors, emotion: str, alpha: float, layers: list[int], path: str | Path
) -> Path:
    """Write ``emotion`` at ``layers`` and strength ``alpha`` as a llama.cpp control vector.

    Layer 0 is skipped (llama.cpp cannot steer it); every other layer must be in the artifact.
    The file is written under a temporary name and renamed, so a failure leaves no file behind.
    """
    import gguf

    row = vectors.emotion_index(emotion)
    if not math.isfinite(alpha) or abs(alpha) > MAX_ALPHA:
        raise AffectlensError(
            f"alpha {alpha} is outside the sane range [-{MAX_ALPHA}, {MAX_ALPHA}] "
            "(it is a fraction of the residual norm)"
        )
    usable = sorted({layer for layer in layers if layer > 0})
    if not usable:
        raise AffectlensError("llama.cpp never steers block 0: choose layers from 1 on")
    columns = [vectors.layer_index(layer) for layer in usable]
    model = vectors.provenance.get("model", {})
    hint = model.get("architecture") or model.get("fingerprint", {}).get("architecture") or ""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        writer = gguf.GGUFWriter(str(partial), "controlvector")
        writer.add_string("controlvector.model_hint", hint)
        writer.add_uint32("controlvector.layer_count", len(usable))
        for layer, column in zip(usable, columns, strict=True):
            scale = alpha * float(vectors.residual_norms[column])
            direction = (vectors.vectors[row, column].float() * scale).numpy()
            writer.add_tensor(f"direction.{layer}", direction.astype(np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
