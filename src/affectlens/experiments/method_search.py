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
their emotion's mean; :mod:`affectlens.whitening`) and running the ordinary method in the
whitened coordinates. The winner, ``from20/nv0.5/within@0.5``, is now extraction's default
(:mod:`affectlens.extract`, in its residual-stream form :func:`raw_space_artifact`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from affectlens.capture import capture_residuals, run_captured
from affectlens.errors import AffectlensError
from affectlens.extract import ExtractionSettings, make_batches, method_label
from affectlens.masks import outlier_mask, position_mask
from affectlens.models.chat import encode
from affectlens.models.loading import LoadedModel
from affectlens.progress import token_progress
from affectlens.whitening import inverse_sqrt, shrunk_covariance, within_residuals

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


def load_captures(cache: Path) -> dict[str, torch.Tensor]:
    """A finished capture folder's ``{pooling: [text, layer, hidden]}`` (chunks in order)."""
    paths = sorted(cache.glob("chunk*.safetensors"))
    if not paths:
        raise AffectlensError(f"no capture in {cache}: run the capture first")
    parts = []
    for path in paths:
        with safe_open(str(path), framework="pt") as handle:
            parts.append({name: handle.get_tensor(name) for name in POOLINGS})
    return {name: torch.cat([part[name] for part in parts]) for name in POOLINGS}


@dataclass(frozen=True)
class Method:
    """One candidate extraction method (the layer is scored separately)."""

    pooling: str = "from20"
    neutral_variance: float = 0.5
    whiten: str = "none"  # none | neutral | within
    shrinkage: float = 0.0

    @property
    def name(self) -> str:
        """A short label, e.g. ``from20/nv0.5/within@0.1`` (as extraction's provenance)."""
        return method_label(self.pooling, self.neutral_variance, self.whiten, self.shrinkage)


Progress = Callable[[int, int], None]

NEUTRAL_SHARES = (0.0, 0.5, 0.8)
WHITENINGS = (
    ("none", 0.0),
    *((kind, shrink) for kind in ("neutral", "within") for shrink in (0.01, 0.1, 0.5)),
)
"""Shrinkage runs to the mean variance, which a few massive residual dimensions dominate, so
even 0.1 floors most directions far above their own variance: the grid starts at 0.01."""
SHIPPED = Method()
"""The method shipped when the search ran (extraction's ``whiten="none"`` now): mean from token
20, outliers dropped, half the neutral variance out."""

SELECTION_RULE = (
    "Winner: the (method, layer) with the highest mean over the four forms of 6-way basic "
    "top-1 on the transfer dev split, among those whose 24-way held-out top-1 on the corpus "
    "test stories is at least the shipped method's best-layer value minus 0.05; ties go to "
    "the higher pooled 24-way dev top-1. The shipped method is compared at its own dev-best "
    "layer under the same score. Only these two are scored on the test split, once."
)


def candidate_methods() -> list[Method]:
    """Every pooling x neutral share x whitening the search scores."""
    return [
        Method(pooling, share, white, shrink)
        for pooling in POOLINGS
        for share in NEUTRAL_SHARES
        for white, shrink in WHITENINGS
    ]


def build_vectors(
    train: torch.Tensor,
    groups: torch.Tensor,
    emotions: list[str],
    neutral: torch.Tensor,
    share: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vectors [emotion, hidden] and raw means [emotion, hidden] at one layer.

    As :func:`affectlens.extract.extract_vectors`: per-emotion means of ``train`` [n, hidden],
    minus their mean, with the neutral PCs explaining ``share`` of ``neutral``'s variance
    projected out (none when ``share`` is 0), unit-normalised.
    """
    from affectlens.extract import neutral_components, project_out

    raw = torch.stack([train[groups == g].double().mean(dim=0) for g in range(len(emotions))])
    centred = (raw - raw.mean(dim=0)).float()
    if share > 0:
        centred = project_out(centred, neutral_components(neutral, share))
    return centred / centred.norm(dim=-1, keepdim=True).clamp(min=1e-12), raw.float()


Captures = dict[str, dict[str, torch.Tensor]]
"""``{group: {pooling: [text, layer, hidden]}}`` as :func:`capture_poolings` returns them."""


@dataclass
class SearchData:
    """Everything the offline search reads: captures, their layers and the texts' labels.

    Groups: ``train`` and ``stories_test`` (corpus stories of ``emotions``), ``neutral``, and
    one group per transfer split scored (``dev``; ``transfer_test`` only to confirm).
    """

    captures: Captures
    layers: list[int]
    emotions: list[str]
    train_labels: torch.Tensor
    test_labels: list[int]
    transfer: dict[str, list]  # group -> TransferText in capture order
    _whiteners: dict = field(default_factory=dict, repr=False)

    def whitener(self, method: Method, column: int) -> torch.Tensor | None:
        """``C^-1/2`` [hidden, hidden] for the method at one layer column (None: no whitening)."""
        if method.whiten == "none":
            return None
        key = (method.pooling, column, method.whiten, method.shrinkage)
        cache = self._whiteners
        if key not in cache:
            if method.whiten == "neutral":
                rows = self.captures["neutral"][method.pooling][:, column]
            elif method.whiten == "within":
                train = self.captures["train"][method.pooling][:, column]
                rows = within_residuals(train, self.train_labels)
            else:
                raise AffectlensError(f"unknown whitening {method.whiten!r}")
            cache[key] = inverse_sqrt(shrunk_covariance(rows, method.shrinkage)).float()
        return cache[key]


def method_vectors(data: SearchData, method: Method, column: int):
    """The method's one-layer artifact and the map every activation goes through first."""
    from affectlens.vectors import EmotionVectors

    white = data.whitener(method, column)

    def view(group: str) -> torch.Tensor:
        rows = data.captures[group][method.pooling][:, column].float()
        return rows if white is None else rows @ white

    units, raw = build_vectors(
        view("train"), data.train_labels, data.emotions, view("neutral"), method.neutral_variance
    )
    layer = data.layers[column]
    artifact = EmotionVectors(
        emotions=list(data.emotions),
        layers=[layer],
        vectors=units[:, None],
        raw_means=raw[:, None],
        residual_norms=torch.ones(1),
        neutral_pcs={},
        provenance={"method": method.name},
    )
    return artifact, view


def score_method(
    data: SearchData, method: Method, column: int, group: str = "dev", *, raw_space: bool = False
) -> dict:
    """Transfer scores on ``group`` (both tasks, per form) and 24-way held-out story top-1.

    ``raw_space`` scores :func:`raw_space_artifact` instead of the whitened readout.
    """
    from affectlens.validation.classification import classify, vector_centre
    from affectlens.validation.transfer_score import score_transfer

    build = raw_space_artifact if raw_space else method_vectors
    artifact, view = build(data, method, column)
    transfer = score_transfer(view(group)[:, None], data.transfer[group], artifact)
    held = classify(
        view("stories_test")[:, None],
        data.test_labels,
        artifact.vectors,
        vector_centre(artifact),
        artifact.layers,
    )
    return {"transfer": transfer, "in_domain": held.layers[0].top1}


def summary_row(method: Method, layer: int, scores: dict) -> dict:
    """A flat row: method, layer, per-form and pooled accuracies with CIs, in-domain top-1."""
    row: dict = {"method": method.name, "layer": layer, **asdict(method)}
    for task in ("basic6", "set24"):
        section = scores["transfer"][task]
        entries = {**section["per_form"], "pooled": section["pooled"]}
        for form, entry in entries.items():
            rate = entry["per_layer"][0]["top1"]
            row[f"{task}/{form}"] = {k: rate[k] for k in ("hits", "n", "value", "low", "high")}
        forms = [entry["per_layer"][0]["top1"]["value"] for entry in section["per_form"].values()]
        row[f"{task}/form_mean"] = sum(forms) / len(forms)
    held = scores["in_domain"]
    row["in_domain24"] = {"hits": held.hits, "n": held.n, "value": held.value,
                          "low": held.low, "high": held.high}  # fmt: skip
    return row


def search(
    data: SearchData,
    methods: Sequence[Method] | None = None,
    *,
    progress: Progress | None = None,
) -> list[dict]:
    """Score every method at every captured layer on the dev split; one row per pair.

    ``progress(done, total)`` is called after each (method, layer).
    """
    methods = list(methods) if methods is not None else candidate_methods()
    total, rows = len(methods) * len(data.layers), []
    for method in methods:
        for column, layer in enumerate(data.layers):
            rows.append(summary_row(method, layer, score_method(data, method, column, "dev")))
            if progress is not None:
                progress(len(rows), total)
    return rows


def choose(rows: list[dict], margin: float = 0.05) -> tuple[dict, dict]:
    """(winner, shipped at its dev-best layer) by :data:`SELECTION_RULE`."""

    def key(row: dict) -> tuple[float, float]:
        return (row["basic6/form_mean"], row["set24/pooled"]["value"])

    shipped_rows = [r for r in rows if r["method"] == SHIPPED.name]
    if not shipped_rows:
        raise AffectlensError("the shipped method was not scored")
    floor = max(r["in_domain24"]["value"] for r in shipped_rows) - margin
    eligible = [r for r in rows if r["in_domain24"]["value"] >= floor - 1e-12]
    return max(eligible, key=key), max(shipped_rows, key=key)


def basic6_hits(data: SearchData, method: Method, column: int, group: str) -> list[bool]:
    """Per-text correctness of the 6-way basic task on ``group``, in text order.

    The same texts, candidates and readout as ``score_task``'s basic6 task, kept per text so
    two methods can be compared pairwise on the same texts.
    """
    from affectlens.validation.classification import classify, vector_centre
    from affectlens.validation.transfer import BASIC_EMOTIONS

    artifact, view = method_vectors(data, method, column)
    texts = data.transfer[group]
    keep = [i for i, t in enumerate(texts) if t.emotion in BASIC_EMOTIONS]
    rows = [artifact.emotion_index(e) for e in BASIC_EMOTIONS]
    labels = [BASIC_EMOTIONS.index(texts[i].emotion) for i in keep]
    result = classify(
        view(group)[keep][:, None],
        labels,
        artifact.vectors[rows],
        vector_centre(artifact),
        artifact.layers,
    )
    return (result.predictions[:, 0] == result.labels).tolist()


def paired_test(first: list[bool], second: list[bool]) -> dict:
    """Exact McNemar test of two methods' hits on the same texts: discordant counts and p."""
    from scipy.stats import binomtest

    if len(first) != len(second):
        raise AffectlensError("paired hits need the same texts")
    only_first = sum(a and not b for a, b in zip(first, second, strict=True))
    only_second = sum(b and not a for a, b in zip(first, second, strict=True))
    discordant = only_first + only_second
    p = binomtest(only_first, discordant).pvalue if discordant else 1.0
    return {
        "n": len(first),
        "only_first": only_first,
        "only_second": only_second,
        "difference": (only_first - only_second) / len(first) if first else float("nan"),
        "p_exact_mcnemar": float(p),
    }


def raw_space_artifact(data: SearchData, method: Method, column: int):
    """The method's vectors mapped back to the residual stream, as a plain artifact would be.

    A whitened method reads ``cos(W(a - c), v)``; its readout direction in the residual
    stream is ``W v`` (``W`` symmetric). Unit-normalising ``W v`` per emotion gives vectors that
    the ordinary readout, steering and monitoring can use unchanged; this is not the same
    classifier (each emotion's score is divided by ``|W v|``), so it is scored on its own.
    """
    from affectlens.vectors import EmotionVectors

    whitened, _ = method_vectors(data, method, column)
    white = data.whitener(method, column)
    units = whitened.vectors[:, 0]
    if white is not None:
        units = units @ white
        units = units / units.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    train = data.captures["train"][method.pooling][:, column].float()
    raw = torch.stack(
        [train[data.train_labels == g].mean(dim=0) for g in range(len(data.emotions))]
    )
    artifact = EmotionVectors(
        emotions=list(data.emotions),
        layers=[data.layers[column]],
        vectors=units[:, None],
        raw_means=raw[:, None],
        residual_norms=torch.ones(1),
        neutral_pcs={},
        provenance={"method": f"{method.name} (raw space)"},
    )
    return artifact, lambda group: data.captures[group][method.pooling][:, column].float()
