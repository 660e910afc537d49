"""The audit store's tables (SQLAlchemy 2.x models) and the steps that upgrade older stores.

One row per served request in ``audit_requests``; its per-emotion summary is also written to
``audit_request_emotions`` (one row per emotion, indexed on emotion and max) so that "emotion X
peaked above v" is a SQL query; guardrail firings go to ``audit_guardrail_events`` (indexed on
the rule) and the optional per-token trace to ``audit_tokens``.

``audit_schema_version`` holds one row, the schema version the store was last written with. A
new store is created at :data:`SCHEMA_VERSION`; an older one is upgraded by running the
:data:`MIGRATIONS` from its version on, in one transaction, so a failed upgrade leaves it as it
was. A step never imports the current models: it spells out the tables as they were at its
version, so later changes to the models cannot change what an old step does.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 2

_JSON = sa.JSON(none_as_null=True)


class Base(DeclarativeBase):
    """The audit store's declarative base (its own metadata, nothing else shares it)."""


class SchemaVersion(Base):
    __tablename__ = "audit_schema_version"

    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)


class RequestRow(Base):
    """One served request, written when it finished (or the client left)."""

    __tablename__ = "audit_requests"

    id: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    created: Mapped[float] = mapped_column(sa.Double, index=True)
    user: Mapped[str | None] = mapped_column("end_user", sa.String(256), index=True)
    model: Mapped[str] = mapped_column(sa.String(256))
    kind: Mapped[str] = mapped_column(sa.String(8))
    messages: Mapped[list | None] = mapped_column(_JSON)
    prompt: Mapped[str | None] = mapped_column(sa.Text)
    text: Mapped[str] = mapped_column(sa.Text)
    sampling: Mapped[dict] = mapped_column(_JSON)
    steering: Mapped[dict | None] = mapped_column(_JSON)
    policy: Mapped[str | None] = mapped_column(sa.String(256))
    summary: Mapped[dict] = mapped_column(_JSON)
    prompt_tokens: Mapped[int | None] = mapped_column(sa.Integer)
    completion_tokens: Mapped[int] = mapped_column(sa.Integer)
    latency_ms: Mapped[float] = mapped_column(sa.Double)
    finish_reason: Mapped[str] = mapped_column(sa.String(32))
    ttft_ms: Mapped[float | None] = mapped_column(sa.Double)
    has_trace: Mapped[bool] = mapped_column(sa.Boolean)


class EmotionRow(Base):
    """One emotion's summary over one reply: the index behind the emotion filter."""

    __tablename__ = "audit_request_emotions"
    __table_args__ = (sa.Index("ix_audit_request_emotions_emotion_max", "emotion", "max"),)

    request_id: Mapped[str] = mapped_column(
        sa.String(80), sa.ForeignKey("audit_requests.id", ondelete="CASCADE"), primary_key=True
    )
    emotion: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    mean: Mapped[float] = mapped_column(sa.Double)
    max: Mapped[float] = mapped_column(sa.Double)
    argmax_token: Mapped[int] = mapped_column(sa.Integer)


