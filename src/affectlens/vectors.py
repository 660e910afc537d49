"""``EmotionVectors``: the artifact holding a model's emotion directions, saved as safetensors.

One file holds the unit vectors [emotion, layer, hidden], the raw per-emotion means, each
layer's mean residual norm (steering strengths are relative to it), the neutral principal
components that were projected out, optional calibration, and provenance as JSON metadata.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from affectlens import __version__
from affectlens.errors import AffectlensError
from affectlens.models.loading import LoadedModel, fingerprint_mismatch

FORMAT = "affectlens.emotion_vectors/1"


@dataclass
class EmotionVectors:
    """Emotion directions for one model, at several layers.

    ``vectors[e, i]`` is the unit direction of ``emotions[e]`` at decoder layer ``layers[i]``;
    ``residual_norms[i]`` is that layer's mean residual-stream norm over the story corpus.
    """

    emotions: list[str]
    layers: list[int]
    vectors: torch.Tensor
    raw_means: torch.Tensor
    residual_norms: torch.Tensor
    neutral_pcs: dict[int, torch.Tensor]
    provenance: dict
    calibration: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = (len(self.emotions), len(self.layers))
        if tuple(self.vectors.shape[:2]) != expected:
            raise AffectlensError(
                f"vectors shape {tuple(self.vectors.shape)} != {expected} + hidden"
            )

    @property
    def hidden_size(self) -> int:
        """Width of the residual stream these vectors live in."""
        return int(self.vectors.shape[-1])

    def emotion_index(self, emotion: str) -> int:
        """Row of ``emotion``; an unknown name fails with close matches suggested."""
        try:
            return self.emotions.index(emotion)
        except ValueError:
            close = difflib.get_close_matches(emotion, self.emotions, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise AffectlensError(f"unknown emotion {emotion!r}{hint}") from None

    def layer_index(self, layer: int) -> int:
        """Column of decoder layer ``layer``; a layer the artifact lacks is refused."""
        if layer not in self.layers:
            raise AffectlensError(
                f"layer {layer} is not in the vectors file "
                f"(it has {self.layers[0]}-{self.layers[-1]})"
            )
        return self.layers.index(layer)

    def vector(self, emotion: str, layer: int) -> torch.Tensor:
        """The unit direction of one emotion at one layer."""
        return self.vectors[self.emotion_index(emotion), self.layer_index(layer)]

    def at_layer(self, layer: int) -> torch.Tensor:
        """All emotions' unit directions at one layer, [emotion, hidden]."""
        return self.vectors[:, self.layer_index(layer)]

    @property
    def default_layer(self) -> int:
        """The recommended layer: from validation if recorded, else about two-thirds deep."""
        recommended = self.provenance.get("recommended_layer")
        if recommended in self.layers:
            return int(recommended)
        num_layers = self.provenance.get("model", {}).get("num_layers", max(self.layers) + 1)
        target = round(num_layers * 2 / 3)
        return min(self.layers, key=lambda layer: abs(layer - target))

    def check_fits(self, model: LoadedModel) -> None:
        """Refuse a model these vectors were not extracted from."""
        expected = self.provenance.get("model", {}).get("fingerprint")
        if not expected:
            raise AffectlensError("the vectors file records no model fingerprint")
        reason = fingerprint_mismatch(expected, model.fingerprint())
        if reason:
            source = self.provenance["model"].get("id", "another model")
            raise AffectlensError(f"these vectors were made for {source} and do not fit: {reason}")

    def save(self, path: str | Path) -> Path:
        """Write the artifact atomically (temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {
            "vectors": self.vectors.float().contiguous(),
            "raw_means": self.raw_means.float().contiguous(),
            "residual_norms": self.residual_norms.float().contiguous(),
        }
        for layer, pcs in self.neutral_pcs.items():
            tensors[f"neutral_pcs.{layer}"] = pcs.float().contiguous()
        metadata = {
            "format": FORMAT,
            "emotions": json.dumps(self.emotions),
            "layers": json.dumps(self.layers),
            "provenance": json.dumps(self.provenance),
            "calibration": json.dumps(self.calibration),
        }
        partial = path.with_name(path.name + ".partial")
        save_file(tensors, partial, metadata=metadata)
        os.replace(partial, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> EmotionVectors:
        """Read an artifact; a missing, corrupt or foreign file fails with one clear line."""
        path = Path(path)
        if not path.is_file():
            raise AffectlensError(f"vectors file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise AffectlensError(f"{path} is not a readable safetensors file ({exc})") from exc
        if metadata.get("format") != FORMAT:
            raise AffectlensError(f"{path} is not an affectlens emotion-vectors file")
        try:
            return cls(
                emotions=json.loads(metadata["emotions"]),
                layers=json.loads(metadata["layers"]),
                vectors=tensors["vectors"],
                raw_means=tensors["raw_means"],
                residual_norms=tensors["residual_norms"],
                neutral_pcs={
                    int(name.split(".")[1]): value
                    for name, value in tensors.items()
                    if name.startswith("neutral_pcs.")
                },
                provenance=json.loads(metadata["provenance"]),
                calibration=json.loads(metadata.get("calibration", "{}")),
            )
        except (KeyError, ValueError) as exc:  # JSONDecodeError is a ValueError
            raise AffectlensError(f"{path} is a damaged affectlens vectors file ({exc})") from exc


def model_provenance(model: LoadedModel) -> dict:
    """The ``model`` block of provenance: id, fingerprint and layer count."""
    return {
        "id": model.name,
        "architecture": model.architecture,
        "num_layers": model.num_layers,
        "fingerprint": model.fingerprint(),
        "library_version": __version__,
    }
