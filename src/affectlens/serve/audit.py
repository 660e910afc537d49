"""The audit store: every served request, recorded in SQLite or PostgreSQL, and read back.

The server hands each finished request (finished, stopped by a guardrail, cancelled, or left by
its client) to :meth:`AuditStore.submit`, which only puts it on a bounded queue: a background
thread writes it, so a slow or locked database never holds up token streaming. When the queue
is full the record is dropped with a warning (the server counts the drops in Prometheus);
:meth:`AuditStore.close` writes whatever is still queued.

The query methods (:meth:`~AuditStore.list_requests`, :meth:`~AuditStore.get_request`,
:meth:`~AuditStore.iter_requests`, :meth:`~AuditStore.traffic`) are what both the HTTP routes
and ``affectlens audit`` call. Filters are SQL: the emotion filter reads the per-emotion table,
the guardrail filter the firing table. The shapes they return are the HTTP API's (the
README's serving section shows them).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session

from affectlens.errors import AffectlensError
from affectlens.serve.audit_schema import (
    EmotionRow,
    GuardrailRow,
    RequestRow,
    SchemaError,
    TokenRow,
    migrate,
)
from affectlens.serve.telemetry import summarise

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_TRAFFIC_MINUTES = 1440
_STOP = object()


class AuditQueryError(AffectlensError):
    """A bad filter or page parameter; ``param`` names it (for the API's 400)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


@dataclass
class AuditRecord:
    """What the server knows about one request when it ends.

    ``readouts`` are the reply tokens' readouts (the summary is computed from them by the
    writer thread, off the event loop); ``tokens`` is the per-token trace
    (``{"index", "text", "readouts"}``) or ``None`` when the request is not traced.
    """

    id: str
    created: float
    model: str
    kind: str
    text: str
    finish_reason: str
    completion_tokens: int
    latency_ms: float
    user: str | None = None
    messages: list[dict] | None = None
    prompt: str | None = None
    sampling: dict = field(default_factory=dict)
    steering: dict | None = None
    policy: str | None = None
    readouts: list[dict[str, float]] = field(default_factory=list)
    guardrail_events: list[dict] = field(default_factory=list)
    prompt_tokens: int | None = None
    ttft_ms: float | None = None
    tokens: list[dict] | None = None


# --- parameters -----------------------------------------------------------------------------


def parse_time(value: str | float | None, param: str) -> float | None:
    """Epoch seconds from epoch seconds or ISO-8601 (a time without a zone is UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(number):
            return number
        raise AuditQueryError(param, f"expected ISO-8601 or epoch seconds, got {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise AuditQueryError(
            param, f"expected ISO-8601 (2026-05-01T12:00:00Z) or epoch seconds, got {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _parse_int(value: str | int | None, param: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise AuditQueryError(param, f"expected an integer, got {value!r}") from None
    if not low <= number <= high:
        raise AuditQueryError(param, f"must be in {low}..{high}, got {number}")
    return number


def parse_page(limit: str | int | None, offset: str | int | None) -> tuple[int, int]:
    """``(limit, offset)``: limit 1..500 (default 50), offset >= 0 (default 0)."""
    return (
        _parse_int(limit, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        _parse_int(offset, "offset", 0, 0, 2**62),
    )


def parse_minutes(value: str | int | None) -> int:
    """The traffic window in minutes: 1..1440, default 60."""
    return _parse_int(value, "minutes", 60, 1, MAX_TRAFFIC_MINUTES)


@dataclass(frozen=True)
class RequestFilter:
    """Which records a query selects; every field ``None`` selects all.

    ``since <= created < until``; ``emotion`` with ``above``: the emotion's max over the reply
    is above the value; ``guardrail``: ``True`` (any firing), ``False`` (none) or a rule name.
    """

    since: float | None = None
    until: float | None = None
    user: str | None = None
    emotion: str | None = None
    above: float | None = None
    guardrail: bool | str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str | None]) -> RequestFilter:
        """The filter from string parameters (query string or command line)."""
        emotion = params.get("emotion") or None
        above_text = params.get("above")
        above = None
        if above_text not in (None, ""):
            try:
                above = float(above_text)
            except ValueError:
                above = math.nan
            if not math.isfinite(above):
                raise AuditQueryError("above", f"expected a number, got {above_text!r}")
        if (emotion is None) != (above is None):
            missing = "above" if above is None else "emotion"
            raise AuditQueryError(missing, "emotion and above go together")
        guardrail: bool | str | None = params.get("guardrail") or None
        if isinstance(guardrail, str) and guardrail.lower() in ("true", "false"):
            guardrail = guardrail.lower() == "true"
        return cls(
            since=parse_time(params.get("since"), "since"),
            until=parse_time(params.get("until"), "until"),
            user=params.get("user") or None,
            emotion=emotion,
            above=above,
            guardrail=guardrail,
        )

    def apply(self, statement: sa.Select) -> sa.Select:
        """``statement`` (over :class:`RequestRow`) narrowed to the matching rows."""
        row = RequestRow
        if self.since is not None:
            statement = statement.where(row.created >= self.since)
        if self.until is not None:
            statement = statement.where(row.created < self.until)
        if self.user is not None:
            statement = statement.where(row.user == self.user)
        if self.emotion is not None:
            statement = statement.where(
                sa.exists().where(
                    EmotionRow.request_id == row.id,
                    EmotionRow.emotion == self.emotion,
                    EmotionRow.max > self.above,
                )
            )
        if self.guardrail is not None:
            fired = sa.exists().where(GuardrailRow.request_id == row.id)
            if isinstance(self.guardrail, str):
                fired = fired.where(GuardrailRow.rule == self.guardrail)
            statement = statement.where(fired if self.guardrail is not False else ~fired)
        return statement


# --- URLs -----------------------------------------------------------------------------------


def database_url(value: str | Path) -> URL:
    """A SQLAlchemy URL from a URL or a plain path (a SQLite file).

    ``postgresql://`` means the psycopg (v3) driver, the one affectlens is tested with.
    """
    text = str(value)
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text).expanduser().resolve()))
    try:
        url = make_url(text)
    except ArgumentError:
        raise AffectlensError(f"not a database URL: {mask(text)!r}") from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def mask(url: URL | str) -> str:
    """The URL with its password replaced by ``***`` (for logs and messages)."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except ArgumentError:
            return "<unparseable URL>"
    return url.render_as_string(hide_password=True)


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers and the writer thread do not block
    cursor.close()


def _create_engine(url: URL) -> Engine:
    options: dict = {}
    if url.get_backend_name() == "sqlite":
        options["connect_args"] = {"timeout": 30, "check_same_thread": False}
        if url.database in (None, "", ":memory:"):
            options["poolclass"] = sa.pool.StaticPool
    else:
        options["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(url, **options)
    except (NoSuchModuleError, ModuleNotFoundError) as error:
        hint = (
            " (pip install 'psycopg[binary]')"
            if "psycopg" in str(error) or (url.get_backend_name() == "postgresql")
            else ""
        )
        raise AffectlensError(f"no database driver for {mask(url)}{hint}") from None
    if url.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


# --- the store ------------------------------------------------------------------------------


class AuditStore:
    """Served requests in a SQL database: recorded through a background writer, and queried.

    ``url`` is a SQLAlchemy URL (``sqlite:///audit.sqlite``,
    ``postgresql+psycopg://user:pw@host/db``) or a SQLite file path. The schema is created, or
    upgraded from an older version, when the store opens. ``create=False`` refuses a database
    that holds no store yet (what a reader wants). ``keep_traces`` stores every request's
    per-token trace, not only those that asked for ``telemetry: "tokens"``.
    """

    def __init__(
        self,
        url: str | Path | URL,
        *,
        keep_traces: bool = False,
        queue_size: int = 1000,
        create: bool = True,
    ) -> None:
        self.url = url if isinstance(url, URL) else database_url(url)
        self.keep_traces = keep_traces
        self.dropped = 0
        where = mask(self.url)
        path = self.url.database if self.url.get_backend_name() == "sqlite" else None
        if path not in (None, "", ":memory:") and not create and not Path(path).exists():
            raise AffectlensError(f"no audit store at {path}")
        self.engine = _create_engine(self.url)
        try:
            with self.engine.begin() as conn:
                if not create and not sa.inspect(conn).get_table_names():
                    raise AffectlensError(f"no audit store in {where}")
                found, now = migrate(conn)
        except SchemaError as error:
            self.engine.dispose()
            raise AffectlensError(f"{where} is not a usable audit store: {error}") from None
        except SQLAlchemyError as error:
            self.engine.dispose()
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            raise AffectlensError(f"cannot open the audit store {where}: {reason}") from None
        except AffectlensError:
            self.engine.dispose()
            raise
        if found is None:
            log.info("audit store %s created (schema v%d)", where, now)
        elif found < now:
            log.info("audit store %s upgraded from schema v%d to v%d", where, found, now)
        self.schema_version = now
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def location(self) -> str:
        """The database URL with the password masked."""
        return mask(self.url)

    # writing ---------------------------------------------------------------------------------

    def submit(self, record: AuditRecord) -> bool:
        """Queue ``record`` for writing without waiting; ``False`` when it was dropped."""
        with self._lock:
            if self._closed:
                log.warning("audit store closed: request %s not recorded", record.id)
                return False
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._write_loop, daemon=True, name="affectlens-audit-writer"
                )
                self._thread.start()
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            log.warning(
                "audit queue full (%d waiting): request %s not recorded",
                self._queue.maxsize,
                record.id,
            )
            return False
        return True

    def write(self, records: list[AuditRecord]) -> None:
        """Write ``records`` now, in one transaction (what the writer thread calls)."""
        tables: dict[type, list[dict]] = defaultdict(list)
        for record in records:
            for table, rows in _rows(record).items():
                tables[table] += _without_nul(rows)
        with self.engine.begin() as conn:
            for table in (RequestRow, EmotionRow, GuardrailRow, TokenRow):  # parents first
                if tables[table]:
                    conn.execute(sa.insert(table), tables[table])

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued record is written (or ``timeout`` seconds pass)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        """Write what is queued, stop the writer thread and close the connections."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join()
        self.engine.dispose()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def _write_loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < 64:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            records = [item for item in batch if item is not _STOP]
            try:
                self._write_each(records)
            finally:
                for _ in batch:
                    self._queue.task_done()
            if stop:
                return

    def _write_each(self, records: list[AuditRecord]) -> None:
        """Write a batch; if it fails, each record alone, so one bad record costs only itself."""
        if not records:
            return
        try:
            self.write(records)
            return
        except Exception as error:  # a bad record or a lost database must not end the writer
            if len(records) == 1:
                reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
                log.error("audit store: could not write request %s: %s", records[0].id, reason)
                return
        for record in records:
            self._write_each([record])

    # reading ---------------------------------------------------------------------------------

    def list_requests(
        self, where: RequestFilter = RequestFilter(), limit: int = DEFAULT_LIMIT, offset: int = 0
    ) -> dict:
        """One page of summary records, newest first, and the total that match."""
        with Session(self.engine) as session:
            total = session.scalar(where.apply(sa.select(sa.func.count()).select_from(RequestRow)))
            rows = session.scalars(
                where.apply(sa.select(RequestRow))
                .order_by(RequestRow.created.desc(), RequestRow.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            data = _summaries(session, rows)
        return {
            "object": "list",
            "data": data,
            "total": int(total or 0),
            "limit": limit,
            "offset": offset,
        }

    def get_request(self, request_id: str) -> dict | None:
        """The full record of one request (summary, input, reply, trace), or ``None``."""
        with Session(self.engine) as session:
            row = session.get(RequestRow, request_id)
            return None if row is None else _details(session, [row])[0]

    def iter_requests(
        self, where: RequestFilter = RequestFilter(), *, batch: int = 200
    ) -> Iterator[dict]:
        """Every matching full record, newest first, read ``batch`` at a time.

        Pages are keyed on (created, id), so records written meanwhile neither repeat nor
        shift the pages.
        """
        after: tuple[float, str] | None = None
        while True:
            statement = where.apply(sa.select(RequestRow))
            if after is not None:
                statement = statement.where(
                    sa.or_(
                        RequestRow.created < after[0],
                        sa.and_(RequestRow.created == after[0], RequestRow.id < after[1]),
                    )
                )
            with Session(self.engine) as session:
                rows = session.scalars(
                    statement.order_by(RequestRow.created.desc(), RequestRow.id.desc()).limit(batch)
                ).all()
                records = _details(session, rows)
            yield from records
            if len(rows) < batch:
                return
            after = (rows[-1].created, rows[-1].id)

    def traffic(self, minutes: int = 60, now: float | None = None) -> dict:
        """Per-minute requests, completion tokens and guardrail firings over the last
        ``minutes`` minutes (the current one included), and each emotion's per-request maxima."""
        now = time.time() if now is None else now
        first = (math.floor(now / 60) - minutes + 1) * 60
        buckets = [
            {"minute": first + 60 * i, "requests": 0, "completion_tokens": 0, "guardrail": {}}
            for i in range(minutes)
        ]

        def bucket(created: float) -> dict | None:
            slot = math.floor((created - first) / 60)
            return buckets[slot] if 0 <= slot < minutes else None

        in_window = sa.and_(RequestRow.created >= first, RequestRow.created < first + 60 * minutes)
        with Session(self.engine) as session:
            for created, tokens in session.execute(
                sa.select(RequestRow.created, RequestRow.completion_tokens).where(in_window)
            ):
                if (slot := bucket(created)) is not None:
                    slot["requests"] += 1
                    slot["completion_tokens"] += tokens or 0
            for created, rule in session.execute(
                sa.select(RequestRow.created, GuardrailRow.rule)
                .join(GuardrailRow, GuardrailRow.request_id == RequestRow.id)
                .where(in_window)
            ):
                if (slot := bucket(created)) is not None:
                    slot["guardrail"][rule] = slot["guardrail"].get(rule, 0) + 1
            emotions: dict[str, list[float]] = defaultdict(list)
            for emotion, peak in session.execute(
                sa.select(EmotionRow.emotion, EmotionRow.max)
                .join(RequestRow, EmotionRow.request_id == RequestRow.id)
                .where(in_window)
                .order_by(RequestRow.created, EmotionRow.emotion)
            ):
                emotions[emotion].append(peak)
        return {
            "minutes": minutes,
            "since": float(first),
            "buckets": buckets,
            "emotions": dict(emotions),
        }


def _without_nul(value):
    """``value`` with every NUL character in its strings (keys too) replaced by U+FFFD.

    PostgreSQL's text and JSON types cannot hold NUL, and a model, a client's message or its
    ``user`` field can contain one: unreplaced, the whole record would be lost. Both backends
    store the same replacement, so a record reads back alike from SQLite and PostgreSQL.
    """
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(item) for item in value]
    return value


