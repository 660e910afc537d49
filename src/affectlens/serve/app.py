"""The OpenAI-compatible HTTP API over the engine, with emotion telemetry and guardrails.

Every route calls the same :class:`~affectlens.engine.Engine` the library uses, so a served
reply is token for token the reply ``generate`` gives for the same request. A request without
the ``affectlens`` field behaves as a plain OpenAI server (with the server's default guardrail,
if one is set). Errors come back in OpenAI's shape, ``{"error": {"message", "type", "param",
"code"}}``, with a 4xx status for anything the client can fix.
"""

from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from affectlens.engine import (
    Engine,
    FinishEvent,
    GenerationRequest,
    ReadoutSpec,
    SamplingParams,
    SteeringSpec,
    TokenEvent,
)
from affectlens.errors import AffectlensError
from affectlens.guardrails import GuardrailEvent, GuardrailPolicy
from affectlens.serve.audit import (
    AuditQueryError,
    AuditRecord,
    AuditStore,
    RequestFilter,
    parse_minutes,
    parse_page,
)
from affectlens.serve.metrics import ServerMetrics
from affectlens.serve.schemas import ChatCompletionRequest, CompletionRequest
from affectlens.serve.sse import ChunkEncoder
from affectlens.serve.telemetry import summarise
from affectlens.steer import MAX_ALPHA
from affectlens.vectors import EmotionVectors


@dataclass
class ServerSettings:
    """What the server allows and defaults to."""

    model_name: str
    api_key: str | None = None
    units: str = "z"
    default_max_tokens: int = 256
    max_tokens_limit: int = 2048
    max_body_bytes: int = 1_000_000
    max_messages: int = 256
    max_in_flight: int = 64
    policies: dict[str, GuardrailPolicy] = field(default_factory=dict)
    default_policy: str | None = None
    metric_emotions: tuple[str, ...] = ()
    readout_decimals: int | None = 4  # readouts sent rounded: half the bytes of full floats


class APIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", *,
                 param: str | None = None, code: str | None = None,
                 headers: dict | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.param, self.code, self.headers = param, code, headers or {}


