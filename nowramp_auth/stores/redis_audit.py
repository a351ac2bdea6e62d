"""``RedisStreamAuditLog``: audit events in a capped Redis Stream, shared by every instance.

Security model: events hold ids, codes and request metadata, never a secret. ``emit`` only
appends to an in-process queue; a background thread writes batches with ``XADD ... MAXLEN ~``,
so a slow or unreachable Redis never blocks a request or changes a decision. When the queue is
full, or Redis stays down, events are dropped and counted in ``dropped``.

Each event of a project is also appended to that project's own capped stream
(``<namespace>:audit:p:<project id>``), so a partner's audit page reads only its projects'
events: no number of other events can push them out, and a page costs the same however
many events other projects have.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._models import AuditEvent
from ._queued_audit import QueuedAuditSink

if TYPE_CHECKING:
    from .redis import RedisKeyStore

__all__ = ["RedisStreamAuditLog"]


class RedisStreamAuditLog(QueuedAuditSink):
    """Audit sink writing to the Redis Stream ``<namespace>:audit`` of a :class:`RedisKeyStore`.

    Parameters:
        store: the Redis store whose connection and namespace to use.
        maxlen: approximate cap of the stream (``XADD MAXLEN ~``), default 100,000.
        project_maxlen: approximate cap of each project's stream (default 10,000).
        queue_size: events buffered in memory before new ones are dropped (default 10,000).
        flush_interval: seconds between background writes (default 0.2).
    """

    def __init__(
        self,
        store: RedisKeyStore,
        *,
        maxlen: int = 100_000,
        project_maxlen: int = 10_000,
        queue_size: int = 10_000,
        flush_interval: float = 0.2,
    ) -> None:
        if maxlen < 1 or project_maxlen < 1:
            raise ValueError("maxlen and project_maxlen must be positive")
        super().__init__(queue_size=queue_size, flush_interval=flush_interval)
        self.store = store
        self.stream = store.names.audit
        self.maxlen = maxlen
        self.project_maxlen = project_maxlen

    def _write(self, batch: list[AuditEvent]) -> None:
        from ._redis_clients import io_errors

        with io_errors():
            pipe = self.store._client().pipeline(transaction=False)
            for event in batch:
                fields = {"event": json.dumps(event.to_dict())}
                pipe.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)
                if event.project_id is not None:
                    pipe.xadd(
                        self.project_stream(event.project_id),
                        fields,
                        maxlen=self.project_maxlen,
                        approximate=True,
                    )
            pipe.execute()

    def project_stream(self, project_id: str) -> str:
        """The name of one project's stream."""
        return f"{self.stream}:p:{project_id}"

    def read(
        self,
        *,
        key_id: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        project_ids: Iterable[str] | None = None,
    ) -> list[AuditEvent]:
        """Events newest first, filtered by key id, type and time; at most ``limit``.
        ``project_ids``: only those projects' events, read from their own streams."""
        from ._redis_clients import io_errors

        def wanted(event: AuditEvent) -> bool:
            return (key_id is None or event.key_id == key_id) and (
                type is None or event.type == type
            )

        with io_errors():
            client = self.store._client()
            if project_ids is None:
                return _newest(client, self.stream, wanted, since, limit)
            events = [
                event
                for project_id in sorted(set(project_ids))
                for event in _newest(client, self.project_stream(project_id), wanted, since, limit)
            ]
        events.sort(key=lambda e: e.at, reverse=True)
        return events[:limit]


def _newest(
    client: Any,
    stream: str,
    wanted: Callable[[AuditEvent], bool],
    since: datetime | None,
    limit: int,
) -> list[AuditEvent]:
    # The newest `limit` wanted events of one stream, read backwards 500 entries at a time.
    events: list[AuditEvent] = []
    last = "+"
    while len(events) < limit:
        rows = client.xrevrange(stream, max=last, count=500)
        for entry_id, fields in rows:
            if entry_id == last:
                continue
            event = AuditEvent.from_dict(json.loads(fields["event"]))
            if since is not None and event.at < since:
                return events
            if wanted(event):
                events.append(event)
                if len(events) >= limit:
                    return events
        if len(rows) < 500:
            break
        last = rows[-1][0]
    return events
