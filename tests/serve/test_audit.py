"""The audit store: a real server on loopback records every request; the API, the CLI, the
schema migration and the background writer read and write a real SQLite or PostgreSQL database.

The PostgreSQL runs need ``AFFECTLENS_TEST_POSTGRES_URL`` (``.ci/run`` starts a server and sets
it); each test then gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import sqlite3
import time
import uuid
from datetime import datetime, timezone

import httpx
import openai
import pytest
import sqlalchemy as sa

from affectlens.cli import main
from affectlens.engine import Engine
from affectlens.errors import AffectlensError
from affectlens.guardrails import GuardrailPolicy
from affectlens.serve.app import ServerSettings, create_app
from affectlens.serve.audit import AuditRecord, AuditStore, RequestFilter, database_url
from affectlens.serve.audit_schema import SCHEMA_VERSION
from conftest import build_emotion_vectors, build_loaded
from live_server import free_port, uvicorn_serving

KEY = "audit-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ALWAYS = {
    "name": "always",
    "units": "raw",
    "rules": [
        {"name": "any-afraid", "when": {"emotion": "afraid", "above": -1e6}, "action": "flag"}
    ],
}
MESSAGES = [{"role": "user", "content": "Tell me about the sea."}]
POSTGRES = os.environ.get("AFFECTLENS_TEST_POSTGRES_URL")
BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            not POSTGRES, reason="AFFECTLENS_TEST_POSTGRES_URL is not set (no PostgreSQL)"
        ),
    ),
]


@contextlib.contextmanager
def fresh_database(backend: str, folder):
    """The URL of an empty database: a new SQLite file, or a new PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'audit-{uuid.uuid4().hex[:8]}.sqlite'}"
        return
    admin_url = database_url(POSTGRES)
    name = f"affectlens_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def serving(store: AuditStore | None):
    """The tiny model served on loopback with ``store``; yields (base URL, app, engine)."""
    model = build_loaded("llama", 3)
    vectors = build_emotion_vectors(model)
    engine = Engine(model, vectors).start()
    settings = ServerSettings(
        model_name="tiny", api_key=KEY, units="raw",
        policies={"always": GuardrailPolicy.from_dict(ALWAYS)}, metric_emotions=("afraid",),
    )  # fmt: skip
    app = create_app(engine, vectors, settings, store)
    try:
        with uvicorn_serving(app) as url:
            yield url, app, engine, vectors
    finally:
        engine.close()


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, tmp_path_factory):
    with fresh_database(request.param, tmp_path_factory.mktemp("audit")) as url:
        store = AuditStore(url)
        with serving(store) as (base, app, engine, vectors):
            yield base, store, engine, vectors
        store.close()


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key=KEY, max_retries=0)


def api(server, path: str, **params):
    response = httpx.get(server[0] + path, params=params, headers=AUTH, timeout=30)
    return response.status_code, response.json()


def recorded(server, ident: str) -> dict:
    server[1].flush()
    status, body = api(server, f"/v1/affectlens/requests/{ident}")
    assert status == 200, body
    return body


def test_a_non_streamed_chat_is_recorded_with_its_settings_and_telemetry(client, server):
    vectors = server[3]
    reply = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=6, temperature=0, seed=3, user="alice",
        extra_body={"affectlens": {"steer": {"calm": 0.2}, "guardrail": "always"}},
    )  # fmt: skip
    extension = reply.model_extra["affectlens"]
    record = recorded(server, reply.id)
    assert reply.id.startswith("chatcmpl-") and record["id"] == reply.id
    assert abs(record["created"] - time.time()) < 60
    assert (record["user"], record["model"], record["kind"]) == ("alice", "tiny", "chat")
    assert record["messages"] == MESSAGES and record["prompt"] is None
    assert record["text"] == reply.choices[0].message.content
    assert record["finish_reason"] == reply.choices[0].finish_reason
    assert record["sampling"] == {"max_tokens": 6, "temperature": 0.0, "top_p": 1.0, "seed": 3,
                                  "stop": []}  # fmt: skip
    assert record["steering"] == {"alphas": {"calm": 0.2}, "layers": [vectors.default_layer],
                                  "positions": "all"}  # fmt: skip
    assert record["policy"] == "always"
    assert record["summary"] == extension["summary"] and set(record["summary"]) == set(
        vectors.emotions
    )
    assert record["guardrail_events"] == extension["guardrail_events"]
    assert record["guardrail_events"][0]["rule"] == "any-afraid"
    assert record["prompt_tokens"] == reply.usage.prompt_tokens
    assert record["completion_tokens"] == reply.usage.completion_tokens
    assert 0 < record["ttft_ms"] <= record["latency_ms"]
    assert record["has_trace"] is False and record["tokens"] is None


