"""``RedisStreamAuditLog``: audit events in a capped Redis Stream, shared by every instance.

Security model: events hold ids, codes and request metadata, never a secret. ``emit`` only
appends to an in-process queue; a background thread writes batches with ``XADD ... MAXLEN ~``,
so a slow or unreachable Redis never blocks a request or changes a decision. When the queue is
full, or Redis stays down, events are dropped and counted in ``dropped``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import queue
import threading
import weakref
from datetime import datetime
from typing import TYPE_CHECKING

from .._models import AuditEvent
from ._errors import StoreUnavailable

if TYPE_CHECKING:
    from .redis import RedisKeyStore

__all__ = ["RedisStreamAuditLog"]

_log = logging.getLogger("nowramp_auth.audit")


class RedisStreamAuditLog:
    """Audit sink writing to the Redis Stream ``<namespace>:audit`` of a :class:`RedisKeyStore`.

    Parameters:
        store: the Redis store whose connection and namespace to use.
        maxlen: approximate cap of the stream (``XADD MAXLEN ~``), default 100,000.
        queue_size: events buffered in memory before new ones are dropped (default 10,000).
        flush_interval: seconds between background writes (default 0.2).
    """

    emit_never_blocks = True

    def __init__(
        self,
        store: RedisKeyStore,
        *,
        maxlen: int = 100_000,
        queue_size: int = 10_000,
        flush_interval: float = 0.2,
    ) -> None:
        if maxlen < 1 or queue_size < 1 or flush_interval <= 0:
            raise ValueError("maxlen, queue_size and flush_interval must be positive")
        self.store = store
        self.stream = store.names.audit
        self.maxlen = maxlen
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
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closing.is_set():
                self._thread = threading.Thread(target=self._run, name="nowramp-audit", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._closing.wait(self.flush_interval):
            self.flush()

    def flush(self) -> None:
        """Write every queued event now (drops and counts them when Redis is down)."""
        batch: list[AuditEvent] = []
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not batch:
            return
        try:
            from ._redis_clients import io_errors

            with io_errors():
                pipe = self.store._client().pipeline(transaction=False)
                for event in batch:
                    pipe.xadd(
                        self.stream,
                        {"event": json.dumps(event.to_dict())},
                        maxlen=self.maxlen,
                        approximate=True,
                    )
                pipe.execute()
            self.written += len(batch)
        except StoreUnavailable:
            self.dropped += len(batch)
            _log.warning("audit stream unavailable; %d events dropped", len(batch))

    def read(
        self,
        *,
        key_id: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Events newest first, filtered by key id, type and time; at most ``limit``."""
        from ._redis_clients import io_errors

        events: list[AuditEvent] = []
        last = "+"
        with io_errors():
            client = self.store._client()
            while len(events) < limit:
                rows = client.xrevrange(self.stream, max=last, count=500)
                for entry_id, fields in rows:
                    if entry_id == last:
                        continue
                    event = AuditEvent.from_dict(json.loads(fields["event"]))
                    if since is not None and event.at < since:
                        return events
                    if (key_id is None or event.key_id == key_id) and (
                        type is None or event.type == type
                    ):
                        events.append(event)
                        if len(events) >= limit:
                            return events
                if len(rows) < 500:
                    break
                last = rows[-1][0]
        return events

    def close(self) -> None:
        """Write what is queued and stop the background thread."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with contextlib.suppress(Exception):
            self.flush()


def _close_at_exit(ref: weakref.ref[RedisStreamAuditLog]) -> None:
    log = ref()
    if log is not None:
        log.close()
