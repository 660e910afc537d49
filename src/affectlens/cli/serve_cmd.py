"""``affectlens serve``: the OpenAI-compatible server over a model and its emotion vectors."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
from contextlib import nullcontext
from pathlib import Path

from affectlens.cli.options import add_model_option
from affectlens.cli.vector_options import load_fitting_model
from affectlens.engine import Engine, EngineConfig
from affectlens.errors import AffectlensError
from affectlens.guardrails import load_policy
from affectlens.vectors import EmotionVectors

log = logging.getLogger(__name__)
METRIC_EMOTIONS = ("afraid", "angry", "calm", "desperate", "frustrated", "happy", "sad")


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``serve`` command."""
    parser = commands.add_parser(
        "serve", help="serve the model over an OpenAI-compatible API with emotion telemetry"
    )
    parser.add_argument("--vectors", required=True, help="emotion vectors file (.safetensors)")
    add_model_option(parser, None)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=8000, help="port to bind")
    parser.add_argument(
        "--guardrail",
        action="append",
        metavar="POLICY",
        help="a guardrail policy file, loaded under its name; the first is the default for "
        "requests that name none (repeatable; default: no guardrail)",
    )
    parser.add_argument(
        "--api-key",
        help="require 'Authorization: Bearer KEY' on /v1 routes (default: no key; needed to "
        "bind a non-loopback address unless --insecure)",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback bind without --api-key"
    )
    parser.add_argument(
        "--max-batch-size", type=int, default=16, help="requests decoded together at most"
    )
    parser.add_argument(
        "--max-tokens-limit", type=int, default=2048, help="largest max_tokens a request may ask"
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        help="audit store: a SQLAlchemy URL (sqlite:///FILE, postgresql+psycopg://USER:PW@HOST/DB)"
        " or a SQLite file; 'none' records nothing (default: <vectors stem>.audit.sqlite next to"
        " the vectors file)",
    )
    parser.add_argument(
        "--audit-traces",
        action="store_true",
        help="store every request's per-token trace (default: only requests that ask "
        "telemetry 'tokens')",
    )
    parser.set_defaults(handler=_run)


def audit_location(db: str | None, vectors: str) -> str | None:
    """What ``--db`` names: ``None`` for 'none', else a URL or path (see :class:`AuditStore`)."""
    if db is None:
        path = Path(vectors).expanduser()
        return str(path.with_name(path.stem + ".audit.sqlite"))
    return None if db.strip().lower() == "none" else db


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1 or localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(
                ipaddress.ip_address(info[4][0]).is_loopback
                for info in socket.getaddrinfo(host, None)
            )
        except OSError:
            return False


def dashboard_url(host: str, port: int) -> str:
    """The address to open the dashboard at: a wildcard bind is reached on loopback."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from affectlens.serve.app import ServerSettings, create_app
    from affectlens.serve.audit import AuditStore
    from affectlens.web import mount_dashboard

    if not is_loopback(args.host) and not args.api_key and not args.insecure:
        raise AffectlensError(
            f"binding {args.host} exposes the model beyond this machine: pass --api-key KEY "
            "(or --insecure to serve without one)"
        )
    if not 1 <= args.port <= 65535:
        raise AffectlensError("--port must be in 1-65535")
    vectors = EmotionVectors.load(args.vectors)
    policies = {}
    for path in args.guardrail or []:
        policy = load_policy(path)
        policy.check(vectors.emotions)
        policies[policy.name] = policy
    where = audit_location(args.db, args.vectors)
    audit = AuditStore(where, keep_traces=args.audit_traces) if where is not None else None
    if audit is None:
        log.info("audit store: off (--db none)")
    else:
        log.info("audit store: %s", audit.location)
    model = load_fitting_model(args, vectors)
    engine = Engine(model, vectors, config=EngineConfig(max_batch_size=args.max_batch_size))
    settings = ServerSettings(
        model_name=model.name,
        api_key=args.api_key,
        units="z" if vectors.calibration else "raw",
        max_tokens_limit=args.max_tokens_limit,
        policies=policies,
        default_policy=next(iter(policies), None),
        metric_emotions=tuple(e for e in METRIC_EMOTIONS if e in vectors.emotions),
    )
    app = create_app(engine, vectors, settings, audit)
    mount_dashboard(app, args.vectors)
    with audit if audit is not None else nullcontext(), engine:  # the store closes last
        log.info("serving %s on http://%s:%d/v1", model.name, args.host, args.port)
        log.info("dashboard: open %s", dashboard_url(args.host, args.port))
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