def _rows(record: AuditRecord) -> dict[type, list[dict]]:
    """The rows of one record, per table."""
    summary = summarise(record.readouts)
    request = {
        "id": record.id,
        "created": record.created,
        "end_user": record.user,  # the column's name ("user" is reserved in PostgreSQL)
        "model": record.model,
        "kind": record.kind,
        "messages": record.messages,
        "prompt": record.prompt,
        "text": record.text,
        "sampling": record.sampling,
        "steering": record.steering,
        "policy": record.policy,
        "summary": summary,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "latency_ms": record.latency_ms,
        "finish_reason": record.finish_reason,
        "ttft_ms": record.ttft_ms,
        "has_trace": record.tokens is not None,
    }
    emotions = [
        {"request_id": record.id, "emotion": emotion, "mean": stats["mean"],
         "max": stats["max"], "argmax_token": stats["argmax_token"]}
        for emotion, stats in summary.items()
    ]  # fmt: skip
    guardrails = [
        {"request_id": record.id, "seq": seq, "rule": event["rule"], "action": event["action"],
         "token_index": event["token_index"], "event": event}
        for seq, event in enumerate(record.guardrail_events)
    ]  # fmt: skip
    tokens = [
        {"request_id": record.id, "position": token["index"], "text": token["text"],
         "readouts": token["readouts"]}
        for token in record.tokens or ()
    ]  # fmt: skip
    return {RequestRow: [request], EmotionRow: emotions, GuardrailRow: guardrails,
            TokenRow: tokens}  # fmt: skip


