"""What every command group of ``nowramp-auth`` shares: usage errors, the store options, and
output that is safe to print.

Security model: stored values (a request path in an audit event, a key's name) are printed
with control and format characters escaped, so they cannot drive the operator's terminal; no
listing ever shows a secret.
"""

from __future__ import annotations

import argparse
import os
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NoReturn

__all__ = [
    "CLI_ACTOR",
    "ENV_PEPPER",
    "ENV_STORE_URL",
    "ENV_URL",
    "Parser",
    "UsageError",
    "audit_log",
    "open_store",
    "printable",
    "store_url",
    "table",
    "when",
]

CLI_ACTOR = "cli"
"""``AuditEvent.actor`` of every change made from the command line."""

ENV_STORE_URL = "NOWRAMP_AUTH_STORE_URL"
ENV_URL = "NOWRAMP_AUTH_REDIS_URL"
ENV_PEPPER = "NOWRAMP_AUTH_PEPPER"


class UsageError(Exception):
    """Bad arguments: exit status 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser that raises :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def store_url(args: argparse.Namespace) -> str:
    """The store URL the options name: ``--store-url``, ``--redis-url``, or their variables."""
    url = (
        args.store_url or args.redis_url or os.environ.get(ENV_STORE_URL) or os.environ.get(ENV_URL)
    )
    if not url:
        raise UsageError(f"no store: pass --store-url or set {ENV_STORE_URL} (or {ENV_URL})")
    if not url.startswith(("redis://", "rediss://", "unix://", "postgresql://", "postgres://")):
        raise UsageError("the store URL must start with redis://, rediss:// or postgresql://")
    return url


def open_store(args: argparse.Namespace) -> Any:
    """The key store the global options name (no cache, no listener: a one-shot process)."""
    url = store_url(args)
    pepper = os.environ.get(ENV_PEPPER) or None
    try:
        if url.startswith(("postgresql://", "postgres://")):
            from ..stores.postgres import PostgresKeyStore

            return PostgresKeyStore.from_url(
                url, schema=args.schema, pepper=pepper, cache_ttl=0, invalidation=False
            )
        from ..stores.redis import RedisKeyStore
    except ImportError as exc:
        needed = f"the CLI needs: pip install 'nowramp_auth[cli]' ({exc.name} missing)"
        raise UsageError(needed) from None
    return RedisKeyStore.from_url(
        url,
        cluster=args.cluster,
        namespace=args.namespace,
        pepper=pepper,
        cache_ttl=0,
        invalidation=False,
    )


def audit_log(store: Any) -> Any:
    """The store's audit log (a Redis stream, or PostgreSQL's table)."""
    if type(store).__name__ == "PostgresKeyStore":
        from ..stores.postgres_audit import PostgresAuditLog

        return PostgresAuditLog(store)
    from ..stores.redis_audit import RedisStreamAuditLog

    return RedisStreamAuditLog(store)


# -- output ---------------------------------------------------------------------------------
def when(value: datetime | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM`` (``-`` for none)."""
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def printable(text: str) -> str:
    """``text`` with control and format characters escaped (``\\x1b``, ``\\u202e``): stored
    values (a request path in an audit event, a key's name) must not drive the terminal."""
    if text.isprintable():
        return text
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in _UNPRINTABLE
        else ch
        for ch in text
    )


_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An aligned text table (cells made printable)."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)
