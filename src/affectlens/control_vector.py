"""Exporting one emotion as a llama.cpp control vector (GGUF, ``--control-vector``).

llama.cpp reads a GGUF of architecture ``controlvector`` whose tensors ``direction.N`` are
added to the output of block N (0-based; block 0 is never steered). Each direction is
alpha x (that layer's mean residual norm) x the unit vector, the same scale ``steer`` uses.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from affectlens.errors import AffectlensError
from affectlens.vectors import EmotionVectors


def export_control_vector(
    vectors: EmotionVectors, emotion: str, alpha: float, layers: list[int], path: str | Path
) -> Path:
    """Write ``emotion`` at ``layers`` and strength ``alpha`` as a llama.cpp control vector."""
    import gguf

    row = vectors.emotion_index(emotion)
    usable = [layer for layer in layers if layer > 0]
    if not usable:
        raise AffectlensError("llama.cpp never steers block 0: choose layers from 1 on")
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), "controlvector")
    writer.add_string("controlvector.model_hint", vectors.provenance["model"]["architecture"])
    writer.add_uint32("controlvector.layer_count", len(usable))
    for layer in usable:
        column = vectors.layer_index(layer)
        scale = alpha * float(vectors.residual_norms[column])
        direction = (vectors.vectors[row, column] * scale).numpy().astype(np.float32)
        writer.add_tensor(f"direction.{layer}", direction)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(partial, path)
    return path