def _summaries(session: Session, rows) -> list[dict]:
    ids = [row.id for row in rows]
    events: dict[str, list[dict]] = defaultdict(list)
    if ids:
        for request_id, event in session.execute(
            sa.select(GuardrailRow.request_id, GuardrailRow.event)
            .where(GuardrailRow.request_id.in_(ids))
            .order_by(GuardrailRow.seq)
        ):
            events[request_id].append(event)
    return [
        {
            "id": row.id,
            "created": row.created,
            "user": row.user,
            "model": row.model,
            "kind": row.kind,
            "finish_reason": row.finish_reason,
            "prompt_tokens": row.prompt_tokens,
            "completion_tokens": row.completion_tokens,
            "latency_ms": row.latency_ms,
            "ttft_ms": row.ttft_ms,
            "sampling": row.sampling,
            "steering": row.steering,
            "policy": row.policy,
            "summary": row.summary or {},
            "guardrail_events": events.get(row.id, []),
            "has_trace": bool(row.has_trace),
        }
        for row in rows
    ]


def _details(session: Session, rows) -> list[dict]:
    records = _summaries(session, rows)
    traced = [row.id for row in rows if row.has_trace]
    tokens: dict[str, list[dict]] = defaultdict(list)
    if traced:
        for token in session.scalars(
            sa.select(TokenRow)
            .where(TokenRow.request_id.in_(traced))
            .order_by(TokenRow.request_id, TokenRow.position)
        ):
            tokens[token.request_id].append(
                {"index": token.position, "text": token.text, "readouts": token.readouts}
            )
    for record, row in zip(records, rows, strict=True):
        record.update(
            messages=row.messages,
            prompt=row.prompt,
            text=row.text,
            tokens=tokens.get(row.id, []) if row.has_trace else None,
        )
    return records
