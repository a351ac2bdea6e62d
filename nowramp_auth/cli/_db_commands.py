"""``nowramp-auth db upgrade``: apply the PostgreSQL store's schema migrations (idempotent;
concurrent upgrades take turns on an advisory lock)."""

from __future__ import annotations

import argparse
from typing import Any

from ..stores._errors import StoreUnavailable
from ._common import Parser, UsageError, store_url

__all__ = ["register"]


def register(top: Any) -> None:
    """Add the ``db`` command group."""
    db = top.add_parser("db", help="the PostgreSQL store's schema")
    sub = db.add_subparsers(dest="action", required=True, parser_class=Parser)
    sub.add_parser("upgrade", help="apply the schema migrations (idempotent)")
    db.set_defaults(run=_db)


def _db(args: argparse.Namespace) -> int:
    url = store_url(args)
    if not url.startswith(("postgresql://", "postgres://")):
        raise UsageError("db upgrade needs a postgresql:// store URL")
    try:
        import psycopg

        from ..stores._pg_connections import LATEST_VERSION, upgrade
        from ..stores.postgres import _SCHEMA_NAME
    except ImportError as exc:
        raise UsageError(
            f"PostgreSQL needs: pip install 'nowramp_auth[postgres]' ({exc.name})"
        ) from None
    if not _SCHEMA_NAME.fullmatch(args.schema):
        raise UsageError("--schema must be a lower-case SQL identifier")
    try:
        applied = upgrade(url, args.schema)
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"PostgreSQL unavailable: {type(exc).__name__}") from None
    if applied:
        print(f"Applied {', '.join(applied)}; schema {args.schema} is at version {LATEST_VERSION}.")
    else:
        print(f"Schema {args.schema} is up to date (version {LATEST_VERSION}).")
    return 0