def _error(status: int, message: str, kind: str, param=None, code=None, headers=None):
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(engine: Engine, vectors: EmotionVectors, settings: ServerSettings,
               audit: AuditStore | None = None) -> FastAPI:  # fmt: skip
    """The FastAPI application serving ``engine`` (whose stepping thread must be started).

    With ``audit``, every request is recorded there when it ends (and read for emotions even
    when it asked no telemetry, so each record has its summary), and the
    ``/v1/affectlens/requests`` and ``/v1/affectlens/traffic`` routes read it back. The caller
    owns the store and closes it after the server stops.
    """
    app = FastAPI(title="affectlens", version="1", docs_url=None, redoc_url=None)
    metrics = ServerMetrics(engine, settings.metric_emotions)
    app.state.metrics = metrics
    in_flight = {"n": 0}

    @app.exception_handler(APIError)
    async def _api_error(_request, error: APIError):
        return _error(error.status, error.message, error.kind, error.param, error.code,
                      error.headers)  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid JSON"
        return _error(400, message, "invalid_request_error", where or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request, error: StarletteHTTPException):
        return _error(error.status_code, str(error.detail), "invalid_request_error")

    @app.exception_handler(Exception)
    async def _internal(_request, error: Exception):  # never a traceback to the client
        return _error(500, f"internal error: {type(error).__name__}", "server_error")

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        if request.url.path.startswith("/v1") and settings.api_key is not None:
            header = request.headers.get("authorization", "")
            given = header[7:] if header.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
                return _error(401, "invalid or missing API key", "authentication_error",
                              code="invalid_api_key")  # fmt: skip
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
            return _error(413, f"request body over {settings.max_body_bytes} bytes",
                          "invalid_request_error", code="request_too_large")  # fmt: skip
        return await call_next(request)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [
            {"id": settings.model_name, "object": "model", "created": 0, "owned_by": "affectlens"}
        ]}  # fmt: skip

    @app.get("/v1/affectlens/emotions")
    async def emotions():
        return {
            "model": settings.model_name,
            "emotions": list(vectors.emotions),
            "layers": list(vectors.layers),
            "default_layer": vectors.default_layer,
            "max_alpha": MAX_ALPHA,
            "units": ["raw", *(["z", "p99"] if vectors.calibration else [])],
            "default_units": settings.units,
            "policies": sorted(settings.policies),
            "default_policy": settings.default_policy,
        }

    @app.get("/metrics")
    async def prometheus():
        metrics.sample_engine()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def _policy(options) -> GuardrailPolicy | None:
        chosen = options.guardrail if options is not None else None
        if chosen is None:
            chosen = settings.default_policy
        if chosen is None:
            return None
        if isinstance(chosen, str):
            if chosen not in settings.policies:
                raise APIError(400, f"no guardrail policy named {chosen!r} is loaded",
                               param="affectlens.guardrail")  # fmt: skip
            return settings.policies[chosen]
        return GuardrailPolicy.from_dict(chosen)

    def _build(body, messages=None, prompt=None) -> tuple[GenerationRequest, str]:
        options = body.affectlens
        limit = getattr(body, "max_completion_tokens", None) or body.max_tokens
        max_tokens = limit or settings.default_max_tokens
        if max_tokens > settings.max_tokens_limit:
            raise APIError(400, f"max_tokens is over this server's limit of "
                           f"{settings.max_tokens_limit}", param="max_tokens")  # fmt: skip
        telemetry = options.telemetry if options is not None else "none"
        policy = _policy(options)
        readouts = None
        if telemetry != "none" or policy is not None or audit is not None:
            readouts = ReadoutSpec(
                emotions=tuple(options.emotions) if options and options.emotions else None,
                layers=tuple(options.readout_layers) if options and options.readout_layers
                else None,
                units=(options.units if options and options.units else settings.units),
                decimals=settings.readout_decimals,
            )  # fmt: skip
        steering = None
        if options is not None and options.steer:
            layers = tuple(options.layers) if options.layers else None
            steering = SteeringSpec(dict(options.steer), layers, options.positions)
        sampling = SamplingParams(
            max_new_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed,
            stop=body.stops(),
        )
        request = GenerationRequest(
            messages=messages, prompt=prompt, sampling=sampling, steering=steering,
            readouts=readouts, guardrail=policy,
        )  # fmt: skip
        return request, telemetry

    def _submit(request: GenerationRequest):
        if in_flight["n"] >= settings.max_in_flight:
            raise APIError(429, "too many requests in flight; retry shortly", "rate_limit_error",
                           headers={"Retry-After": "1"})  # fmt: skip
        try:
            return engine.submit(request)
        except AffectlensError as error:
            raise APIError(400, str(error)) from None

    def _record(body, request: GenerationRequest, state: _Collected, kind: str, ended: str):
        """Queue the audit record of a request that ended (``ended``: why, if unfinished)."""
        if audit is None:
            return
        finish, now = state.finish, time.perf_counter()
        steering = request.steering
        record = AuditRecord(
            id=state.ident(kind), created=state.created, user=body.user,
            model=settings.model_name, kind=kind, messages=request.messages,
            prompt=request.prompt, text=finish.text if finish else state.text,
            finish_reason=finish.finish_reason if finish else ended,
            completion_tokens=finish.usage.completion_tokens if finish else state.tokens_seen,
            prompt_tokens=finish.usage.prompt_tokens if finish else None,
            latency_ms=(now - state.started) * 1000,
            ttft_ms=None if state.first_token_at is None
            else (state.first_token_at - state.started) * 1000,
            sampling={"max_tokens": request.sampling.max_new_tokens,
                      "temperature": request.sampling.temperature,
                      "top_p": request.sampling.top_p, "seed": request.sampling.seed,
                      "stop": list(request.sampling.stop)},
            steering=None if steering is None else {
                "alphas": dict(steering.alphas),
                "layers": list(steering.layers or (vectors.default_layer,)),
                "positions": steering.positions},
            policy=request.guardrail.name if request.guardrail is not None else None,
            readouts=state.readouts, guardrail_events=[e.to_dict() for e in state.events],
            tokens=state.trace,
        )  # fmt: skip
        if not audit.submit(record):
            metrics.audit_dropped.inc()

    async def _run(body, request: GenerationRequest, telemetry: str, kind: str):
        handle = _submit(request)
        in_flight["n"] += 1
        metrics.in_flight.inc()
        traced = audit is not None and (telemetry == "tokens" or audit.keep_traces)
        state = _Collected(telemetry, traced)
        started = state.started
        ended = "error"
        try:
            if body.stream:
                return StreamingResponse(
                    _stream(handle, body, request, state, kind, started),
                    media_type="text/event-stream",
                )
            try:
                async for event in handle.aiter():
                    state.add(event, metrics, started)
            except asyncio.CancelledError:
                ended = "disconnected"
                raise
            return JSONResponse(_final_body(state, kind, settings.model_name))
        finally:
            if not body.stream:
                in_flight["n"] -= 1
                metrics.in_flight.dec()
                handle.cancel()
                _record(body, request, state, kind, ended)

    async def _stream(handle, body, request, state, kind, started) -> AsyncIterator[str]:
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
        chunks = ChunkEncoder(state.ident(kind), obj, int(time.time()), settings.model_name,
                              chat=kind == "chat")  # fmt: skip
        chunk = chunks.chunk
        ended = "error"
        try:
            if kind == "chat":
                yield chunk({"role": "assistant", "content": ""})
            async for event in handle.aiter():
                state.add(event, metrics, started)
                if isinstance(event, TokenEvent):
                    shown = event.readouts if state.telemetry == "tokens" else None
                    if event.text or shown is not None:
                        yield chunks.token(event.text, event.index, shown)
                elif isinstance(event, GuardrailEvent) and state.telemetry != "none":
                    yield chunk({}, extra={"guardrail": event.to_dict()})
            final = _final_body(state, kind, settings.model_name, streamed=True)
            yield chunk({}, final["choices"][0]["finish_reason"], final.get("affectlens"))
            if body.stream_options is not None and body.stream_options.include_usage:
                yield chunk(usage=final["usage"], choices=False)
            yield "data: [DONE]\n\n"
        except (GeneratorExit, asyncio.CancelledError):
            ended = "disconnected"
            raise
        finally:
            in_flight["n"] -= 1
            metrics.in_flight.dec()
            handle.cancel()  # a client that went away frees its slot at the next step
            _record(body, request, state, kind, ended)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatCompletionRequest):
        if len(body.messages) > settings.max_messages:
            raise APIError(400, f"at most {settings.max_messages} messages", param="messages")
        messages = [message.model_dump() for message in body.messages]
        try:
            request, telemetry = _build(body, messages=messages)
        except AffectlensError as error:
            raise APIError(400, str(error)) from None
        return await _run(body, request, telemetry, "chat")

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        try:
            request, telemetry = _build(body, prompt=body.prompt)
        except AffectlensError as error:
            raise APIError(400, str(error)) from None
        return await _run(body, request, telemetry, "text")

    def _store() -> AuditStore:
        if audit is None:
            raise APIError(404, "this server keeps no audit store (started with --db none)",
                           code="audit_disabled")  # fmt: skip
        return audit

    def _params(request: Request, allowed: set[str]) -> dict[str, str]:
        params = dict(request.query_params)
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise APIError(400, f"unknown query parameter {unknown[0]!r}; known: "
                           f"{', '.join(sorted(allowed))}", param=unknown[0])  # fmt: skip
        return params

    list_params = {"since", "until", "user", "emotion", "above", "guardrail", "limit", "offset"}

    @app.get("/v1/affectlens/requests")
    def audited_requests(request: Request):
        store = _store()
        params = _params(request, list_params)
        try:
            where = RequestFilter.parse(params)
            limit, offset = parse_page(params.get("limit"), params.get("offset"))
        except AuditQueryError as error:
            raise APIError(400, str(error), param=error.param) from None
        return store.list_requests(where, limit, offset)

    @app.get("/v1/affectlens/requests/{request_id}")
    def audited_request(request_id: str):
        record = _store().get_request(request_id)
        if record is None:
            raise APIError(404, f"no audited request {request_id!r}", param="id",
                           code="not_found")  # fmt: skip
        return record

    @app.get("/v1/affectlens/traffic")
    def traffic(request: Request):
        store = _store()
        params = _params(request, {"minutes"})
        try:
            minutes = parse_minutes(params.get("minutes"))
        except AuditQueryError as error:
            raise APIError(400, str(error), param=error.param) from None
        return store.traffic(minutes)

    return app


