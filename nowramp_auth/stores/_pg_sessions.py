"""Widget sessions in PostgreSQL: cached reads, inserts, and a revocation that notifies every
instance inside its transaction.

Security model: the table holds the session's digest, never its token; its lifetime is
decided from the stored times on the injected clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from .._models import SessionRecord
from ._pg_connections import PgConnections, notify
from ._pg_records import SESSION_COLUMNS, session_from_row, session_row
from ._redis_cache import LocalCache
from ._stats import StoreStats, counts_failures

__all__ = ["PgSessions"]


class PgSessions:
    """The widget-session methods of :class:`~nowramp_auth.PostgresKeyStore` (a mixin)."""

    stats: StoreStats
    channel: str
    sessions_cache: LocalCache[SessionRecord]
    _pg: PgConnections

    def _start_threads(self) -> None:
        raise NotImplementedError  # pragma: no cover - provided by the store

    @counts_failures("get_session")
    def get_session(self, session_id: str) -> SessionRecord | None:
        """The session (cached), or ``None``."""
        self._start_threads()
        query = f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = %s"
        return self.sessions_cache.get(
            session_id,
            lambda: session_from_row(
                self._pg.read(lambda c: c.execute(query, (session_id,)).fetchone())
            ),
        )

    async def get_session_async(self, session_id: str) -> SessionRecord | None:
        """Async twin of :meth:`get_session`."""
        return await self._pg.run_async(lambda: self.get_session(session_id))

    @counts_failures("insert_session")
    def insert_session(self, session: SessionRecord) -> None:
        """Add a widget session; ``ValueError`` when the id exists."""
        query = f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({_marks(9)})"
        try:
            self._pg.write(lambda c: c.execute(query, session_row(session)))
        except psycopg.errors.UniqueViolation:
            raise ValueError(f"session id {session.id} already exists") from None

    async def insert_session_async(self, session: SessionRecord) -> None:
        """Async twin of :meth:`insert_session`."""
        await self._pg.run_async(lambda: self.insert_session(session))

    @counts_failures("revoke_session")
    def revoke_session(self, session_id: str, at: datetime) -> SessionRecord | None:
        """Revoke a session (the first time stays); ``None`` when unknown."""
        query = (
            f"UPDATE sessions SET revoked_at = coalesce(revoked_at, %s) WHERE id = %s "
            f"RETURNING {SESSION_COLUMNS}"
        )

        def revoke(conn: psycopg.Connection[Any]) -> SessionRecord | None:
            found = session_from_row(conn.execute(query, (at, session_id)).fetchone())
            notify(conn, self.channel, session_id)
            return found

        found = self._pg.transaction(revoke)
        self.sessions_cache.invalidate(session_id)
        return found


def _marks(n: int) -> str:
    return ", ".join(["%s"] * n)
