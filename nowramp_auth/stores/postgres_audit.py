"""``PostgresAuditLog``: audit events in a table of a :class:`PostgresKeyStore`'s database.

Security model: events hold ids, codes and request metadata, never a secret. ``emit`` only
appends to an in-process queue; a background thread writes batches (one transaction each), so
a slow or unreachable database never blocks a request or changes a decision. When the queue
is full, or the database stays down, events are dropped and counted in ``dropped``. The table
is indexed per project and per key: a partner's audit page costs the same however many
events other projects have.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
import weakref
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._models import AuditEvent
from ._errors import StoreUnavailable

if TYPE_CHECKING:
    from .postgres import PostgresKeyStore

__all__ = ["PostgresAuditLog"]

_log = logging.getLogger("nowramp_auth.audit")
_COLUMNS = "at, type, key_id, project_id, code, client_ip, method, path, session_id, actor, detail"


class PostgresAuditLog:
    """Audit sink writing to the ``audit_events`` table of a :class:`PostgresKeyStore`.

    Parameters:
        store: the PostgreSQL store whose database and schema to use.
        queue_size: events buffered in memory before new ones are dropped (default 10,000).
        flush_interval: seconds between background writes (default 0.2).
    """

    emit_never_blocks = True

    def __init__(
        self, store: PostgresKeyStore, *, queue_size: int = 10_000, flush_interval: float = 0.2
    ) -> None:
        if queue_size < 1 or flush_interval <= 0:
            raise ValueError("queue_size and flush_interval must be positive")
        self.store = store
        self.flush_interval = flush_interval
        self._queue: queue.Queue[AuditEvent] = queue.Queue(queue_size)
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0
        self.written = 0
        atexit.register(_close_at_exit, weakref.ref(self))

    def emit(self, event: AuditEvent) -> None:
        """Queue one event (never blocks; counts a drop when the queue is full)."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            return
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._closing.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name="nowramp-pg-audit", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while not self._closing.wait(self.flush_interval):
            self.flush()

    def flush(self) -> None:
        """Write every queued event now, in one transaction (dropped and counted when the
        database is down)."""
        batch: list[AuditEvent] = []
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not batch:
            return
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

        try:
            self.store._pg.transaction(write)
            self.written += len(batch)
        except StoreUnavailable:
            self.dropped += len(batch)
            _log.warning("audit table unavailable; %d events dropped", len(batch))

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

    def close(self) -> None:
        """Write what is queued and stop the background thread."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with contextlib.suppress(Exception):
            self.flush()


def _close_at_exit(ref: weakref.ref[PostgresAuditLog]) -> None:
    log = ref()
    if log is not None:
        log.close()