def test_a_streamed_text_completion_is_recorded(client, server):
    stream = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=5,
                                       temperature=0, stream=True, user="bob")  # fmt: skip
    chunks = list(stream)
    record = recorded(server, chunks[0].id)
    assert chunks[0].id.startswith("cmpl-")
    assert record["kind"] == "text" and record["prompt"] == "Once upon a time"
    assert record["messages"] is None and record["user"] == "bob"
    assert record["text"] == "".join(chunk.choices[0].text for chunk in chunks)
    assert record["finish_reason"] == chunks[-1].choices[0].finish_reason
    assert record["completion_tokens"] <= 5 and record["prompt_tokens"] > 0
    assert record["steering"] is None and record["policy"] is None
    assert record["summary"]  # read for the store although the request asked no telemetry


def test_a_plain_request_stays_plain_for_the_client(client, server):
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=3)
    assert "affectlens" not in reply.model_dump()
    assert recorded(server, reply.id)["summary"]


def _ask(client, user: str, steer: dict | None = None, guardrail: str | None = None) -> str:
    options: dict = {"telemetry": "summary"}
    if steer:
        options["steer"] = steer
    if guardrail:
        options["guardrail"] = guardrail
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4,
                                           temperature=0, user=user,
                                           extra_body={"affectlens": options})  # fmt: skip
    return reply.id


def ids(server, **params) -> list[str]:
    status, body = api(server, "/v1/affectlens/requests", **params)
    assert status == 200, body
    assert body["object"] == "list" and body["total"] >= len(body["data"])
    return [record["id"] for record in body["data"]]


def test_filters_select_the_right_rows(client, server):
    user = f"filters-{uuid.uuid4().hex[:6]}"
    first = _ask(client, user, {"calm": -0.6})
    time.sleep(0.05)
    second = _ask(client, user, {"calm": 0.6}, guardrail="always")
    time.sleep(0.05)
    third = _ask(client, user)
    server[1].flush()
    newest_first = [third, second, first]
    assert ids(server, user=user) == newest_first
    assert ids(server, user="nobody-" + user) == []

    records = {ident: recorded(server, ident) for ident in newest_first}
    peaks = {ident: record["summary"]["calm"]["max"] for ident, record in records.items()}
    assert len(set(peaks.values())) == 3
    for threshold in sorted(peaks.values()):
        for value in (threshold - 1e-6, threshold):  # just below a peak, and exactly at it
            expected = [ident for ident in newest_first if peaks[ident] > value]
            assert ids(server, user=user, emotion="calm", above=value) == expected

    assert ids(server, user=user, guardrail="true") == [second]
    assert ids(server, user=user, guardrail="any-afraid") == [second]
    assert ids(server, user=user, guardrail="no-such-rule") == []
    assert ids(server, user=user, guardrail="false") == [third, first]

    since = records[second]["created"]
    assert ids(server, user=user, since=since) == [third, second]
    assert ids(server, user=user, until=since) == [first]
    moment = datetime.fromtimestamp(math.floor(since * 1000) / 1000, tz=timezone.utc)
    iso = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")  # 50 ms after first
    assert ids(server, user=user, since=iso) == [third, second]

    status, page = api(server, "/v1/affectlens/requests", user=user, limit=1, offset=1)
    assert [r["id"] for r in page["data"]] == [second]
    assert (page["total"], page["limit"], page["offset"]) == (3, 1, 1)
    summary_keys = {"id", "created", "user", "model", "kind", "finish_reason", "prompt_tokens",
                    "completion_tokens", "latency_ms", "ttft_ms", "sampling", "steering",
                    "policy", "summary", "guardrail_events", "has_trace"}  # fmt: skip
    assert set(page["data"][0]) == summary_keys


