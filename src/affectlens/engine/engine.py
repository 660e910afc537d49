"""The engine: many concurrent requests on one model, each with its own steering and readouts.

Requests share forward passes (continuous batching): requests that arrive while others are
decoding are prefilled together (left-padded, in groups of similar length under a padded-token
cap), then merged into the running batch at the next step boundary; a finished or cancelled
request leaves at once. Each step adds every row's own
steering delta, reads every row's emotions from the same pass, feeds them to the row's
guardrail (whose steering changes take effect at the next step) and samples each row's next
token with the row's own generator.

A token's readout comes from the pass that reads the token, so a request that asks for
readouts (or has a guardrail) sees each token one step after it is sampled; one without them
sees it at once.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections import deque
from dataclasses import dataclass, field

import torch

from affectlens.calibration import to_units
from affectlens.engine import kv_cache
from affectlens.engine.detokenize import IncrementalText
from affectlens.engine.handle import RequestHandle
from affectlens.engine.hooks import ReadoutsDone, step_hooks
from affectlens.engine.requests import (
    Completion,
    FinishEvent,
    FinishReason,
    GenerationRequest,
    TokenEvent,
    Usage,
)
from affectlens.engine.sampling import make_generator, next_token
from affectlens.engine.validation import prompt_ids, stop_token_ids, validate_request
from affectlens.models.loading import LoadedModel
from affectlens.steer import steering_direction
from affectlens.vectors import EmotionVectors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    """Caps on the running batch: rows, and prompt plus reply tokens of all rows together."""

    max_batch_size: int = 16
    max_tokens_in_flight: int = 65536
    max_prefill_tokens: int = 8192
    """Padded prompt tokens (rows x longest prompt) prefilled in one forward pass at most."""


@dataclass(frozen=True)
class EngineStats:
    """What the engine is doing now (for metrics)."""

    queue_depth: int
    batch_size: int
    steps: int
    tokens_generated: int


@dataclass
class _Readout:
    """One readout a row needs per token: layers averaged, units, emotions reported."""

    layers: tuple[int, ...]
    units: str
    emotions: tuple[str, ...]
    indices: list[int]
    decimals: int | None = None


@dataclass
class _Row:
    request: GenerationRequest
    handle: RequestHandle
    prompt: list[int]
    stops: set[int]
    text: IncrementalText
    generator: torch.Generator | None
    readout: _Readout | None
    guard_readout: _Readout | None
    guard: object | None
    steer_layers: tuple[int, ...]
    min_new_tokens: int = 0
    extra_alphas: dict[str, float] = field(default_factory=dict)
    generated: list[int] = field(default_factory=list)
    token_readouts: list[dict[str, float]] = field(default_factory=list)
    guardrail_events: list = field(default_factory=list)
    prompt_readouts: dict[str, float] | None = None
    pending: int | None = None
    finished: bool = False

    @property
    def needs_readout(self) -> bool:
        return self.readout is not None or self.guard is not None

    @property
    def position(self) -> int:
        """The position id of the token fed next."""
        return len(self.prompt) + len(self.generated) - (0 if self.needs_readout else 1)


def _reads_its_last(row: _Row) -> bool:
    """Whether this decode pass only reads the row's pending token, its reply's last."""
    return row.needs_readout and len(row.generated) + 1 >= row.request.sampling.max_new_tokens


class Engine:
    """Continuous-batching generation with per-request steering, readouts and guardrails.

    Use it synchronously (``run``, or iterate a handle: reading drives the engine) or start
    its stepping thread (``start``/``close`` or ``with Engine(...) as engine``) for concurrent
    callers, such as a server.
    """

    def __init__(
        self,
        model: LoadedModel,
        vectors: EmotionVectors | None = None,
        *,
        config: EngineConfig | None = None,
    ) -> None:
        self.model = model
        self.vectors = vectors
        self.config = config or EngineConfig()
        if vectors is not None:
            vectors.check_fits(model)
        params = inspect.signature(model.model.forward).parameters
        self._cache_name = "cache" if "cache" in params else "past_key_values"
        self._logits_to_keep = "logits_to_keep" in params
        self._context = int(getattr(model.model.config, "max_position_embeddings", 0) or 0)
        self._lock = threading.Condition()
        self._step_lock = threading.Lock()
        self._waiting: deque[_Row] = deque()
        self._rows: list[_Row] = []
        self._cache = None
        self._columns = 0
        self._mask: torch.Tensor | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._steps = 0
        self._tokens = 0
        self._directions: dict[int, torch.Tensor] = {}
        self._delta_cache: dict[tuple, torch.Tensor] = {}

    # ---- public API --------------------------------------------------------------------

    def validate(self, request: GenerationRequest) -> None:
        """Refuse a bad request with one clear :class:`AffectlensError` line."""
        validate_request(self.model, self.vectors, request, self._context)

    def submit(self, request: GenerationRequest) -> RequestHandle:
        """Validate and queue ``request``; its events arrive on the returned handle."""
        row = self._make_row(request)
        with self._lock:
            self._waiting.append(row)
            self._lock.notify_all()
        return row.handle

    def run(self, requests: list[GenerationRequest]) -> list[Completion]:
        """Submit all ``requests`` together and wait for their completions, in order."""
        handles = [self.submit(request) for request in requests]
        return [handle.result() for handle in handles]

    def stats(self) -> EngineStats:
        with self._lock:
            return EngineStats(len(self._waiting), len(self._rows), self._steps, self._tokens)

    def start(self) -> Engine:
        """Start the stepping thread (idempotent)."""
        if self._thread is None:
            self._closing = False
            self._thread = threading.Thread(
                target=self._loop, name="affectlens-engine", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the stepping thread; requests still running are cancelled."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for row in list(self._rows) + list(self._waiting):
            row.handle.cancel()
        while self._rows or self._waiting:
            self.step()

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- stepping ----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._closing and not self._rows and not self._waiting:
                    self._lock.wait()
                if self._closing:
                    return
            try:
                self.step()
            except Exception:  # never let the stepping thread die silently
                log.exception("engine step failed")

    def _drive(self) -> bool:
        """Step once for a reader when no thread does; False when a thread is stepping."""
        if self._thread is not None:
            return False
        self.step()
        return True

    def step(self) -> None:
        """One step: drop cancelled rows, admit and prefill new requests, decode the batch."""
        with self._step_lock, torch.inference_mode():
            self._drop_cancelled()
            for group in self._prefill_groups(self._admit()):
                self._prefill(group)
            self._remove_finished()
            if self._rows:
                self._decode()
                self._remove_finished()
            self._steps += 1

    def _admit(self) -> list[_Row]:
        admitted = []
        with self._lock:
            in_flight = sum(self._budget(row) for row in self._rows)
            while self._waiting:
                row = self._waiting[0]
                if row.handle.cancelled:
                    self._waiting.popleft()
                    self._finish(row, "cancelled")
                    continue
                full = len(self._rows) + len(admitted) >= self.config.max_batch_size
                over = in_flight + self._budget(row) > self.config.max_tokens_in_flight
                if (full or over) and (self._rows or admitted):
                    break
                admitted.append(self._waiting.popleft())
                in_flight += self._budget(row)
        return admitted

    @staticmethod
    def _budget(row: _Row) -> int:
        return len(row.prompt) + row.request.sampling.max_new_tokens

    def _drop_cancelled(self) -> None:
        for row in self._rows:
            if row.handle.cancelled and not row.finished:
                self._finish(row, "cancelled")
        self._remove_finished()

    def _forward(self, ids, mask, positions, cache, rows: list[_Row], phase: str):
        """One pass: (last-token logits, the new cache, readout projections per layer).

        A decode pass in which every row reads its last token needs only the readout layers:
        it stops after the deepest and returns no logits and no cache (every row then ends)."""
        deltas = self._deltas(rows, phase)
        directions = self._readout_directions(rows)
        raw: dict[int, torch.Tensor] = {}
        kwargs = {
            "input_ids": ids.to(self.model.device),
            "attention_mask": mask.to(self.model.device),
            "position_ids": positions.to(self.model.device),
            "use_cache": True,
            self._cache_name: cache,
        }
        if phase == "decode" and directions and all(_reads_its_last(row) for row in rows):
            try:
                with step_hooks(self.model, deltas, directions, raw, stop_after=max(directions)):
                    self.model.model(**kwargs)
            except ReadoutsDone:
                return None, None, raw
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        with step_hooks(self.model, deltas, directions, raw):
            output = self.model.model(**kwargs)
        new_cache = getattr(output, self._cache_name, None)
        if new_cache is None:
            new_cache = output.past_key_values
        return output.logits[:, -1, :].float().cpu(), new_cache, raw

    def _prefill_groups(self, rows: list[_Row]) -> list[list[_Row]]:
        """Admitted rows in prefill groups: sorted by prompt length, each group's padded size
        (rows x its longest prompt) within ``max_prefill_tokens`` (a longer prompt goes alone)."""
        groups: list[list[_Row]] = []
        for row in sorted(rows, key=lambda r: len(r.prompt)):
            group = groups[-1] if groups else None
            if group and (len(group) + 1) * len(row.prompt) <= self.config.max_prefill_tokens:
                group.append(row)
            else:
                groups.append([row])
        return groups

    def _prefill(self, rows: list[_Row]) -> None:
        """Prefill ``rows`` in one left-padded pass, then merge the survivors into the batch."""
        width = max(len(row.prompt) for row in rows)
        pad = self.model.tokenizer.pad_token_id or 0
        ids = torch.tensor([[pad] * (width - len(r.prompt)) + r.prompt for r in rows])
        mask = torch.tensor([[0] * (width - len(r.prompt)) + [1] * len(r.prompt) for r in rows])
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        try:
            logits, cache, raw = self._forward(ids, mask, positions, None, rows, "prompt")
        except Exception as error:  # the model failed on this group: its rows end, no others
            log.exception("prefill failed")
            for row in rows:
                self._finish(row, "error", error=f"forward pass failed: {error}")
            return
        for index, row in enumerate(rows):
            self._guarded(row, self._after_prefill, row, index, logits[index], raw)
        keep = [index for index, row in enumerate(rows) if not row.finished]
        if not keep:
            return
        columns = width
        if len(keep) < len(rows):
            cache, columns, mask = kv_cache.keep_rows(cache, columns, mask, keep)
        if self._cache is None or not self._rows:
            self._cache, self._columns, self._mask = cache, columns, mask
        else:
            self._cache, self._columns, self._mask = kv_cache.merge(
                self._cache, self._columns, self._mask, cache, columns, mask
            )
        self._rows.extend(rows[index] for index in keep)

    def _after_prefill(self, row: _Row, index: int, logits: torch.Tensor, raw) -> None:
        if row.readout is not None:
            row.prompt_readouts = self._scores(row.readout, raw, [index])[0]
        self._after_logits(row, logits)

    def _decode(self) -> None:
        rows = list(self._rows)
        ids = torch.tensor([[row.pending] for row in rows], dtype=torch.long)
        mask = torch.cat([self._mask, self._mask.new_ones(len(rows), 1)], dim=1)
        positions = torch.tensor([[row.position] for row in rows], dtype=torch.long)
        try:
            logits, cache, raw = self._forward(ids, mask, positions, self._cache, rows, "decode")
        except Exception as error:  # the model itself failed: every row of this batch ends
            log.exception("forward pass failed")
            for row in rows:
                self._finish(row, "error", error=f"forward pass failed: {error}")
            return
        self._cache, self._columns, self._mask = cache, self._columns + 1, mask
        readouts = self._all_readouts(raw, rows)
        for index, row in enumerate(rows):
            row_logits = None if logits is None else logits[index]
            self._guarded(row, self._after_decode, row, row_logits, readouts[index])

    def _after_decode(self, row: _Row, logits: torch.Tensor | None, readouts) -> None:
        if row.needs_readout:
            self._accept(row, row.pending, readouts)
            if row.finished:
                return
        self._after_logits(row, logits)

    def _after_logits(self, row: _Row, logits: torch.Tensor) -> None:
        """Sample the row's next token and accept it now, or feed it to read it first."""
        if len(row.generated) < row.min_new_tokens and row.stops:
            logits = logits.clone()
            logits[sorted(row.stops)] = float("-inf")
        token = next_token(logits, row.request.sampling, row.generator)
        if token in row.stops:
            self._finish(row, "stop")
            return
        if not row.needs_readout:
            self._accept(row, token, None)
        if not row.finished:
            row.pending = token

    def _accept(self, row: _Row, token: int, readouts) -> None:
        """A token joins the reply: emit it, run the guardrail, check stop and length."""
        index = len(row.generated)
        row.generated.append(token)
        self._tokens += 1
        delta = row.text.add(token)
        shown = readouts[0] if readouts is not None else None
        if shown is not None:
            row.token_readouts.append(shown)
        row.handle._push(TokenEvent(index, token, delta, shown))
        if row.text.stopped:
            self._finish(row, "stop")
            return
        if row.guard is not None and readouts is not None:
            events = row.guard.observe(index, readouts[1])
            for event in events:
                row.guardrail_events.append(event)
                row.handle._push(event)
            if dict(row.guard.steering) != row.extra_alphas:
                row.extra_alphas = dict(row.guard.steering)
            if row.guard.stopped:
                self._finish(row, "guardrail")
                return
        if len(row.generated) >= row.request.sampling.max_new_tokens:
            self._finish(row, "length")

    def _guarded(self, row: _Row, action, *args) -> None:
        """Run one row's work; an exception ends that row only, with finish reason 'error'."""
        try:
            action(*args)
        except Exception as error:
            log.exception("request %s failed", row.request.request_id)
            if not row.finished:
                self._finish(row, "error", error=f"{type(error).__name__}: {error}")

    def _finish(self, row: _Row, reason: FinishReason, error: str | None = None) -> None:
        row.finished = True
        usage = Usage(len(row.prompt), len(row.generated))
        completion = Completion(
            request_id=row.request.request_id,
            text=row.text.text,
            token_ids=list(row.generated),
            finish_reason=reason,
            usage=usage,
            prompt_readouts=row.prompt_readouts,
            token_readouts=row.token_readouts,
            guardrail_events=row.guardrail_events,
            error=error,
        )
        event = FinishEvent(reason, usage, row.text.text, error, row.prompt_readouts)
        row.handle._push(event, completion)

    def _remove_finished(self) -> None:
        keep = [index for index, row in enumerate(self._rows) if not row.finished]
        if len(keep) == len(self._rows):
            return
        self._rows = [self._rows[index] for index in keep]
        if not keep:
            self._cache, self._columns, self._mask = None, 0, None
            return
        self._cache, self._columns, self._mask = kv_cache.keep_rows(
            self._cache, self._columns, self._mask, keep
        )

    # ---- steering and readouts ---------------------------------------------------------

    def _row_alphas(self, row: _Row, phase: str) -> dict[int, dict[str, float]]:
        """Layer -> emotion -> alpha for this row in this phase (its request plus guardrail)."""
        spec = row.request.steering
        by_layer: dict[int, dict[str, float]] = {}
        if spec is not None and spec.alphas:
            wanted = spec.positions == "all" or (
                (spec.positions == "prompt") == (phase == "prompt")
            )
            if wanted:
                for layer in row.steer_layers:
                    by_layer[layer] = dict(spec.alphas)
        if phase == "decode" and row.extra_alphas:
            for layer in row.steer_layers:
                total = by_layer.setdefault(layer, {})
                for emotion, alpha in row.extra_alphas.items():
                    total[emotion] = total.get(emotion, 0.0) + alpha
        return by_layer

    def _deltas(self, rows: list[_Row], phase: str) -> dict[int, torch.Tensor]:
        plans = [self._row_alphas(row, phase) for row in rows]
        layers = sorted({layer for plan in plans for layer in plan})
        deltas = {}
        for layer in layers:
            key = (layer, tuple(tuple(sorted(plan.get(layer, {}).items())) for plan in plans))
            delta = self._delta_cache.get(key)
            if delta is None:
                columns = []
                for plan in plans:
                    alphas = plan.get(layer)
                    if alphas:
                        columns.append(steering_direction(self.vectors, alphas, layer))
                    else:
                        columns.append(torch.zeros(self.vectors.hidden_size))
                delta = torch.stack(columns)
                if len(self._delta_cache) > 256:
                    self._delta_cache.clear()
                self._delta_cache[key] = delta
            deltas[layer] = delta
        return deltas

    def _readout_directions(self, rows: list[_Row]) -> dict[int, torch.Tensor]:
        layers = set()
        for row in rows:
            for readout in (row.readout, row.guard_readout):
                if readout is not None:
                    layers.update(readout.layers)
        for layer in layers - set(self._directions):
            self._directions[layer] = self.vectors.at_layer(layer).float()
        return {layer: self._directions[layer] for layer in sorted(layers)}

    def _scores(self, readout: _Readout, raw, batch_rows: list[int]) -> list[dict]:
        """Per batch row, emotion -> score: mean over the readout's layers, in its units."""
        stacked = torch.stack([raw[layer][batch_rows] for layer in readout.layers])
        scores = to_units(stacked, self.vectors, list(readout.layers), readout.units).mean(dim=0)
        chosen = scores[:, readout.indices]
        if readout.decimals is not None:  # in float64, so that each value prints short
            chosen = chosen.double().round(decimals=readout.decimals)
        return [dict(zip(readout.emotions, values, strict=True)) for values in chosen.tolist()]

    def _all_readouts(self, raw, rows: list[_Row]) -> list:
        """Per row, (reported readouts, guardrail readouts), or ``None`` when it reads none.

        Rows asking for the same layers, units, emotions and rounding are converted together."""
        groups: dict[tuple, list[int]] = {}
        for index, row in enumerate(rows):
            for slot, readout in enumerate((row.readout, row.guard_readout)):
                if readout is not None:
                    key = (slot, readout.layers, readout.units, readout.emotions, readout.decimals)
                    groups.setdefault(key, []).append(index)
        results: list[list] = [[None, None] for _ in rows]
        for (slot, *_same), members in groups.items():
            readout = rows[members[0]].readout if slot == 0 else rows[members[0]].guard_readout
            for index, scores in zip(members, self._scores(readout, raw, members), strict=True):
                results[index][slot] = scores
        return [
            tuple(pair) if row.needs_readout else None
            for pair, row in zip(results, rows, strict=True)
        ]

    # ---- request set-up ----------------------------------------------------------------

    def _make_row(self, request: GenerationRequest) -> _Row:
        self.validate(request)
        prompt = prompt_ids(self.model.tokenizer, request)
        vectors = self.vectors
        readout = guard_readout = guard = None
        if request.readouts is not None:
            spec = request.readouts
            layers = tuple(spec.layers) if spec.layers else (vectors.default_layer,)
            emotions = tuple(spec.emotions) if spec.emotions else tuple(vectors.emotions)
            readout = _Readout(
                layers,
                spec.units,
                emotions,
                [vectors.emotion_index(e) for e in emotions],
                spec.decimals,
            )
        steer_layers: tuple[int, ...] = ()
        if vectors is not None:
            spec = request.steering
            steer_layers = tuple(spec.layers) if spec and spec.layers else (vectors.default_layer,)
        if request.guardrail is not None:
            policy = request.guardrail
            layers = readout.layers if readout is not None else (vectors.default_layer,)
            emotions = tuple(sorted(policy.emotions()))
            guard_readout = _Readout(
                layers, policy.units, emotions, [vectors.emotion_index(e) for e in emotions]
            )
            guard = policy.start()
        handle = RequestHandle(request.request_id, self._drive)
        return _Row(
            request=request,
            handle=handle,
            prompt=prompt,
            stops=stop_token_ids(self.model) | set(request.sampling.stop_token_ids),
            text=IncrementalText(self.model.tokenizer, request.sampling.stop),
            generator=make_generator(request.sampling),
            readout=readout,
            guard_readout=guard_readout,
            guard=guard,
            steer_layers=steer_layers,
            min_new_tokens=max(
                request.sampling.min_new_tokens,
                int(getattr(self.model.model.generation_config, "min_new_tokens", 0) or 0),
            ),
        )
