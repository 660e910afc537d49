"""Extracting emotion vectors from a story corpus.

Per layer: the mean residual activation over each story's tokens (from ``start_token`` on,
outlier tokens dropped), averaged per emotion, minus the mean over all emotions, with the
top principal components of neutral text (enough for ``neutral_variance`` of its variance)
projected out, then unit-normalised: the paper's method, ``whiten="none"``.

The default, ``whiten="within"`` (chosen by the method search of
:mod:`affectlens.experiments.method_search` for transfer out of the story genre), runs those
steps in whitened coordinates: story and neutral means are mapped through ``W = C^-1/2`` of
the within-emotion covariance ``C`` of the story means, shrunk by ``whiten_shrinkage``
towards its mean variance (:mod:`affectlens.whitening`), giving ``v_e``; the artifact holds
the residual-stream directions ``unit(W v_e)``, which the ordinary cosine readout, steering
and monitoring use unchanged.

Story batches are bucketed by length, reductions (including the within-emotion scatter)
stream, and the reducer state is checkpointed so an interrupted run resumes to the identical
result.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from affectlens.capture import capture_residuals, run_captured
from affectlens.corpus.stories import FORMS, NeutralPassage, Story
from affectlens.errors import AffectlensError
from affectlens.masks import outlier_mask, position_mask
from affectlens.models.chat import encode, format_chat
from affectlens.models.loading import LoadedModel
from affectlens.progress import token_progress
from affectlens.reducers import GroupMeanReducer, ScalarMeanReducer, ScatterReducer
from affectlens.vectors import EmotionVectors, model_provenance
from affectlens.whitening import check_whitening, inverse_sqrt, shrink


@dataclass(frozen=True)
class ExtractionSettings:
    """Knobs of the extraction; all are recorded in the artifact's provenance.

    ``whiten`` is ``"within"`` (whiten by the within-emotion covariance of the story means,
    shrunk by ``whiten_shrinkage`` in [0, 1]) or ``"none"`` (the method before whitening).
    ``forms`` restricts training to texts of those :data:`~affectlens.corpus.stories.FORMS`
    (``None``: every form in the corpus; ``("story",)``: the corpus before mixed forms).
    """

    layers: tuple[int, ...] | None = None
    start_token: int = 20
    outlier_factor: float = 5.0
    neutral_variance: float = 0.5
    batch_size: int = 8
    max_stories_per_emotion: int | None = None
    min_stories: int = 2
    max_tokens: int = 512
    checkpoint_every: int = 20
    whiten: str = "within"
    whiten_shrinkage: float = 0.5
    forms: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_whitening(self.whiten, self.whiten_shrinkage)
        if self.forms is not None:
            unknown = [f for f in self.forms if f not in FORMS]
            if unknown or not self.forms:
                raise AffectlensError(
                    f"forms must be some of {', '.join(FORMS)}, not {', '.join(unknown) or 'none'}"
                )

    @property
    def method(self) -> str:
        """The method's short label, e.g. ``from20/nv0.5/within@0.5`` (see :func:`method_label`)."""
        return method_label(
            f"from{self.start_token}", self.neutral_variance, self.whiten, self.whiten_shrinkage
        )


def method_label(pooling: str, neutral_variance: float, whiten: str, shrinkage: float) -> str:
    """``pooling/nv<share>/<whitening>``, e.g. ``from20/nv0.5/within@0.5`` or
    ``from20/nv0.5/none``: how provenance and the method search name a method."""
    white = "none" if whiten == "none" else f"{whiten}@{shrinkage:g}"
    return f"{pooling}/nv{neutral_variance:g}/{white}"


@dataclass(frozen=True)
class TextBatch:
    """A padded, length-bucketed batch: which items it holds and their token ids."""

    items: list[int]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    @property
    def num_tokens(self) -> int:
        """Real (non-padding) tokens in the batch."""
        return int(self.attention_mask.sum())


def resolve_layers(model: LoadedModel, layers: tuple[int, ...] | list[int] | None) -> list[int]:
    """The layers to use: all by default; out-of-range layers are refused."""
    if layers is None:
        return list(range(model.num_layers))
    if not layers:
        raise AffectlensError("no layers chosen")
    bad = [layer for layer in layers if not 0 <= layer < model.num_layers]
    if bad:
        raise AffectlensError(
            f"layer(s) {bad} out of range: the model has layers 0-{model.num_layers - 1}"
        )
    return sorted(set(layers))