def test_a_client_that_disconnects_mid_stream_is_still_recorded(server):
    body = {"messages": MESSAGES, "max_tokens": 2000, "stream": True, "user": "leaver"}
    url = server[0] + "/v1/chat/completions"
    with httpx.stream("POST", url, headers=AUTH, json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content": "' in line and '"content": ""' not in line:
                ident = json.loads(line[6:])["id"]
                break
    deadline = time.time() + 30
    while True:
        server[1].flush()
        status, record = api(server, f"/v1/affectlens/requests/{ident}")
        if status == 200:
            break
        assert time.time() < deadline, "the disconnected request was never recorded"
        time.sleep(0.1)
    assert record["finish_reason"] == "disconnected" and record["user"] == "leaver"
    assert 1 <= record["completion_tokens"] < 2000 and record["prompt_tokens"] is None
    assert record["text"]


def test_traces_are_stored_only_when_asked(client, server):
    store = server[1]
    extra = {"affectlens": {"telemetry": "tokens", "emotions": ["calm", "afraid"]}}
    stream = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=5,
                                            temperature=0, stream=True,
                                            extra_body=extra)  # fmt: skip
    chunks = [chunk.model_dump() for chunk in stream]
    streamed = [c["affectlens"]["readouts"] for c in chunks
                if "readouts" in (c.get("affectlens") or {})]  # fmt: skip
    traced = recorded(server, chunks[0]["id"])
    assert traced["has_trace"] is True
    assert [token["readouts"] for token in traced["tokens"]] == streamed
    assert [token["index"] for token in traced["tokens"]] == list(range(len(streamed)))
    assert "".join(token["text"] for token in traced["tokens"]) == traced["text"]

    untraced = recorded(server, _ask(client, "untraced"))
    assert untraced["has_trace"] is False and untraced["tokens"] is None

    store.keep_traces = True  # what `serve --audit-traces` sets
    try:
        plain = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=3)
    finally:
        store.keep_traces = False
    record = recorded(server, plain.id)
    assert record["has_trace"] and len(record["tokens"]) == record["completion_tokens"]
    assert set(record["tokens"][0]["readouts"]) == set(server[3].emotions)


def test_traffic_buckets_and_distributions(client, server):
    user = f"traffic-{uuid.uuid4().hex[:6]}"
    _ask(client, user, guardrail="always")
    _ask(client, user)
    server[1].flush()
    status, traffic = api(server, "/v1/affectlens/traffic", minutes=5)
    assert status == 200
    assert traffic["minutes"] == 5 and len(traffic["buckets"]) == 5
    minutes = [bucket["minute"] for bucket in traffic["buckets"]]
    assert minutes == [int(traffic["since"]) + 60 * i for i in range(5)]
    assert minutes[-1] <= time.time() < minutes[-1] + 60
    window = server[1].list_requests(RequestFilter(since=traffic["since"]), limit=500)
    assert sum(bucket["requests"] for bucket in traffic["buckets"]) == window["total"]
    assert sum(b["completion_tokens"] for b in traffic["buckets"]) == sum(
        record["completion_tokens"] for record in window["data"]
    )
    firings = sum(len(r["guardrail_events"]) for r in window["data"])
    assert sum(b["guardrail"].get("any-afraid", 0) for b in traffic["buckets"]) == firings >= 1
    calm = sorted(r["summary"]["calm"]["max"] for r in window["data"] if "calm" in r["summary"])
    assert sorted(traffic["emotions"]["calm"]) == calm


@pytest.mark.parametrize(
    ("path", "params", "status", "param"),
    [
        ("/v1/affectlens/requests", {"since": "yesterday"}, 400, "since"),
        ("/v1/affectlens/requests", {"until": "2026-13-01"}, 400, "until"),
        ("/v1/affectlens/requests", {"limit": "0"}, 400, "limit"),
        ("/v1/affectlens/requests", {"limit": "501"}, 400, "limit"),
        ("/v1/affectlens/requests", {"offset": "-1"}, 400, "offset"),
        ("/v1/affectlens/requests", {"emotion": "calm"}, 400, "above"),
        ("/v1/affectlens/requests", {"above": "1"}, 400, "emotion"),
        ("/v1/affectlens/requests", {"emotion": "calm", "above": "high"}, 400, "above"),
        ("/v1/affectlens/requests", {"colour": "red"}, 400, "colour"),
        ("/v1/affectlens/traffic", {"minutes": "0"}, 400, "minutes"),
        ("/v1/affectlens/traffic", {"minutes": "many"}, 400, "minutes"),
        ("/v1/affectlens/requests/chatcmpl-nope", {}, 404, "id"),
    ],
)  # fmt: skip
def test_bad_queries_get_openai_shaped_errors(server, path, params, status, param):
    got, body = api(server, path, **params)
    assert got == status, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] == param