class _Collected:
    """What a request's events add up to, for the final response and the metrics."""

    def __init__(self, telemetry: str, traced: bool = False) -> None:
        self.telemetry = telemetry
        self.request_id = uuid.uuid4().hex
        self.created = time.time()
        self.started = time.perf_counter()
        self.tokens_seen = 0
        self.trace: list[dict] | None = [] if traced else None
        self.text = ""
        self.readouts: list[dict[str, float]] = []
        self.events: list[GuardrailEvent] = []
        self.finish: FinishEvent | None = None
        self.first_token_at: float | None = None

    def ident(self, kind: str) -> str:
        return ("chatcmpl-" if kind == "chat" else "cmpl-") + self.request_id

    def add(self, event, metrics: ServerMetrics, started: float) -> None:
        now = time.perf_counter()
        if isinstance(event, TokenEvent):
            if self.first_token_at is None:
                self.first_token_at = now
                metrics.ttft.observe(now - started)
            metrics.observe_token(event.readouts)
            self.text += event.text
            self.tokens_seen += 1
            if self.trace is not None:
                self.trace.append({"index": event.index, "text": event.text,
                                   "readouts": event.readouts})  # fmt: skip
            if event.readouts is not None:
                self.readouts.append(event.readouts)
        elif isinstance(event, GuardrailEvent):
            self.events.append(event)
            metrics.guardrail.labels(event.rule, event.action).inc()
        elif isinstance(event, FinishEvent):
            self.finish = event
            self.text = event.text
            metrics.finished(event, now - started)


