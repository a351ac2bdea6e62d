"""The PostgreSQL connections of one ``PostgresKeyStore``, what makes load different from
failure, and the versioned schema migrations.

Load is not unavailability: a call waits for a pooled connection up to ``queue_timeout``
seconds (a burst of any size queues behind a gate of ``pool_size`` permits); only then is the
store reported unavailable. Connections are made by the calls that need them, bounded by
``connect_timeout``: an unreachable database fails calls at once (no queue of waiters behind
background reconnects), and the first call after it returns connects again (no retry backoff
that could outlast the outage), so the store recovers within seconds.
``statement_timeout`` bounds the database's answer once a statement is sent, and
``connect_timeout`` bounds connecting. Every psycopg error of a connection or a timeout
becomes :class:`~nowramp_auth.stores._errors.StoreUnavailable` (fail closed); a read that
failed on a stale connection (after a restart or a cut) is tried once more on a fresh one;
a statement that changes state is never repeated (its outcome is unknown).

Async callers run the same calls on a thread pool as large as the connection pool, so the
event loop never blocks on the database.

Migrations are SQL files shipped in ``pg_migrations/`` (``NNNN_name.sql``), applied in order,
each in its own transaction, under an advisory lock (several processes upgrading at once take
turns), recorded in ``schema_version``. A store whose schema is older or newer than the code
refuses to start, naming the command that fixes it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from ._errors import SchemaMismatch, StoreUnavailable

__all__ = [
    "LATEST_VERSION",
    "PgConnections",
    "SchemaMismatch",
    "migrations",
    "notify",
    "upgrade",
]

T = TypeVar("T")
_log = logging.getLogger("nowramp_auth.postgres")
_UPGRADE_LOCK = 0x6E6F7772  # pg_advisory_lock key of upgrades ("nowr")
_IO_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.QueryCanceled,
    psycopg.errors.AdminShutdown,
    OSError,
)


def migrations() -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` of every shipped migration, in order."""
    folder = resources.files("nowramp_auth.stores").joinpath("pg_migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


LATEST_VERSION = migrations()[-1][0]


def unavailable(exc: BaseException) -> StoreUnavailable:
    """The store-unavailable error for ``exc`` (no detail of the query or its values)."""
    return StoreUnavailable(f"PostgreSQL unavailable: {type(exc).__name__}")


class PgConnections:
    """A pool of connections with the store's options, and a thread pool for async callers.

    Parameters:
        url: ``postgresql://user@host:port/db``.
        schema: the schema the tables live in (on every connection's ``search_path``).
        pool_size: connections at most (default 10), and threads for async callers.
        queue_timeout: seconds a call may wait for a connection (default 5).
        statement_timeout: seconds a statement may run (default 2).
        connect_timeout: seconds to connect (default 2).
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str,
        pool_size: int = 10,
        queue_timeout: float = 5.0,
        statement_timeout: float = 2.0,
        connect_timeout: float = 2.0,
    ) -> None:
        if not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(f"pool_size must be a positive int, got {pool_size!r}")
        for name, value in (
            ("queue_timeout", queue_timeout),
            ("statement_timeout", statement_timeout),
            ("connect_timeout", connect_timeout),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.url = url
        self.schema = schema
        self.pool_size = pool_size
        self.queue_timeout = queue_timeout
        self.kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, round(connect_timeout)),
            "options": f"-c statement_timeout={int(statement_timeout * 1000)} "
            f"-c search_path={schema} -c timezone=UTC",
        }
        self._gate = threading.BoundedSemaphore(pool_size)
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._threads: ThreadPoolExecutor | None = None
        self.schema_checked = False
        """Whether the schema version was found right (checked once, at the first answer)."""

    @contextmanager
    def _pooled(self) -> Iterator[psycopg.Connection[Any]]:
        # A connection behind the gate: an idle one, or a new one. Connecting happens in the
        # caller, bounded by connect_timeout: an unreachable database fails the call at once
        # and the first call after it returns connects again (no background retries whose
        # backoff could outlast the outage).
        if not self._gate.acquire(timeout=self.queue_timeout):
            raise StoreUnavailable("PostgreSQL unavailable: no connection within queue_timeout")
        conn: psycopg.Connection[Any] | None = None
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = psycopg.connect(self.url, **self.kwargs)
            yield conn
        except psycopg.Error:
            if conn is not None:  # broken, or in an unknown state: never reused
                conn.close()
            raise
        finally:
            if conn is not None and not conn.closed:
                if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                    with self._lock:
                        self._idle.append(conn)
                else:
                    conn.close()
            self._gate.release()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection for the block; failures become ``StoreUnavailable``."""
        try:
            with self._pooled() as conn:
                if not self.schema_checked:
                    self._check(conn)
                yield conn
        except _IO_ERRORS as exc:
            raise unavailable(exc) from exc

    def read(self, call: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run an idempotent ``call(conn)``; tried once more after a failure other than
        waiting out ``queue_timeout`` (a stale connection after a restart or a cut)."""
        try:
            with self.connection() as conn:
                return call(conn)
        except StoreUnavailable as exc:
            if exc.__cause__ is None:  # no connection within queue_timeout: not again
                raise
        with self.connection() as conn:
            return call(conn)

    def write(self, call: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run a state-changing ``call(conn)`` once (a failure is ``StoreUnavailable``)."""
        with self.connection() as conn:
            return call(conn)

    def transaction(self, call: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``call(conn)`` in one transaction (all or nothing), once."""
        with self.connection() as conn, conn.transaction():
            return call(conn)

    async def run_async(self, blocking: Callable[[], T]) -> T:
        """Run a blocking store call on the store's threads, not on the event loop."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.pool_size, thread_name_prefix="nowramp-pg")
        return await asyncio.get_running_loop().run_in_executor(self._threads, blocking)

    def _version(self, conn: psycopg.Connection[Any]) -> int:
        exists = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"{self.schema}.schema_version",)
        ).fetchone()
        if not exists or not exists[0]:
            return 0
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0) if row else 0

    def _check(self, conn: psycopg.Connection[Any]) -> None:
        # The first connection of a store that could not check its schema at start-up (the
        # database was down): a wrong schema then fails closed, saying what to run.
        version = self._version(conn)
        if version != LATEST_VERSION:
            _log.error("%s", _mismatch(self.schema, version))
            raise StoreUnavailable(f"PostgreSQL schema at version {version}: run db upgrade")
        self.schema_checked = True

    def check_schema(self) -> None:
        """``SchemaMismatch`` unless the database holds this code's schema version;
        ``StoreUnavailable`` when it cannot be reached (then checked at the first answer)."""
        try:
            with self._pooled() as conn:
                version = self._version(conn)
        except _IO_ERRORS as exc:
            raise unavailable(exc) from exc
        if version != LATEST_VERSION:
            raise SchemaMismatch(_mismatch(self.schema, version))
        self.schema_checked = True

    def close(self) -> None:
        """Close the pool and the threads."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        if self._threads is not None:
            self._threads.shutdown(wait=False)
            self._threads = None


def _mismatch(schema: str, version: int) -> str:
    if version < LATEST_VERSION:
        return (
            f"the PostgreSQL schema {schema!r} is at version {version}, this code needs "
            f"{LATEST_VERSION}: run `nowramp-auth --store-url URL db upgrade` "
            "(or PostgresKeyStore.from_url(..., upgrade=True))"
        )
    return (
        f"the PostgreSQL schema {schema!r} is at version {version}, newer than this code "
        f"({LATEST_VERSION}): upgrade nowramp_auth before starting it"
    )


def notify(conn: psycopg.Connection[Any], channel: str, record_id: str) -> None:
    """Tell every instance that ``record_id`` changed; sent inside the changing transaction,
    so it is delivered at commit and never for a rollback."""
    conn.execute("SELECT pg_notify(%s, %s)", (channel, record_id))


def upgrade(url: str, schema: str = "nowramp_auth", connect_timeout: float = 5.0) -> list[str]:
    """Apply the migrations the database lacks (idempotent; concurrent upgrades take turns on
    an advisory lock). Returns the names of the migrations applied."""
    applied: list[str] = []
    with psycopg.connect(url, autocommit=True, connect_timeout=round(connect_timeout)) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_UPGRADE_LOCK,))
        try:
            ident = sql.Identifier(schema)
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.schema_version "
                    "(version integer PRIMARY KEY, name text NOT NULL, "
                    "applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(ident)
            )
            row = conn.execute(
                sql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_version").format(ident)
            ).fetchone()
            current = int(row[0]) if row else 0
            for version, name, script in migrations():
                if version <= current:
                    continue
                with conn.transaction():
                    conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(ident))
                    conn.execute(script.encode("utf-8"))
                    conn.execute(
                        "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                applied.append(name)
                _log.info("applied migration %s to schema %s", name, schema)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_UPGRADE_LOCK,))
    return applied