def make_batches(
    model: LoadedModel, texts: list[str], settings: ExtractionSettings
) -> list[TextBatch]:
    """Tokenize, sort by length and pad into batches (right padding)."""
    ids = [encode(model.tokenizer, text)[: settings.max_tokens] for text in texts]
    order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
    pad = model.tokenizer.pad_token_id
    batches = []
    for start in range(0, len(order), settings.batch_size):
        items = order[start : start + settings.batch_size]
        width = max(len(ids[i]) for i in items)
        input_ids = torch.full((len(items), width), pad, dtype=torch.long)
        attention = torch.zeros((len(items), width), dtype=torch.long)
        for row, item in enumerate(items):
            input_ids[row, : len(ids[item])] = torch.tensor(ids[item])
            attention[row, : len(ids[item])] = 1
        batches.append(TextBatch(items, input_ids, attention))
    return batches


def batch_means(
    model: LoadedModel,
    captured: dict,
    batch: TextBatch,
    layers: list[int],
    settings: ExtractionSettings,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-text masked mean activations [n, layer, hidden], plus per-layer norm sums and counts."""
    device = model.device
    hidden = run_captured(
        model, captured, batch.input_ids.to(device), batch.attention_mask.to(device)
    )
    valid = position_mask(batch.attention_mask, settings.start_token).to(device)
    means, norm_sums, counts = [], [], []
    for layer in layers:
        states = hidden[layer].float()
        keep = outlier_mask(states, valid, settings.outlier_factor)
        weights = keep.float()
        totals = torch.einsum("bt,bth->bh", weights, states)
        means.append(totals / weights.sum(dim=1, keepdim=True).clamp(min=1))
        norm_sums.append((states.norm(dim=-1) * weights).sum())
        counts.append(weights.sum())
    return torch.stack(means, dim=1).cpu(), torch.stack(norm_sums).cpu(), torch.stack(counts).cpu()


def text_means(
    model: LoadedModel,
    texts: list[str],
    layers: list[int],
    settings: ExtractionSettings,
    *,
    description: str = "reading",
    show_progress: bool = True,
) -> torch.Tensor:
    """Masked mean activation of every text, [text, layer, hidden] (in input order)."""
    batches = make_batches(model, texts, settings)
    result = torch.zeros(len(texts), len(layers), model.hidden_size)
    for batch, means, _, _ in _iterate(
        model, batches, layers, settings, description, show_progress
    ):
        result[batch.items] = means
    return result


def _iterate(
    model: LoadedModel,
    batches: list[TextBatch],
    layers: list[int],
    settings: ExtractionSettings,
    description: str,
    show_progress: bool,
    skip: int = 0,
) -> Iterator[tuple[TextBatch, torch.Tensor, torch.Tensor, torch.Tensor]]:
    total_tokens = sum(b.num_tokens for b in batches)
    with (
        token_progress(disable=not show_progress) as progress,
        capture_residuals(model, layers) as captured,
    ):
        task = progress.add_task(description, total=total_tokens, tok_s=0.0)
        progress.update(task, completed=sum(b.num_tokens for b in batches[:skip]))
        started, done = time.perf_counter(), 0
        for batch in batches[skip:]:
            means, norm_sums, counts = batch_means(model, captured, batch, layers, settings)
            done += batch.num_tokens
            rate = done / max(time.perf_counter() - started, 1e-9)
            progress.update(task, advance=batch.num_tokens, tok_s=rate)
            yield batch, means, norm_sums, counts


def neutral_texts(model: LoadedModel, passages: list[NeutralPassage]) -> list[str]:
    """Neutral passages as model input; chat passages go through the chat template."""
    return [
        p.text
        if p.messages is None
        else format_chat(model.tokenizer, list(p.messages), add_generation_prompt=False)
        for p in passages
    ]


def neutral_components(neutral: torch.Tensor, share: float) -> torch.Tensor:
    """Top principal directions [k, hidden] explaining at least ``share`` of the variance."""
    centred = neutral.double() - neutral.double().mean(dim=0)
    _, singular, right = torch.linalg.svd(centred, full_matrices=False)
    explained = singular**2 / (singular**2).sum()
    count = int((explained.cumsum(0) < share).sum()) + 1
    return right[:count].float()


def project_out(vectors: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """Remove the span of orthonormal ``components`` [k, hidden] from ``vectors`` [..., hidden]."""
    return vectors - (vectors @ components.T) @ components


def corpus_hash(stories: list[Story], neutral: list[NeutralPassage]) -> str:
    """SHA-256 over the stories and neutral passages actually used."""
    digest = hashlib.sha256()
    for story in stories:
        digest.update(json.dumps([story.emotion, story.split, story.text]).encode())
    for passage in neutral:
        digest.update(json.dumps([passage.text, passage.messages]).encode())
    return digest.hexdigest()


def select_training_stories(
    stories: list[Story], settings: ExtractionSettings
) -> dict[str, list[Story]]:
    """Train texts per emotion (of ``settings.forms``; capped), refusing an empty corpus or a
    thin emotion."""
    by_emotion: dict[str, list[Story]] = {}
    for story in stories:
        if story.split == "train" and (settings.forms is None or story.form in settings.forms):
            by_emotion.setdefault(story.emotion, []).append(story)
    if not by_emotion:
        raise AffectlensError("the corpus has no training stories")
    thin = [e for e, group in by_emotion.items() if len(group) < settings.min_stories]
    if thin:
        raise AffectlensError(
            f"too few training stories (need {settings.min_stories}) for: {', '.join(thin[:5])}"
        )
    cap = settings.max_stories_per_emotion
    return {e: group[:cap] if cap else group for e, group in by_emotion.items()}


def calibration_sample(stories: list[Story], per_emotion: int = 2) -> list[Story]:
    """A few train stories per emotion: the story side of readout calibration."""
    taken: dict[str, int] = {}
    sample = []
    for story in stories:
        if story.split == "train" and taken.get(story.emotion, 0) < per_emotion:
            taken[story.emotion] = taken.get(story.emotion, 0) + 1
            sample.append(story)
    return sample


def _save_checkpoint(path: Path, identity: dict, done: int, reducers: dict) -> None:
    """The story pass's reducer state as safetensors, with its identity as JSON metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"{name}.{key}": value.contiguous()
        for name, reducer in reducers.items()
        for key, value in reducer.state_dict().items()
    }
    metadata = {"identity": json.dumps(identity, sort_keys=True), "batches_done": str(done)}
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata=metadata)
    os.replace(partial, path)