def _final_body(state: _Collected, kind: str, model: str, *, streamed: bool = False) -> dict:
    """The whole response (or, ``streamed``, what the closing chunk takes from it: each token's
    chunk carried its readouts already, so ``affectlens.tokens`` is left out)."""
    finish = state.finish
    if finish is None or finish.finish_reason == "error":
        raise APIError(500, f"generation failed: {finish.error if finish else 'no result'}",
                       "server_error")  # fmt: skip
    reason = finish.finish_reason if finish.finish_reason in ("stop", "length") else "stop"
    if kind == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": finish.text},
                  "finish_reason": reason}  # fmt: skip
    else:
        choice = {"index": 0, "text": finish.text, "finish_reason": reason, "logprobs": None}
    body = {
        "id": state.ident(kind),
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": {
            "prompt_tokens": finish.usage.prompt_tokens,
            "completion_tokens": finish.usage.completion_tokens,
            "total_tokens": finish.usage.total_tokens,
        },
    }
    if state.telemetry != "none":
        extra: dict = {
            "finish_reason": finish.finish_reason,
            "assistant_turn": finish.prompt_readouts,
            "summary": summarise(state.readouts),
            "guardrail_events": [event.to_dict() for event in state.events],
        }
        if state.telemetry == "tokens" and not streamed:
            extra["tokens"] = state.readouts
        body["affectlens"] = extra
    elif state.events:
        body["affectlens"] = {
            "finish_reason": finish.finish_reason,
            "guardrail_events": [event.to_dict() for event in state.events],
        }
    return body
