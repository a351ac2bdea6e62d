"""``nowramp-auth audit``: recent audit events, newest first (control characters escaped)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from .._clock import utc_now
from .._durations import parse_duration
from .._models import AuditEvent
from ._common import UsageError, audit_log, open_store, table

__all__ = ["register"]


def register(top: Any) -> None:
    """Add the ``audit`` command."""
    audit = top.add_parser("audit", help="recent audit events (newest first)")
    audit.add_argument("--key", dest="key_id")
    audit.add_argument("--type", dest="event_type")
    audit.add_argument("--since", help="e.g. 1h, 7d")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--json", action="store_true")

    audit.set_defaults(run=_audit)


def _event_rows(events: Sequence[AuditEvent]) -> str:
    rows = [
        [
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.type,
            e.key_id or "-",
            e.code or "-",
            e.client_ip or "-",
            f"{e.method or ''} {e.path or ''}".strip() or "-",
            e.actor or "-",
        ]
        for e in events
    ]
    return table(["TIME", "TYPE", "KEY", "CODE", "CLIENT", "REQUEST", "ACTOR"], rows)


def _audit(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    store = open_store(args)
    try:
        since = utc_now() - parse_duration(args.since) if args.since else None
        events = audit_log(store).read(
            key_id=args.key_id, type=args.event_type, since=since, limit=args.limit
        )
    finally:
        store.close()
    if args.json:
        print(json.dumps([e.to_dict() for e in events], indent=2))
    else:
        print(_event_rows(events) if events else "No events.")
    return 0