def checkpoint_identity(fingerprint: str, settings: ExtractionSettings, layers: list[int]) -> dict:
    """What a story-pass checkpoint must match to be resumed.

    Without whitening the settings are written without the two whitening fields, exactly as
    checkpoints were before whitening existed, so such a checkpoint resumes under
    ``whiten="none"`` (the method it was computing).
    """
    fields = asdict(settings)
    del fields["forms"]  # which texts were read is in the corpus fingerprint
    if settings.whiten == "none":
        del fields["whiten"], fields["whiten_shrinkage"]
    return {"corpus": fingerprint, "settings": fields, "layers": layers}


def _load_checkpoint(path: Path, identity: dict, reducers: dict) -> int:
    """Restore ``reducers`` from a checkpoint of the same run; the batches it had done."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            names = list(handle.keys())
            tensors = {key: handle.get_tensor(key) for key in names}
    except Exception as error:  # a file that is not a safetensors checkpoint
        raise AffectlensError(
            f"{path} is not an extraction checkpoint ({error}); remove it"
        ) from None
    saved = metadata.get("identity")
    if saved != json.dumps(identity, sort_keys=True):
        if saved is not None and "whiten" not in json.loads(saved).get("settings", {}):
            raise AffectlensError(
                f"{path} was written before whitening existed: resume it with --whiten none "
                "(the method it was computing), or remove it"
            )
        raise AffectlensError(f"{path} belongs to another corpus or settings; remove it")
    for name, reducer in reducers.items():
        prefix = f"{name}."
        reducer.load_state_dict(
            {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}
        )
    return int(metadata["batches_done"])


def extraction_fingerprint(
    stories: list[Story], neutral: list[NeutralPassage], settings: ExtractionSettings
) -> str:
    """The corpus hash an extraction of these inputs records (to match a saved artifact)."""
    grouped = select_training_stories(stories, settings)
    return corpus_hash([story for group in grouped.values() for story in group], neutral)


def extract_vectors(
    model: LoadedModel,
    stories: list[Story],
    neutral: list[NeutralPassage],
    settings: ExtractionSettings | None = None,
    *,
    checkpoint: Path | None = None,
    resume: bool = False,
    show_progress: bool = True,
) -> EmotionVectors:
    """Emotion vectors for ``model`` from the train split of ``stories``."""
    settings = settings or ExtractionSettings()
    layers = resolve_layers(model, settings.layers)
    if not neutral:
        raise AffectlensError("the neutral corpus is empty")
    grouped = select_training_stories(stories, settings)
    emotions = list(grouped)
    used = [story for group in grouped.values() for story in group]
    fingerprint = corpus_hash(used, neutral)
    group_of = torch.tensor([emotions.index(s.emotion) for s in used])
    batches = make_batches(model, [s.text for s in used], settings)

    story_means = GroupMeanReducer(emotions, len(layers), model.hidden_size)
    norms = ScalarMeanReducer(len(layers))
    reducers: dict = {"means": story_means, "norms": norms}
    scatter = None
    if settings.whiten == "within":
        scatter = reducers["scatter"] = ScatterReducer(len(layers), model.hidden_size)
    identity = checkpoint_identity(fingerprint, settings, layers)
    done = 0
    if checkpoint is not None and resume and checkpoint.exists():
        done = _load_checkpoint(checkpoint, identity, reducers)

    stream = _iterate(model, batches, layers, settings, "stories", show_progress, skip=done)
    for batch, means, norm_sums, counts in stream:
        story_means.add(group_of[batch.items], means)
        norms.add(norm_sums, counts)
        if scatter is not None:
            scatter.add(means)
        done += 1
        if checkpoint is not None and (
            done % settings.checkpoint_every == 0 or done == len(batches)
        ):
            _save_checkpoint(checkpoint, identity, done, reducers)

    neutral_means = text_means(
        model,
        neutral_texts(model, neutral),
        layers,
        settings,
        description="neutral",
        show_progress=show_progress,
    )
    raw = story_means.means()
    centred = raw - raw.mean(dim=0, keepdim=True)
    vectors = torch.empty_like(centred)
    pcs: dict[int, torch.Tensor] = {}
    for column, layer in enumerate(layers):
        if scatter is None:
            pcs[layer] = neutral_components(neutral_means[:, column], settings.neutral_variance)
            cleaned = project_out(centred[:, column], pcs[layer])
            vectors[:, column] = cleaned / cleaned.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        else:
            try:
                white = within_whitener(scatter, story_means, column, settings.whiten_shrinkage)
            except AffectlensError:
                raise AffectlensError(
                    f"the within-emotion covariance at layer {layer} is singular "
                    f"({len(used)} stories, hidden size {model.hidden_size}): use a whitening "
                    "shrinkage above 0"
                ) from None
            vectors[:, column], pcs[layer] = whitened_vectors(
                story_means.sums[:, column] / story_means.counts[:, None],
                neutral_means[:, column],
                white,
                settings.neutral_variance,
            )
    return EmotionVectors(
        emotions=emotions,
        layers=layers,
        vectors=vectors,
        raw_means=raw,
        residual_norms=norms.means(),
        neutral_pcs=pcs,
        provenance={
            "model": model_provenance(model),
            "corpus_sha256": fingerprint,
            "stories_per_emotion": {e: len(g) for e, g in grouped.items()},
            "texts_per_form": dict(Counter(s.form for s in used)),
            "neutral_passages": len(neutral),
            "settings": asdict(settings),
            "method": settings.method,
        },
    )


def within_whitener(
    scatter: ScatterReducer, groups: GroupMeanReducer, column: int, shrinkage: float
) -> torch.Tensor:
    """``W = C^-1/2`` (float64) of the shrunk within-emotion covariance of the story means at
    one layer column (the scatter over ``n - 1``, as
    :func:`affectlens.whitening.shrunk_covariance` of the within residuals gives it); a
    singular covariance is refused (:func:`affectlens.whitening.inverse_sqrt`)."""
    cov = scatter.within(column, groups) / max(int(scatter.count) - 1, 1)
    return inverse_sqrt(shrink(cov, shrinkage))


def whitened_vectors(
    means: torch.Tensor, neutral: torch.Tensor, white: torch.Tensor, share: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit residual-stream directions [emotion, hidden] of the whitened method at one layer,
    and the orthonormal residual-stream directions [k, hidden] they are orthogonal to.

    ``means`` [emotion, hidden] (per-emotion story means) and ``neutral`` [passage, hidden]
    are mapped through the symmetric ``white`` (``W``); there the means are centred, the
    neutral PCs explaining ``share`` of the variance (``U``) projected out and the result
    unit-normalised (``v_e``); the directions are ``unit(W v_e)``. As ``W v_e . W^-1 u = v_e . u
    = 0``, they are orthogonal to the span of ``W^-1 U``, returned orthonormalised: the
    residual-stream counterpart of the neutral PCs the unwhitened method projects out.
    """
    white = white.double()
    mapped = means.double() @ white
    centred = mapped - mapped.mean(dim=0, keepdim=True)
    components = neutral_components(neutral.double() @ white, share).double()
    cleaned = project_out(centred, components)
    units = cleaned / cleaned.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    directions = units @ white
    directions = directions / directions.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    basis, _ = torch.linalg.qr(torch.linalg.solve(white, components.T))
    return directions.float(), basis.T.float()
