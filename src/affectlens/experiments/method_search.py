"""Which extraction method makes emotion vectors transfer out of the story genre (issue 16).

Two halves. :func:`capture_poolings` reads every text once (one forward pass per batch) and
keeps, per text and layer, several poolings of the residual stream (:data:`POOLINGS`), cached
as safetensors chunks with JSON metadata so an interrupted run resumes where it stopped.
:func:`search` then builds vectors offline for each candidate method (pooling, share of
neutral variance projected out, whitening, layer) and scores them with the transfer scorer
of :mod:`affectlens.validation.transfer_score` and the held-out classifier of
:mod:`affectlens.validation.classification`, so no second scorer exists.

Whitening is done by mapping every activation through ``W = C^-1/2`` of a shrunk covariance
``(1 - a) C + a (tr C / d) I`` (of the neutral passages' means, or of the story means minus
their emotion's mean) and running the ordinary method in the whitened coordinates.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from affectlens.capture import capture_residuals, run_captured
from affectlens.errors import AffectlensError
from affectlens.extract import ExtractionSettings, make_batches
from affectlens.masks import outlier_mask, position_mask
from affectlens.models.chat import encode
from affectlens.models.loading import LoadedModel
from affectlens.progress import token_progress

POOLINGS = ("from20", "from50", "last_third", "all", "last")
"""``fromN``: tokens from index N on (``from20`` is the shipped method); ``last_third``: the
last third of the text's tokens; ``all``: every token; ``last``: the final token only. Every
pooling but ``last`` drops outlier tokens as the extraction does."""


def pooling_masks(attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """[batch, tokens] bool masks of the position-based poolings (before outlier removal)."""
    real = attention_mask.bool()
    index = real.long().cumsum(dim=1) - 1
    lengths = real.sum(dim=1, keepdim=True)
    third = lengths - torch.div(lengths + 2, 3, rounding_mode="floor")  # ceil(len/3) tokens
    return {
        "from20": position_mask(attention_mask, 20),
        "from50": position_mask(attention_mask, 50),
        "last_third": real & (index >= third),
        "all": real,
        "last": real & (index == lengths - 1),
    }


def pool_hidden(
    states: torch.Tensor, attention_mask: torch.Tensor, outlier_factor: float
) -> dict[str, torch.Tensor]:
    """Every pooling of one layer's states [batch, tokens, hidden]: ``{name: [batch, hidden]}``."""
    states = states.float()
    pooled = {}
    for name, mask in pooling_masks(attention_mask.to(states.device)).items():
        keep = mask if name == "last" else outlier_mask(states, mask, outlier_factor)
        weights = keep.float()
        totals = torch.einsum("bt,bth->bh", weights, states)
        pooled[name] = totals / weights.sum(dim=1, keepdim=True).clamp(min=1)
    return pooled


def _identity(
    model: LoadedModel, texts: Sequence[str], layers: list[int], settings: ExtractionSettings
) -> str:
    """SHA-256 naming one capture: model, layers, reading settings, poolings and the texts."""
    key = [model.name, model.hidden_size, layers, settings.max_tokens, settings.outlier_factor]
    return hashlib.sha256(json.dumps([key, list(POOLINGS), list(texts)]).encode()).hexdigest()


def capture_poolings(
    model: LoadedModel,
    texts: Sequence[str],
    layers: list[int],
    cache: Path,
    *,
    settings: ExtractionSettings | None = None,
    chunk: int = 128,
    description: str = "reading",
    show_progress: bool = True,
) -> dict[str, torch.Tensor]:
    """``{pooling: [text, layer, hidden]}`` for ``texts``, cached in ``cache`` (a folder).

    Texts are read in chunks of ``chunk``; each chunk is written as one safetensors file whose
    metadata names the run (model, layers, texts, settings), so a rerun reuses finished chunks
    and refuses a folder made for other inputs.
    """
    settings = settings or ExtractionSettings()
    cache.mkdir(parents=True, exist_ok=True)
    identity = _identity(model, texts, layers, settings)
    starts = list(range(0, len(texts), chunk))
    results: dict[int, dict[str, torch.Tensor]] = {}
    todo = []
    for start in starts:
        path = cache / f"chunk{start:06d}.safetensors"
        if path.exists():
            with safe_open(str(path), framework="pt") as handle:
                if (handle.metadata() or {}).get("identity") != identity:
                    raise AffectlensError(f"{path} was made for other inputs; remove {cache}")
                results[start] = {name: handle.get_tensor(name) for name in POOLINGS}
        else:
            todo.append(start)
    total = sum(
        min(len(encode(model.tokenizer, t)), settings.max_tokens)
        for start in todo
        for t in texts[start : start + chunk]
    )
    with (
        token_progress(disable=not show_progress) as progress,
        capture_residuals(model, layers) as captured,
    ):
        task = progress.add_task(description, total=total, tok_s=0.0)
        for start in todo:
            part = list(texts[start : start + chunk])
            out = {p: torch.zeros(len(part), len(layers), model.hidden_size) for p in POOLINGS}
            for batch in make_batches(model, part, settings):
                hidden = run_captured(
                    model,
                    captured,
                    batch.input_ids.to(model.device),
                    batch.attention_mask.to(model.device),
                )
                for column, layer in enumerate(layers):
                    pooled = pool_hidden(
                        hidden[layer], batch.attention_mask, settings.outlier_factor
                    )
                    for name, value in pooled.items():
                        out[name][batch.items, column] = value.cpu()
                progress.update(task, advance=batch.num_tokens)
            path = cache / f"chunk{start:06d}.safetensors"
            partial = path.with_name(path.name + ".partial")
            save_file(
                {name: value.contiguous() for name, value in out.items()},
                str(partial),
                metadata={"identity": identity, "layers": json.dumps(layers), "n": str(len(part))},
            )
            os.replace(partial, path)
            results[start] = out
    return {name: torch.cat([results[s][name] for s in starts]) for name in POOLINGS}


@dataclass(frozen=True)
class Method:
    """One candidate extraction method (the layer is scored separately)."""

    pooling: str = "from20"
    neutral_variance: float = 0.5
    whiten: str = "none"  # none | neutral | within
    shrinkage: float = 0.0

    @property
    def name(self) -> str:
        """A short label, e.g. ``from20/nv0.5/within@0.1``."""
        white = "none" if self.whiten == "none" else f"{self.whiten}@{self.shrinkage:g}"
        return f"{self.pooling}/nv{self.neutral_variance:g}/{white}"


Progress = Callable[[int, int], None]