def test_the_audit_routes_need_the_api_key(server):
    response = httpx.get(server[0] + "/v1/affectlens/requests")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_a_server_without_a_store_says_so():
    with serving(None) as (base, _app, _engine, _vectors):
        response = httpx.get(base + "/v1/affectlens/requests", headers=AUTH)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "audit_disabled"


def test_a_locked_database_neither_blocks_streaming_nor_grows_the_queue(tmp_path):
    path = tmp_path / "locked.sqlite"
    store = AuditStore(path, queue_size=1)
    with serving(store) as (base, app, _engine, _vectors):
        client = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0)
        lock = sqlite3.connect(path, isolation_level=None, timeout=0)
        lock.execute("BEGIN EXCLUSIVE")  # the writer thread now waits on the database
        try:
            first = _ask(client, "locked")
            deadline = time.time() + 10
            while store._queue.qsize():  # the writer has taken the first record and waits
                assert time.time() < deadline
                time.sleep(0.01)
            later = []
            for _ in range(3):
                stream = client.chat.completions.create(
                    model="tiny", messages=MESSAGES, max_tokens=4, stream=True, user="locked"
                )
                later.append([chunk.id for chunk in stream][0])  # streams to the end
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        store.flush()
        metrics = httpx.get(base + "/metrics").text
    store.close()
    assert store.dropped == 2  # one record queued behind the waiting one, two dropped
    assert "affectlens_audit_dropped_total 2.0" in metrics
    with AuditStore(path, create=False) as reader:
        kept = [r["id"] for r in reader.list_requests(RequestFilter(user="locked"))["data"]]
    assert sorted(kept) == sorted([first, later[0]])


def _record(ident: str, created: float, **fields) -> AuditRecord:
    readouts = [{"calm": 0.5, "afraid": -1.0}, {"calm": 1.5, "afraid": -2.0}]
    values = dict(model="tiny", kind="chat", text="hi", finish_reason="stop",
                  completion_tokens=2, latency_ms=12.5, messages=MESSAGES,
                  readouts=readouts)  # fmt: skip
    values.update(fields)
    return AuditRecord(id=ident, created=created, **values)


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    with fresh_database(request.param, tmp_path) as url:
        yield url


def test_closing_the_store_writes_what_is_queued(db_url):
    store = AuditStore(db_url)
    for i in range(20):
        assert store.submit(_record(f"chatcmpl-{i}", 1000.0 + i))
    store.close()
    with AuditStore(db_url, create=False) as reader:
        assert reader.list_requests(limit=500)["total"] == 20


def test_nul_characters_are_stored_as_replacement_characters(db_url):
    """A NUL in the reply, a message, the user or a token must not cost the record."""
    record = _record("chatcmpl-nul", 1000.0, text="a\x00b", user="u\x00",
                     messages=[{"role": "user", "content": "x\x00y"}],
                     tokens=[{"index": 0, "text": "\x00", "readouts": {"calm": 0.5}}])  # fmt: skip
    with AuditStore(db_url) as store:
        store.write([record])
        stored = store.get_request("chatcmpl-nul")
    assert stored["text"] == "a\ufffdb" and stored["user"] == "u\ufffd"
    assert stored["messages"] == [{"role": "user", "content": "x\ufffdy"}]
    assert [token["text"] for token in stored["tokens"]] == ["\ufffd"]


