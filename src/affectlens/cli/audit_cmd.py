"""``affectlens audit list|show|export``: read the requests a server recorded in its audit store.

The filters are the HTTP API's (``GET /v1/affectlens/requests``) and go through the same store
query functions, so the command line and the dashboard see the same rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from affectlens.errors import AffectlensError

CSV_COLUMNS = (
    "id", "created", "user", "model", "kind", "finish_reason", "prompt_tokens",
    "completion_tokens", "latency_ms", "ttft_ms", "policy", "has_trace", "sampling", "steering",
    "summary", "guardrail_events", "messages", "prompt", "text",
)  # fmt: skip
"""The CSV export's columns; nested values are JSON text, the token trace is left out."""

_LIST_COLUMNS = ("created", "id", "user", "kind", "finish", "tokens", "ms", "guardrail")


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``audit`` command group."""
    audit = commands.add_parser("audit", help="list, show or export the requests a server served")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="recorded requests, newest first")
    _add_db(listing)
    _add_filters(listing)
    listing.add_argument("--limit", type=int, default=50, help="rows at most (1-500)")
    listing.add_argument("--offset", type=int, default=0, help="rows to skip")
    listing.set_defaults(handler=_list)

    show = actions.add_parser("show", help="one request in full, as JSON")
    _add_db(show)
    show.add_argument("id", help="the response id (chatcmpl-... or cmpl-...)")
    show.set_defaults(handler=_show)

    export = actions.add_parser("export", help="every matching request to a CSV or JSONL file")
    _add_db(export)
    _add_filters(export)
    export.add_argument("--format", choices=("csv", "jsonl"), required=True, help="file format")
    export.add_argument("--out", type=Path, required=True, help="file to write")
    export.set_defaults(handler=_export)


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        required=True,
        metavar="URL",
        help="the server's audit store: a SQLAlchemy URL or a SQLite file",
    )


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", help="ISO-8601 time or epoch seconds, inclusive (default: no lower bound)"
    )
    parser.add_argument(
        "--until", help="ISO-8601 time or epoch seconds, exclusive (default: no upper bound)"
    )
    parser.add_argument("--user", help="only the requests with this user field (default: all)")
    parser.add_argument(
        "--emotion", help="with --above: only replies where this emotion's max... (default: any)"
    )
    parser.add_argument("--above", help="...is above this value (default: no emotion filter)")
    parser.add_argument(
        "--guardrail",
        help="true (any firing), false (none) or a rule name (default: with or without)",
    )


def _filter(args: argparse.Namespace):
    from affectlens.serve.audit import RequestFilter

    keys = ("since", "until", "user", "emotion", "above", "guardrail")
    return RequestFilter.parse({key: getattr(args, key) for key in keys})


def _open(args: argparse.Namespace):
    from affectlens.serve.audit import AuditStore

    return AuditStore(args.db, create=False)


def _when(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _row(record: dict) -> list[str]:
    rules = sorted({event["rule"] for event in record["guardrail_events"]})
    prompt = "?" if record["prompt_tokens"] is None else str(record["prompt_tokens"])
    return [
        _when(record["created"]),
        record["id"],
        record["user"] or "",
        record["kind"],
        record["finish_reason"],
        f"{prompt}+{record['completion_tokens']}",
        f"{record['latency_ms']:.0f}",
        ",".join(rules),
    ]


def _list(args: argparse.Namespace) -> int:
    from affectlens.serve.audit import parse_page

    where = _filter(args)
    limit, offset = parse_page(args.limit, args.offset)
    with _open(args) as store:
        page = store.list_requests(where, limit, offset)
    rows = [_row(record) for record in page["data"]]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(caption=f"{len(rows)} of {page['total']} (offset {offset})")
        for column in _LIST_COLUMNS:
            table.add_column(column, justify="right" if column in ("tokens", "ms") else "left")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
    else:
        print("\t".join(_LIST_COLUMNS))
        for row in rows:
            print("\t".join(cell.replace("\t", " ") for cell in row))
    return 0


def _show(args: argparse.Namespace) -> int:
    with _open(args) as store:
        record = store.get_request(args.id)
    if record is None:
        raise AffectlensError(f"no request {args.id!r} in the audit store")
    print(json.dumps(record, indent=2, ensure_ascii=False))
    return 0


def _export(args: argparse.Namespace) -> int:
    from affectlens.atomic_files import atomic_writer, json_safe
    from affectlens.cli.options import check_writable

    check_writable(args.out, "--out")
    where = _filter(args)
    count = 0
    with _open(args) as store, atomic_writer(args.out, newline="") as handle:
        if args.format == "csv":
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
        for record in store.iter_requests(where):
            record = json_safe(record)
            if args.format == "jsonl":
                handle.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
            else:
                writer.writerow([_cell(record[column]) for column in CSV_COLUMNS])
            count += 1
    print(f"wrote {count} request(s) to {args.out}", file=sys.stderr)
    return 0


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list, bool)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
