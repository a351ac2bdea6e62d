"""Rows of the PostgreSQL store as records, and records as rows (pure)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from psycopg.types.json import Jsonb

from .._budgets import credits_from_json, credits_to_json, decode_limits, encode_limits
from .._models import KeyRecord, RateLimit, SessionRecord, StoredKey

__all__ = [
    "KEY_COLUMNS",
    "SESSION_COLUMNS",
    "key_from_row",
    "key_row",
    "limit_columns",
    "limits_json",
    "session_from_row",
    "session_row",
]

KEY_COLUMNS = (
    "id, lineage, key_type, digest, hint, name, project_id, scopes, allowed_ips, metadata, "
    "rl_requests, rl_window_ms, created_at, expires_at, revoked_at, rotated_from, rotated_to, "
    "lineage_id, rate_limits, project_limits, credits"
)
SESSION_COLUMNS = (
    "id, key_id, project_id, customer_id, scopes, created_at, expires_at, revoked_at, digest"
)


def key_row(stored: StoredKey) -> tuple[Any, ...]:
    """The values of :data:`KEY_COLUMNS` for a stored key."""
    r = stored.record
    single, several = limit_columns(r.rate_limits)
    return (
        r.id,
        r.lineage,
        r.key_type,
        stored.digest,
        r.hint,
        r.name,
        r.project_id,
        sorted(r.scopes),
        list(r.allowed_ips),
        Jsonb(dict(r.metadata)),
        single.requests if single else None,
        single.window_ms if single else None,
        r.created_at,
        r.expires_at,
        r.revoked_at,
        r.rotated_from,
        r.rotated_to,
        r.lineage_id,
        several,
        limits_json(r.project_limits),
        Jsonb(credits_to_json(r.credits)) if r.credits else None,
    )


def limits_json(limits: tuple[RateLimit, ...]) -> Jsonb | None:
    """Limits as a ``jsonb`` value, ``[[requests, window ms, name], ...]`` (``None``: none)."""
    return Jsonb(json.loads(encode_limits(limits))) if limits else None


def limit_columns(limits: tuple[RateLimit, ...]) -> tuple[RateLimit | None, Jsonb | None]:
    """One unnamed limit goes to ``rl_requests``/``rl_window_ms`` (as every earlier version
    wrote it); several, or a named one, to ``rate_limits`` as ``[[requests, ms, name], ...]``."""
    if len(limits) == 1 and limits[0].name is None:
        return limits[0], None
    if not limits:
        return None, None
    return None, limits_json(limits)


def key_from_row(row: tuple[Any, ...] | None) -> StoredKey | None:
    """A stored key from a row of :data:`KEY_COLUMNS` (``None`` for none)."""
    if row is None:
        return None
    (key_id, _, key_type, digest, hint, name, project_id, scopes, ips, metadata) = row[:10]
    rl_requests, rl_window_ms, created, expires, revoked, rotated_from, rotated_to = row[10:17]
    limits: tuple[RateLimit, ...] = ()
    if row[18] is not None:
        several = row[18] if isinstance(row[18], list) else json.loads(row[18])
        limits = tuple(
            RateLimit(int(requests), timedelta(milliseconds=int(ms)), name)
            for requests, ms, name in several
        )
    elif rl_requests is not None:
        limits = (RateLimit(int(rl_requests), timedelta(milliseconds=int(rl_window_ms))),)
    record = KeyRecord(
        id=key_id,
        key_type="live" if key_type == "live" else "test",
        scopes=frozenset(scopes),
        name=name,
        project_id=project_id,
        allowed_ips=tuple(ips),
        created_at=created,
        expires_at=expires,
        revoked_at=revoked,
        hint=hint,
        metadata=metadata if isinstance(metadata, dict) else json.loads(metadata or "{}"),
        rate_limits=limits,
        project_limits=decode_limits(row[19]),
        credits=credits_from_json(row[20]),
        rotated_from=rotated_from,
        rotated_to=rotated_to,
        lineage_id=row[17],
    )
    return StoredKey(record, digest)


def session_row(session: SessionRecord) -> tuple[Any, ...]:
    """The values of :data:`SESSION_COLUMNS` for a session."""
    return (
        session.id,
        session.key_id,
        session.project_id,
        session.customer_id,
        sorted(session.scopes),
        session.created_at,
        session.expires_at,
        session.revoked_at,
        session.digest,
    )


def session_from_row(row: tuple[Any, ...] | None) -> SessionRecord | None:
    """A session from a row of :data:`SESSION_COLUMNS`."""
    if row is None:
        return None
    sid, key_id, project_id, customer_id, scopes, created, expires, revoked, digest = row
    return SessionRecord(
        id=sid,
        key_id=key_id,
        project_id=project_id,
        customer_id=customer_id,
        scopes=frozenset(scopes),
        created_at=created,
        expires_at=expires,
        revoked_at=revoked,
        digest=digest,
    )