def _v1_store(url: str) -> None:
    """The schema an older affectlens wrote (v1), made by hand, with two requests in it."""
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    json_type = sa.JSON(none_as_null=True)
    sa.Table("audit_schema_version", metadata, sa.Column("version", sa.Integer, primary_key=True))
    requests = sa.Table(
        "audit_requests", metadata,
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("created", sa.Double, index=True), sa.Column("end_user", sa.String(256)),
        sa.Column("model", sa.String(256)), sa.Column("kind", sa.String(8)),
        sa.Column("messages", json_type), sa.Column("prompt", sa.Text),
        sa.Column("text", sa.Text), sa.Column("sampling", json_type),
        sa.Column("steering", json_type), sa.Column("policy", sa.String(256)),
        sa.Column("summary", json_type), sa.Column("guardrail_events", json_type),
        sa.Column("prompt_tokens", sa.Integer), sa.Column("completion_tokens", sa.Integer),
        sa.Column("latency_ms", sa.Double), sa.Column("finish_reason", sa.String(32)),
    )  # fmt: skip
    tokens = sa.Table(
        "audit_tokens", metadata,
        sa.Column("request_id", sa.String(80), sa.ForeignKey("audit_requests.id"),
                  primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("text", sa.Text), sa.Column("readouts", json_type),
    )  # fmt: skip
    event = {"rule": "any-afraid", "action": "flag", "token_index": 1,
             "values": {"afraid": 2.5}, "shadow": False, "detail": {}}  # fmt: skip
    common = dict(model="tiny", kind="chat", messages=MESSAGES, prompt=None,
                  sampling={"max_tokens": 4}, steering=None, prompt_tokens=9,
                  completion_tokens=2, latency_ms=30.0, finish_reason="stop")  # fmt: skip
    with engine.begin() as conn:
        metadata.create_all(conn)
        conn.execute(sa.text("INSERT INTO audit_schema_version (version) VALUES (1)"))
        conn.execute(requests.insert(), [
            dict(common, id="chatcmpl-old1", created=100.0, end_user="ann", text="ab",
                 policy="always", guardrail_events=[event],
                 summary={"calm": {"mean": 0.2, "max": 0.9, "argmax_token": 1}}),
            dict(common, id="chatcmpl-old2", created=200.0, end_user="ben", text="cd",
                 policy=None, guardrail_events=[],
                 summary={"calm": {"mean": 0.1, "max": 0.3, "argmax_token": 0}}),
        ])  # fmt: skip
        conn.execute(tokens.insert(), [
            {"request_id": "chatcmpl-old2", "position": 0, "text": "c", "readouts": {"calm": 0.3}},
            {"request_id": "chatcmpl-old2", "position": 1, "text": "d", "readouts": {"calm": 0.0}},
        ])  # fmt: skip
    engine.dispose()


def _layout(url: str) -> dict:
    engine = sa.create_engine(url)
    inspector = sa.inspect(engine)
    layout = {
        table: (
            sorted(column["name"] for column in inspector.get_columns(table)),
            sorted(tuple(index["column_names"]) for index in inspector.get_indexes(table)),
        )
        for table in inspector.get_table_names()
    }
    engine.dispose()
    return layout


def test_a_v1_store_is_upgraded_when_opened(db_url, tmp_path, caplog):
    _v1_store(db_url)
    with caplog.at_level("INFO", logger="affectlens"), AuditStore(db_url) as store:
        assert store.schema_version == SCHEMA_VERSION == 2
        old1, old2 = store.get_request("chatcmpl-old1"), store.get_request("chatcmpl-old2")
        assert old1["guardrail_events"][0]["rule"] == "any-afraid" and old1["user"] == "ann"
        assert old1["ttft_ms"] is None and old1["has_trace"] is False and old1["tokens"] is None
        assert old2["has_trace"] is True and [t["text"] for t in old2["tokens"]] == ["c", "d"]

        def ids_of(**where) -> list[str]:
            return [r["id"] for r in store.list_requests(RequestFilter(**where))["data"]]

        assert ids_of(emotion="calm", above=0.5) == ["chatcmpl-old1"]
        assert ids_of(guardrail=True) == ["chatcmpl-old1"]
        assert ids_of(guardrail=False) == ["chatcmpl-old2"]
        store.write([_record("chatcmpl-new", 300.0, user="ann", ttft_ms=4.0)])
        assert ids_of(user="ann") == ["chatcmpl-new", "chatcmpl-old1"]
    assert "upgraded from schema v1 to v2" in caplog.text
    with fresh_database("sqlite" if db_url.startswith("sqlite") else "postgresql",
                        tmp_path) as fresh_url:  # fmt: skip
        AuditStore(fresh_url).close()
        assert _layout(db_url) == _layout(fresh_url)  # upgraded = created new
    with AuditStore(db_url) as again:  # a second open finds v2 and changes nothing
        assert again.get_request("chatcmpl-old1")["guardrail_events"] == old1["guardrail_events"]


def test_a_store_from_a_newer_affectlens_is_refused(db_url):
    AuditStore(db_url).close()
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_schema_version SET version = 99"))
    engine.dispose()
    with pytest.raises(AffectlensError, match="newer affectlens.*v99"):
        AuditStore(db_url)


@pytest.fixture
def filled(db_url):
    with AuditStore(db_url) as store:
        event = {"rule": "any-afraid", "action": "flag", "token_index": 0, "values": {},
                 "shadow": False, "detail": {}}  # fmt: skip
        store.write([
            _record("chatcmpl-a", 1000.0, user="ann", text='say "hi",\tthere'),
            _record("cmpl-b", 2000.0, user="ben", kind="text", messages=None, prompt="Once",
                    guardrail_events=[event],
                    tokens=[{"index": 0, "text": "O", "readouts": {"calm": 0.5}}]),
            _record("chatcmpl-c", 3000.0, user="ann", readouts=[{"calm": 3.0}]),
        ])  # fmt: skip
    return db_url


def test_audit_list_filters_and_prints_tab_separated_lines(filled, capsys):
    assert main(["audit", "list", "--db", filled]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t")[:2] == ["created", "id"]
    assert [line.split("\t")[1] for line in lines[1:]] == ["chatcmpl-c", "cmpl-b", "chatcmpl-a"]
    assert main(["audit", "list", "--db", filled, "--user", "ann", "--emotion", "calm",
                 "--above", "2", "--since", "1970-01-01T00:16:00Z"]) == 0  # fmt: skip
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split("\t")[1] for row in rows] == ["chatcmpl-c"]
    assert main(["audit", "list", "--db", filled, "--guardrail", "true"]) == 0
    [row] = capsys.readouterr().out.splitlines()[1:]
    assert row.split("\t")[1] == "cmpl-b" and row.split("\t")[-1] == "any-afraid"


def test_audit_show_prints_the_record_as_json(filled, capsys):
    assert main(["audit", "show", "--db", filled, "cmpl-b"]) == 0
    shown = json.loads(capsys.readouterr().out)
    with AuditStore(filled, create=False) as store:
        assert shown == store.get_request("cmpl-b")
    assert shown["prompt"] == "Once" and shown["tokens"][0]["text"] == "O"
    assert main(["audit", "show", "--db", filled, "cmpl-zzz"]) == 2
    assert capsys.readouterr().err.strip() == "error: no request 'cmpl-zzz' in the audit store"


def test_audit_export_csv_and_jsonl(filled, tmp_path, capsys):
    out = tmp_path / "out" / "audit.csv"
    assert main(["audit", "export", "--db", filled, "--format", "csv", "--out", str(out),
                 "--user", "ann"]) == 0  # fmt: skip
    rows = list(csv.DictReader(out.open(newline="", encoding="utf-8")))
    assert [row["id"] for row in rows] == ["chatcmpl-c", "chatcmpl-a"]
    assert rows[1]["text"] == 'say "hi",\tthere' and rows[1]["user"] == "ann"
    assert json.loads(rows[1]["summary"])["calm"]["max"] == 1.5
    assert json.loads(rows[1]["messages"]) == MESSAGES and rows[1]["prompt"] == ""
    jsonl = tmp_path / "audit.jsonl"
    assert main(["audit", "export", "--db", filled, "--format", "jsonl", "--out", str(jsonl)]) == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    with AuditStore(filled, create=False) as store:
        assert records == [store.get_request(i) for i in ("chatcmpl-c", "cmpl-b", "chatcmpl-a")]
    assert not list(tmp_path.rglob("*.partial"))
    capsys.readouterr()


def test_audit_export_refuses_an_unwritable_path_in_one_line(filled, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / "audit.csv"
    assert main(["audit", "export", "--db", filled, "--format", "csv", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --out") and "not a folder" in err


def test_audit_commands_refuse_a_missing_store_in_one_line(tmp_path, capsys):
    missing = tmp_path / "none.sqlite"
    assert main(["audit", "list", "--db", str(missing)]) == 2
    assert capsys.readouterr().err == f"error: no audit store at {missing}\n"
    assert not missing.exists()


def test_serve_names_its_default_store_next_to_the_vectors():
    from affectlens.cli.serve_cmd import audit_location

    assert audit_location(None, "runs/default/vectors.safetensors") == (
        "runs/default/vectors.audit.sqlite"
    )
    assert audit_location("none", "v.safetensors") is None
    assert audit_location("postgresql+psycopg://u:p@h/db", "v.safetensors").startswith("postgres")


def test_serve_refuses_an_unreachable_database_in_one_line_with_the_password_masked(
    tmp_path, capsys
):
    vectors = build_emotion_vectors(build_loaded("llama", 2)).save(tmp_path / "v.safetensors")
    url = f"postgresql://auditor:s3cret@127.0.0.1:{free_port()}/audit"
    assert main(["serve", "--vectors", str(vectors), "--db", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: cannot open the audit store")
    assert "postgresql+psycopg://auditor:***@127.0.0.1" in err and "s3cret" not in err