class GuardrailRow(Base):
    """One guardrail firing of one request (``event`` is ``GuardrailEvent.to_dict()``)."""

    __tablename__ = "audit_guardrail_events"

    request_id: Mapped[str] = mapped_column(
        sa.String(80), sa.ForeignKey("audit_requests.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    rule: Mapped[str] = mapped_column(sa.String(256), index=True)
    action: Mapped[str] = mapped_column(sa.String(32))
    token_index: Mapped[int] = mapped_column(sa.Integer)
    event: Mapped[dict] = mapped_column(_JSON)


class TokenRow(Base):
    """One reply token of a traced request: its text and readouts."""

    __tablename__ = "audit_tokens"

    request_id: Mapped[str] = mapped_column(
        sa.String(80), sa.ForeignKey("audit_requests.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    text: Mapped[str] = mapped_column(sa.Text)
    readouts: Mapped[dict | None] = mapped_column(_JSON)


def _add_column(
    conn: Connection, table: str, column: str, type_: sa.types.TypeEngine, suffix: str = ""
) -> None:
    kind = type_.compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {kind} {suffix}".rstrip()))


def _v1_to_v2(conn: Connection) -> None:
    """v2: time to first token, a has-trace flag, and the emotion and guardrail tables.

    v1 kept the guardrail events as a JSON list on the request row and the emotion summary
    only as JSON, so filtering on either meant reading every row. The step backfills the two
    new tables from that JSON, then drops the old column.
    """
    _add_column(conn, "audit_requests", "ttft_ms", sa.Double())
    _add_column(conn, "audit_requests", "has_trace", sa.Boolean(), "NOT NULL DEFAULT FALSE")
    conn.execute(
        sa.text(
            "UPDATE audit_requests SET has_trace = TRUE WHERE EXISTS "
            "(SELECT 1 FROM audit_tokens WHERE audit_tokens.request_id = audit_requests.id)"
        )
    )
    conn.execute(sa.text("CREATE INDEX ix_audit_requests_end_user ON audit_requests (end_user)"))
    metadata = sa.MetaData()
    # the request table as far as the new tables' foreign keys need it (not created here)
    sa.Table("audit_requests", metadata, sa.Column("id", sa.String(80), primary_key=True))
    emotions = sa.Table(
        "audit_request_emotions",
        metadata,
        sa.Column(
            "request_id",
            sa.String(80),
            sa.ForeignKey("audit_requests.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("emotion", sa.String(128), primary_key=True),
        sa.Column("mean", sa.Double),
        sa.Column("max", sa.Double),
        sa.Column("argmax_token", sa.Integer),
        sa.Index("ix_audit_request_emotions_emotion_max", "emotion", "max"),
    )
    guardrails = sa.Table(
        "audit_guardrail_events",
        metadata,
        sa.Column(
            "request_id",
            sa.String(80),
            sa.ForeignKey("audit_requests.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("rule", sa.String(256), index=True),
        sa.Column("action", sa.String(32)),
        sa.Column("token_index", sa.Integer),
        sa.Column("event", _JSON),
    )
    emotions.create(conn)
    guardrails.create(conn)
    old = sa.table(
        "audit_requests",
        sa.column("id"),
        sa.column("summary", _JSON),
        sa.column("guardrail_events", _JSON),
    )
    rows = conn.execute(sa.select(old.c.id, old.c.summary, old.c.guardrail_events)).all()
    emotion_rows = [
        {
            "request_id": ident,
            "emotion": emotion,
            "mean": stats["mean"],
            "max": stats["max"],
            "argmax_token": stats["argmax_token"],
        }
        for ident, summary, _ in rows
        for emotion, stats in (summary or {}).items()
    ]
    guardrail_rows = [
        {
            "request_id": ident,
            "seq": seq,
            "rule": event["rule"],
            "action": event["action"],
            "token_index": event["token_index"],
            "event": event,
        }
        for ident, _, events in rows
        for seq, event in enumerate(events or [])
    ]
    if emotion_rows:
        conn.execute(emotions.insert(), emotion_rows)
    if guardrail_rows:
        conn.execute(guardrails.insert(), guardrail_rows)
    conn.execute(sa.text("ALTER TABLE audit_requests DROP COLUMN guardrail_events"))


MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [
    (2, _v1_to_v2),
]
"""``(version reached, step)`` in order; each step upgrades a store from the version before."""

_ALL_TABLES = {table.name for table in Base.metadata.sorted_tables}


class SchemaError(Exception):
    """A database that is not an affectlens audit store, or one newer than this code."""


def migrate(conn: Connection) -> tuple[int | None, int]:
    """Create the store, or upgrade it to :data:`SCHEMA_VERSION`; ``(version found, now)``.

    The version found is ``None`` for a new store. Runs inside the caller's transaction.
    """
    tables = set(sa.inspect(conn).get_table_names())
    if SchemaVersion.__tablename__ not in tables:
        if tables & _ALL_TABLES:
            raise SchemaError("has audit tables but no audit_schema_version table")
        Base.metadata.create_all(conn)
        conn.execute(sa.insert(SchemaVersion).values(version=SCHEMA_VERSION))
        return None, SCHEMA_VERSION
    found = conn.execute(sa.select(sa.func.max(SchemaVersion.version))).scalar()
    if found is None:
        raise SchemaError("its audit_schema_version table is empty")
    if found > SCHEMA_VERSION:
        raise SchemaError(
            f"was written by a newer affectlens (schema v{found}; this one "
            f"reads up to v{SCHEMA_VERSION}): upgrade affectlens"
        )
    for reached, step in MIGRATIONS:
        if reached > found:
            step(conn)
    if found < SCHEMA_VERSION:
        conn.execute(sa.delete(SchemaVersion))
        conn.execute(sa.insert(SchemaVersion).values(version=SCHEMA_VERSION))
    return found, SCHEMA_VERSION
