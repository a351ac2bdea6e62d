"""``nowramp-auth keys ...``: create, list, show, rotate, revoke and update keys.

Security model: the secret is printed once, by ``create`` and ``rotate``; listings never show
it. Every change is audited with actor ``cli``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from .._clock import utc_now
from .._durations import format_duration, parse_duration, parse_rate_limit
from .._limits import Credits, Refill
from .._manager import KeyManager
from .._models import IssuedKey, KeyRecord
from ._common import CLI_ACTOR, Parser, UsageError, audit_log, open_store, printable, table, when
from ._key_transfer import export_keys, import_keys

__all__ = ["register"]

_UNSET: Any = object()


def register(top: Any) -> None:
    """Add the ``keys`` command group."""
    keys = top.add_parser("keys", help="create, list, show, rotate, revoke, update keys")
    sub = keys.add_subparsers(dest="action", required=True, parser_class=Parser)
    create = sub.add_parser("create", help="create a key (prints it once)")
    create.add_argument("--type", dest="key_type", choices=["live", "test"], default="test")
    create.add_argument("--scope", dest="scopes", action="append", required=True, metavar="S")
    create.add_argument("--name", default="")
    create.add_argument("--project")
    create.add_argument("--credits", type=int, metavar="N", help="requests in all (e.g. a trial)")
    create.add_argument("--refill", metavar="N/EVERY", help="top credits up to N, e.g. 500/30d")
    _add_key_options(create)
    create.add_argument("--json", action="store_true")

    credits = sub.add_parser("credits", help="show a key's credits, or --add some")
    credits.add_argument("key_id")
    credits.add_argument("--add", type=int, metavar="N")

    listing = sub.add_parser("list", help="list keys (never shows a secret)")
    listing.add_argument("--project")
    listing.add_argument("--json", action="store_true")

    show = sub.add_parser("show", help="show one key")
    show.add_argument("key_id")
    show.add_argument("--json", action="store_true")

    rotate = sub.add_parser("rotate", help="issue a successor (prints it once)")
    rotate.add_argument("key_id")
    rotate.add_argument("--grace", default="24h", help="old key stays valid this long")
    rotate.add_argument("--json", action="store_true")

    revoke = sub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    revoke.add_argument("--json", action="store_true")

    sub.add_parser("export", help="every key as JSON lines on stdout (digests, never a secret)")
    sub.add_parser("import", help="keys from `keys export` on stdin, keeping their ids")

    update = sub.add_parser("update", help="change scopes, allowlist, name, metadata, limits")
    update.add_argument("key_id")
    update.add_argument("--scope", dest="scopes", action="append", metavar="S")
    update.add_argument("--name")
    update.add_argument("--clear-allow-ips", action="store_true")
    update.add_argument("--no-rate-limit", action="store_true")
    update.add_argument("--no-expiry", action="store_true")
    _add_key_options(update)
    update.add_argument("--json", action="store_true")

    keys.set_defaults(run=_keys)


def _add_key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-ip", dest="allow_ips", action="append", metavar="CIDR")
    parser.add_argument("--expires-in", metavar="DURATION", help="e.g. 90d")
    parser.add_argument("--metadata", action="append", metavar="K=V")
    parser.add_argument(
        "--rate-limit",
        metavar="[NAME=]N/WINDOW",
        action="append",
        help="e.g. 100/60s; repeat for several limits (burst=20/1s --rate-limit daily=10000/1d)",
    )


def _credits(count: int | None, refill: str | None) -> Credits | None:
    if count is None:
        if refill:
            raise UsageError("--refill needs --credits")
        return None
    if not refill:
        return Credits(count)
    limit = parse_rate_limit(refill)  # N/EVERY reads like a limit
    return Credits(count, Refill(limit.requests, limit.window))


def _metadata(items: list[str] | None) -> dict[str, str] | None:
    if items is None:
        return None
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata takes KEY=VALUE, got {item!r}")
        result[key] = value
    return result


def _limits_text(record: KeyRecord) -> str:
    return ", ".join(str(limit) for limit in record.rate_limits) or "-"


def _key_rows(records: Sequence[KeyRecord]) -> str:
    now = utc_now()
    rows = [
        [
            r.id,
            r.key_type,
            r.name or "-",
            r.project_id or "-",
            " ".join(sorted(r.scopes)),
            r.hint,
            when(r.created_at),
            when(r.expires_at),
            when(r.last_used_at),
            str(r.request_count),
            _limits_text(r),
            r.status(now),
        ]
        for r in records
    ]
    headers = [
        "ID",
        "TYPE",
        "NAME",
        "PROJECT",
        "SCOPES",
        "HINT",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "REQUESTS",
        "LIMIT",
        "STATUS",
    ]
    return table(headers, rows)


def _key_detail(record: KeyRecord) -> str:
    fields = [
        ("id", record.id),
        ("type", record.key_type),
        ("name", record.name or "-"),
        ("project", record.project_id or "-"),
        ("scopes", " ".join(sorted(record.scopes))),
        ("allowed ips", " ".join(record.allowed_ips) or "any"),
        ("hint", record.hint),
        ("status", record.status(utc_now())),
        ("created", when(record.created_at)),
        ("expires", when(record.expires_at)),
        ("revoked", when(record.revoked_at)),
        ("rotated from", record.rotated_from or "-"),
        ("rotated to", record.rotated_to or "-"),
        ("rate limit", _limits_text(record)),
        (
            "credits left",
            "-" if record.credits_remaining is None else str(record.credits_remaining),
        ),
        ("metadata", json.dumps(dict(record.metadata)) if record.metadata else "-"),
        ("last used", when(record.last_used_at)),
        ("requests", str(record.request_count)),
    ]
    return "\n".join(f"{k + ':':<14}{printable(v)}" for k, v in fields)


def _print_issued(issued: IssuedKey, as_json: bool, verb: str) -> None:
    if as_json:
        print(json.dumps({"secret": issued.secret, "key": issued.key.to_dict()}, indent=2))
        return
    print(
        f"{verb} {issued.key.key_type} key {issued.key.id}"
        + (f" ({printable(issued.key.name)})" if issued.key.name else "")
    )
    print()
    print(f"    {issued.secret}")
    print()
    print("Store it now: this key is shown only once and cannot be recovered.")


def _keys(args: argparse.Namespace) -> int:
    store = open_store(args)
    audit = audit_log(store)
    manager = KeyManager(store, audit=audit, actor=CLI_ACTOR)
    try:
        return _keys_action(args, manager)
    finally:
        audit.close()
        store.close()


def _keys_action(args: argparse.Namespace, manager: KeyManager) -> int:
    action = args.action
    if action == "export":
        export_keys(manager.store, manager.list(), sys.stdout)
        return 0
    if action == "import":
        imported, skipped = import_keys(manager.store, sys.stdin)
        print(f"Imported {imported} keys; {skipped} already there.", file=sys.stderr)
        return 0
    if action in ("create", "update"):
        expires = (utc_now() + parse_duration(args.expires_in)) if args.expires_in else _UNSET
        rate_limit = [parse_rate_limit(text) for text in args.rate_limit or ()] or _UNSET
        metadata = _metadata(args.metadata)
    if action == "credits":
        if args.add is not None:
            left = manager.add_credits(args.key_id, args.add)
        else:
            record = manager.get(args.key_id)
            if record.credits_remaining is None:
                raise ValueError(f"key {args.key_id} has no credits")
            left = record.credits_remaining
        print(f"Key {args.key_id}: {left} credits left.")
        return 0
    if action == "create":
        issued = manager.create(
            scopes=args.scopes,
            key_type=args.key_type,
            name=args.name,
            project_id=args.project,
            allowed_ips=args.allow_ips or [],
            expires_at=None if expires is _UNSET else expires,
            metadata=metadata,
            rate_limit=None if rate_limit is _UNSET else rate_limit,
            credits=_credits(args.credits, args.refill),
        )
        _print_issued(issued, args.json, "Created")
    elif action == "list":
        records = manager.list(project_id=args.project)
        if args.json:
            print(json.dumps([r.to_dict() for r in records], indent=2))
        else:
            print(_key_rows(records) if records else "No keys.")
    elif action in ("show", "revoke"):
        record = manager.get(args.key_id) if action == "show" else manager.revoke(args.key_id)
        if args.json:
            print(json.dumps(record.to_dict(), indent=2))
        else:
            print(_key_detail(record) if action == "show" else f"Revoked {record.id}.")
    elif action == "rotate":
        issued = manager.rotate(args.key_id, grace=parse_duration(args.grace))
        old = manager.get(args.key_id)
        _print_issued(issued, args.json, "Rotated to")
        if not args.json:
            print(
                f"The old key {old.id} stays valid until {when(old.expires_at)} UTC "
                f"({format_duration(old.expires_at - utc_now()) if old.expires_at else '-'})."
            )
    else:  # update
        changes: dict[str, Any] = {}
        if args.scopes:
            changes["scopes"] = args.scopes
        if args.name is not None:
            changes["name"] = args.name
        if args.clear_allow_ips or args.allow_ips:
            changes["allowed_ips"] = args.allow_ips or []
        if metadata is not None:
            changes["metadata"] = metadata
        if args.no_rate_limit or rate_limit is not _UNSET:
            changes["rate_limit"] = None if args.no_rate_limit else rate_limit
        if args.no_expiry or expires is not _UNSET:
            changes["expires_at"] = None if args.no_expiry else expires
        if not changes:
            raise UsageError("keys update: nothing to change")
        record = manager.update(args.key_id, **changes)
        print(json.dumps(record.to_dict(), indent=2) if args.json else _key_detail(record))
    return 0
