"""``PostgresAuditLog``: audit events in a table of a :class:`PostgresKeyStore`'s database.

Security model: events hold ids, codes and request metadata, never a secret. ``emit`` only
appends to an in-process queue; a background thread writes batches (one transaction each), so
a slow or unreachable database never blocks a request or changes a decision. When the queue
is full, or the database stays down, events are dropped and counted in ``dropped``. The table
is indexed per project and per key: a partner's audit page costs the same however many
events other projects have.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._models import AuditEvent
from ._queued_audit import QueuedAuditSink

if TYPE_CHECKING:
    from .postgres import PostgresKeyStore

__all__ = ["PostgresAuditLog"]

_COLUMNS = "at, type, key_id, project_id, code, client_ip, method, path, session_id, actor, detail"


class PostgresAuditLog(QueuedAuditSink):
    """Audit sink writing to the ``audit_events`` table of a :class:`PostgresKeyStore`.

    Parameters:
        store: the PostgreSQL store whose database and schema to use.
        queue_size: events buffered in memory before new ones are dropped (default 10,000).
        flush_interval: seconds between background writes (default 0.2).
    """

    def __init__(
        self, store: PostgresKeyStore, *, queue_size: int = 10_000, flush_interval: float = 0.2
    ) -> None:
        super().__init__(queue_size=queue_size, flush_interval=flush_interval)
        self.store = store

    def _write(self, batch: list[AuditEvent]) -> None:
        rows = [
            (
                e.at,
                e.type,
                e.key_id,
                e.project_id,
                e.code,
                e.client_ip,
                e.method,
                e.path,
                e.session_id,
                e.actor,
                e.detail,
            )
            for e in batch
        ]
        insert = f"INSERT INTO audit_events ({_COLUMNS}) VALUES ({', '.join(['%s'] * 11)})"  # noqa: S608

        def write(conn: Any) -> None:
            with conn.cursor() as cursor:
                cursor.executemany(insert, rows)

        self.store._pg.transaction(write)  # one transaction: all of the batch, or none

    def read(
        self,
        *,
        key_id: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        project_ids: Iterable[str] | None = None,
    ) -> list[AuditEvent]:
        """Events newest first, filtered by key, type, time and projects; at most ``limit``
        (each filter an indexed condition)."""
        conditions: list[str] = []
        values: list[Any] = []
        for column, value in (("key_id", key_id), ("type", type)):
            if value is not None:
                conditions.append(f"{column} = %s")
                values.append(value)
        if since is not None:
            conditions.append("at >= %s")
            values.append(since)
        if project_ids is not None:
            conditions.append("project_id = ANY(%s)")
            values.append(sorted(set(project_ids)))
        where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
        query = f"SELECT {_COLUMNS} FROM audit_events {where} ORDER BY id DESC LIMIT %s"  # noqa: S608
        rows = self.store._pg.read(lambda conn: conn.execute(query, (*values, limit)).fetchall())
        return [
            AuditEvent(
                r[1],
                r[0],
                key_id=r[2],
                project_id=r[3],
                code=r[4],
                client_ip=r[5],
                method=r[6],
                path=r[7],
                session_id=r[8],
                actor=r[9],
                detail=r[10],
            )
            for r in rows
        ]
