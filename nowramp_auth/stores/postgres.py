"""``PostgresKeyStore``: PostgreSQL as the system of record, with a local cache in front.

Security model
--------------
* The database holds digests (SHA-256, or HMAC-SHA256 with ``pepper``), never a plaintext
  key; statements carry the digest as a parameter, so no plaintext can reach a log of the
  server either.
* Fail closed: when PostgreSQL cannot be reached or answer within the timeouts, lookups raise
  :class:`~nowramp_auth.stores.StoreUnavailable` (``AUTH_UNAVAILABLE``), unless a fresh cached
  answer exists; the store recovers by itself when the database returns.
* Every change is one transaction that also sends ``pg_notify(channel, id)``: the
  notification is delivered at commit, and every instance drops the entry from its cache
  (:mod:`._pg_invalidation`, :mod:`._cache_sync`). Rotation locks the old row
  (``SELECT ... FOR UPDATE``): of concurrent rotations of one key exactly one succeeds, and at
  no instant is neither key valid.
* Rate limits go to ``rate_limiter=`` (e.g. :class:`~nowramp_auth.RedisRateLimiter`) when
  given; otherwise one statement per limited request counts them in PostgreSQL, on its clock
  (``hit_rate_limit`` in the schema: exact up to 1,000 per window, never late).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import psycopg

from .._budgets import encode_limits
from .._keys import make_hasher
from .._models import KeyRecord, SessionRecord, StoredKey
from ._cache_sync import CachedReads, CacheSync, close_at_exit_and_reset_after_fork
from ._errors import StoreUnavailable
from ._pg_connections import PgConnections, notify, unavailable, upgrade
from ._pg_invalidation import pg_listener_factory
from ._pg_limits import PgLimits
from ._pg_records import (
    KEY_COLUMNS,
    key_from_row,
    key_row,
    limit_columns,
)
from ._pg_sessions import PgSessions
from ._pg_state import PgState
from ._protocol import NOT_CACHED, UPDATABLE_FIELDS, grace_cap_refused, rotation_refused
from ._redis_cache import LocalCache
from ._stats import StoreStats, counts_failures

__all__ = ["PostgresKeyStore"]

_log = logging.getLogger("nowramp_auth.postgres")
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_UPDATE_COLUMNS = {
    "scopes": "scopes",
    "allowed_ips": "allowed_ips",
    "name": "name",
    "metadata": "metadata",
    "expires_at": "expires_at",
}


class PostgresKeyStore(CachedReads, PgSessions, PgLimits, PgState):
    """Key store on PostgreSQL; serves sync and async callers (see the module docstring).

    Parameters:
        url: ``postgresql://user@host:port/database``.
        upgrade: apply the schema migrations first (else a schema older or newer than the
            code refuses to start, naming ``nowramp-auth db upgrade``).
        rate_limiter: count rate limits there (e.g. ``RedisRateLimiter.from_url(...)``).
        pepper: server-side secret; digests become HMAC-SHA256 keyed with it.
        schema: the schema of the tables (default ``nowramp_auth``).
        cache_size: records in the local cache (default 10,000, plus as many unknown ids).
        cache_ttl: seconds a cached answer may serve, 0 to 30 (default 10).
        pool_size: connections at most (default 10); more concurrent calls wait.
        queue_timeout: seconds a call may wait for a connection (default 5).
        statement_timeout: seconds a statement may run (default 2).
        connect_timeout: seconds to connect (default 2).
        usage_flush_interval: seconds between usage write-behinds (default 1).
        invalidation: listen for other instances' changes (default ``True``).
    """

    def __init__(
        self,
        url: str,
        *,
        upgrade: bool = False,
        rate_limiter: Any = None,
        pepper: bytes | str | None = None,
        schema: str = "nowramp_auth",
        cache_size: int = 10_000,
        cache_ttl: float = 10.0,
        pool_size: int = 10,
        queue_timeout: float = 5.0,
        statement_timeout: float = 2.0,
        connect_timeout: float = 2.0,
        usage_flush_interval: float = 1.0,
        invalidation: bool = True,
    ) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("url must start with postgresql://")
        if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError("schema must be a lower-case SQL identifier")
        if not usage_flush_interval > 0:
            raise ValueError(f"usage_flush_interval must be positive, got {usage_flush_interval}")
        if rate_limiter is not None and not callable(getattr(rate_limiter, "hit_rate_limit", None)):
            raise TypeError("rate_limiter must be a RedisRateLimiter (or have hit_rate_limit)")
        self._pg_options: dict[str, Any] = {
            "schema": schema,
            "pool_size": pool_size,
            "queue_timeout": queue_timeout,
            "statement_timeout": statement_timeout,
            "connect_timeout": connect_timeout,
        }
        self._pg = PgConnections(url, **self._pg_options)
        if upgrade:
            _upgrade(url, schema)
        try:
            self._pg.check_schema()
        except StoreUnavailable:
            # Down at start-up: the app starts and fails closed; the schema is checked at
            # the first answer (see PgConnections).
            _log.warning("PostgreSQL unreachable at start-up; its schema is checked later")
        self.schema = schema
        self.channel = f"nowramp_auth_{schema}"
        self.limiter = rate_limiter
        self._pepper = pepper.encode() if isinstance(pepper, str) else pepper
        self.hasher = make_hasher(self._pepper)
        self.keys_cache: LocalCache[StoredKey] = LocalCache(cache_size, cache_ttl)
        self.current_key = self.keys_cache.current
        """The cached record of a key id while it is fresh, without I/O (the fast path's
        version check); ``None`` when the cache cannot vouch for one."""
        self.sessions_cache: LocalCache[SessionRecord] = LocalCache(cache_size, cache_ttl)
        self.stats = StoreStats()
        self._setup_usage()
        listener = pg_listener_factory(self._pg, self.channel) if invalidation else None
        self._sync = CacheSync(
            (self.keys_cache, self.sessions_cache),
            self.stats,
            make_listener=listener,
            flush=self.flush_usage,
            flush_interval=usage_flush_interval,
        )
        close_at_exit_and_reset_after_fork(self)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresKeyStore:
        """A store for ``url``. Options as for the class."""
        return cls(url, **options)

    def __repr__(self) -> str:
        where = re.sub(r"//[^@/]*@", "//", self._pg.url)  # no user or password
        return f"PostgresKeyStore({where!r}, schema={self.schema!r})"

    def _after_fork(self) -> None:
        self.stats = StoreStats()
        self._pg = PgConnections(self._pg.url, **self._pg_options)  # sockets stay with the parent
        self._usage.reset()
        self._sync.after_fork(self.stats)

    def digest(self, token: str) -> str:
        """Digest of a plaintext key or token."""
        return self.hasher(token.encode("ascii")).hexdigest()

    # -- request path -------------------------------------------------------------------------
    def _load_key(self, key_id: str) -> StoredKey | None:
        query = f"SELECT {KEY_COLUMNS} FROM keys WHERE id = %s"
        return key_from_row(self._pg.read(lambda c: c.execute(query, (key_id,)).fetchone()))

    async def get_key_async(self, key_id: str) -> StoredKey | None:
        """Async twin of :meth:`get_key` (the database is read on the store's threads)."""
        cached = self.peek("get_key", (key_id,))
        if cached is not NOT_CACHED:
            return cached  # type: ignore[no-any-return]
        return await self._pg.run_async(lambda: self.get_key(key_id))

    # -- management ---------------------------------------------------------------------------
    @counts_failures("insert_key")
    def insert_key(self, stored: StoredKey) -> None:
        """Add a new key; ``ValueError`` when the id exists."""
        query = f"INSERT INTO keys ({KEY_COLUMNS}) VALUES ({_marks(21)})"

        def insert(conn: psycopg.Connection[Any]) -> None:
            conn.execute(query, key_row(stored))
            notify(conn, self.channel, stored.record.id)

        try:
            self._pg.transaction(insert)
        except psycopg.errors.UniqueViolation:
            raise ValueError(f"key id {stored.record.id} already exists") from None
        finally:
            self.keys_cache.invalidate(stored.record.id)

    def _change(
        self, key_id: str, change: Callable[[psycopg.Connection[Any], StoredKey], Any]
    ) -> Any:
        # One transaction that locks the row, changes it and notifies every instance.
        def run(conn: psycopg.Connection[Any]) -> Any:
            row = conn.execute(
                f"SELECT {KEY_COLUMNS} FROM keys WHERE id = %s FOR UPDATE", (key_id,)
            ).fetchone()
            old = key_from_row(row)
            if old is None:
                raise KeyError(key_id)
            result = change(conn, old)
            notify(conn, self.channel, key_id)
            return result

        try:
            return self._pg.transaction(run)
        finally:
            self.keys_cache.invalidate(key_id)

    @counts_failures("update_key")
    def update_key(self, key_id: str, changes: Mapping[str, Any]) -> KeyRecord:
        """Set fields of a key in one transaction; ``KeyError`` when unknown. A rotated key's
        expiry (its grace end) may only be shortened."""
        unknown = set(changes) - UPDATABLE_FIELDS
        if unknown:
            raise ValueError(f"fields cannot be updated: {', '.join(sorted(unknown))}")
        sets, values = _assignments(changes)

        def update(conn: psycopg.Connection[Any], old: StoredKey) -> KeyRecord:
            cap = old.record.expires_at if old.record.rotated_to is not None else None
            if cap is not None and "expires_at" in changes:
                wanted = changes["expires_at"]
                if wanted is None or wanted > cap:
                    raise grace_cap_refused(key_id, cap)
            row = conn.execute(
                f"UPDATE keys SET {sets} WHERE id = %s RETURNING {KEY_COLUMNS}",
                (*values, key_id),
            ).fetchone()
            stored = key_from_row(row)
            assert stored is not None
            return stored.record

        record: KeyRecord = self._change(key_id, update)
        return record

    @counts_failures("revoke_key")
    def revoke_key(self, key_id: str, at: datetime) -> KeyRecord:
        """Revoke a key (the first revocation time stays)."""

        def revoke(conn: psycopg.Connection[Any], old: StoredKey) -> KeyRecord:
            row = conn.execute(
                f"UPDATE keys SET revoked_at = coalesce(revoked_at, %s) WHERE id = %s "
                f"RETURNING {KEY_COLUMNS}",
                (at, key_id),
            ).fetchone()
            stored = key_from_row(row)
            assert stored is not None
            return stored.record

        record: KeyRecord = self._change(key_id, revoke)
        return record

    @counts_failures("rotate_key")
    def rotate_key(
        self,
        old_id: str,
        *,
        new_id: str,
        new_digest: str,
        new_hint: str,
        now: datetime,
        grace_end: datetime,
    ) -> tuple[KeyRecord, KeyRecord]:
        """Create the successor and shorten the old key's life in one transaction."""

        def rotate(conn: psycopg.Connection[Any], old: StoredKey) -> tuple[KeyRecord, KeyRecord]:
            r = old.record
            if r.revoked_at is not None:
                raise rotation_refused(old_id, "revoked")
            if r.expires_at is not None and r.expires_at <= now:
                raise rotation_refused(old_id, "expired")
            if r.rotated_to is not None:
                raise rotation_refused(old_id, "rotated", r.rotated_to)
            new = KeyRecord(
                id=new_id,
                key_type=r.key_type,
                scopes=r.scopes,
                name=r.name,
                project_id=r.project_id,
                allowed_ips=r.allowed_ips,
                created_at=now,
                expires_at=r.expires_at,
                revoked_at=None,
                hint=new_hint,
                metadata=r.metadata,
                rate_limits=r.rate_limits,
                project_limits=r.project_limits,
                credits=r.credits,
                rotated_from=old_id,
                lineage_id=r.lineage,
            )
            query = f"INSERT INTO keys ({KEY_COLUMNS}) VALUES ({_marks(21)})"
            conn.execute(query, key_row(StoredKey(new, new_digest)))
            expires = grace_end if r.expires_at is None else min(r.expires_at, grace_end)
            row = conn.execute(
                f"UPDATE keys SET expires_at = %s, rotated_to = %s WHERE id = %s "
                f"RETURNING {KEY_COLUMNS}",
                (expires, new_id, old_id),
            ).fetchone()
            updated = key_from_row(row)
            assert updated is not None
            return updated.record, new

        try:
            rotated: tuple[KeyRecord, KeyRecord] = self._change(old_id, rotate)
        except psycopg.errors.UniqueViolation:
            raise ValueError(f"key id {new_id} already exists") from None
        return rotated

    @counts_failures("list_keys")
    def list_keys(self, project_id: str | None = None) -> list[KeyRecord]:
        """Every key (of one project when given), oldest first."""
        where, args = (
            ("WHERE project_id = %s", (project_id,)) if project_id is not None else ("", ())
        )
        query = f"SELECT {KEY_COLUMNS} FROM keys {where} ORDER BY created_at, id"
        rows = self._pg.read(lambda c: c.execute(query, args).fetchall())
        return [s.record for row in rows if (s := key_from_row(row)) is not None]

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        """Write usage, stop the background threads and close the connections."""
        if self._sync.closing.is_set():
            return
        with contextlib.suppress(Exception):
            self.flush_usage()
        self._sync.stop()
        self._pg.close()


def _upgrade(url: str, schema: str) -> None:
    try:
        upgrade(url, schema)
    except (psycopg.OperationalError, OSError) as exc:
        raise unavailable(exc) from exc


def _marks(n: int) -> str:
    return ", ".join(["%s"] * n)


def _assignments(changes: Mapping[str, Any]) -> tuple[str, list[Any]]:
    # SET clauses and values of an update (column names from a fixed table, values bound).
    parts: list[str] = []
    values: list[Any] = []
    for name, value in changes.items():
        if name == "rate_limit":  # a tuple of every limit
            single, several = limit_columns(value)
            parts += ["rl_requests = %s", "rl_window_ms = %s", "rate_limits = %s"]
            values += [single.requests, single.window_ms] if single else [None, None]
            values.append(several)
            continue
        if name == "project_limits":
            parts.append("project_limits = %s")
            values.append(
                psycopg.types.json.Jsonb(json.loads(encode_limits(value))) if value else None
            )
            continue
        parts.append(f"{_UPDATE_COLUMNS[name]} = %s")
        if name in ("scopes", "allowed_ips"):
            value = sorted(value) if name == "scopes" else list(value)
        elif name == "metadata":
            value = psycopg.types.json.Jsonb(dict(value))
        values.append(value)
    return ", ".join(parts), values
