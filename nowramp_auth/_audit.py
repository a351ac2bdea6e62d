"""Audit sinks: in-memory, Python ``logging`` (one JSON object per line), and fan-out.

Security model: an :class:`~nowramp_auth.AuditEvent` has no field that can hold a secret; the
core builds events from key ids, codes and request metadata only. A sink that raises never
changes an auth decision, and a slow one never blocks a request: :class:`AuditEmitter` feeds
sinks that may block from a background thread and counts failures and overflow in ``dropped``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from ._models import AuditEvent

__all__ = ["AuditEmitter", "AuditSink", "LoggingAuditLog", "MemoryAuditLog"]

_log = logging.getLogger("nowramp_auth")


@runtime_checkable
class AuditSink(Protocol):
    """Anything with ``emit(event)``. ``emit`` must return quickly and may raise."""

    def emit(self, event: AuditEvent) -> None:
        """Record one event."""


FailureFields = tuple[float, str | None, str, str | None, str | None, str | None, str | None]
"""``auth.failed`` as raw fields: (at in epoch seconds, key id, code, client ip, method, path,
project id)."""


def failure_event(fields: FailureFields) -> AuditEvent:
    """The :class:`AuditEvent` of raw ``auth.failed`` fields."""
    at, key_id, code, client_ip, method, path, project_id = fields
    return AuditEvent(
        "auth.failed",
        datetime.fromtimestamp(at, UTC),
        key_id=key_id,
        code=code,
        client_ip=client_ip,
        method=method,
        path=path,
        project_id=project_id,
    )


class MemoryAuditLog:
    """Keeps the newest ``maxlen`` events in memory; ``.events`` is a list, oldest first.

    Each project's events are also kept in a deque of their own (the newest
    ``project_maxlen``, default ``maxlen``), so a project's events stay readable
    (``read(project_ids=...)``) however many events other projects, or unauthenticated
    requests, add. Refusals are frequent, so ``auth.failed`` events are kept as raw fields
    and become :class:`AuditEvent` objects only when read."""

    emit_never_blocks = True

    def __init__(self, maxlen: int = 10_000, *, project_maxlen: int | None = None) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        if project_maxlen is not None and project_maxlen < 1:
            raise ValueError(f"project_maxlen must be at least 1, got {project_maxlen}")
        self._events: deque[AuditEvent | FailureFields] = deque(maxlen=maxlen)
        self._project_maxlen = project_maxlen or maxlen
        self._by_project: dict[str, deque[AuditEvent | FailureFields]] = {}
        self._lock = threading.Lock()

    def _project_log(self, project_id: str) -> deque[AuditEvent | FailureFields]:
        log = self._by_project.get(project_id)
        if log is None:
            log = self._by_project.setdefault(project_id, deque(maxlen=self._project_maxlen))
        return log

    def emit(self, event: AuditEvent) -> None:
        """Append one event (the oldest falls off when full). ``deque.append`` is atomic, so
        no lock: this runs on every refused request."""
        self._events.append(event)
        if event.project_id is not None:
            self._project_log(event.project_id).append(event)

    def emit_failure(self, fields: FailureFields) -> None:
        """Append one ``auth.failed`` event as raw fields (built when read)."""
        self._events.append(fields)
        if fields[6] is not None:
            self._project_log(fields[6]).append(fields)

    @property
    def events(self) -> list[AuditEvent]:
        """A copy of the kept events, oldest first."""
        with self._lock:
            kept = list(self._events)
        return [e if isinstance(e, AuditEvent) else failure_event(e) for e in kept]

    def query(
        self, *, key_id: str | None = None, type: str | None = None, limit: int | None = None
    ) -> list[AuditEvent]:
        """Events newest first, optionally of one key and/or one type."""
        events = [
            e
            for e in reversed(self.events)
            if (key_id is None or e.key_id == key_id) and (type is None or e.type == type)
        ]
        return events[:limit] if limit is not None else events

    def read(
        self,
        *,
        key_id: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        project_ids: Iterable[str] | None = None,
    ) -> list[AuditEvent]:
        """Events newest first, filtered like ``RedisStreamAuditLog.read`` (``project_ids``:
        only those projects' events, from their own deques)."""
        if project_ids is None:
            events = self.query(key_id=key_id, type=type)
        else:
            with self._lock:
                kept = [e for p in set(project_ids) for e in self._by_project.get(p, ())]
            events = [e if isinstance(e, AuditEvent) else failure_event(e) for e in kept]
            events = [
                e
                for e in events
                if (key_id is None or e.key_id == key_id) and (type is None or e.type == type)
            ]
            events.sort(key=lambda e: e.at, reverse=True)
        if since is not None:
            events = [e for e in events if e.at >= since]
        return events[:limit]


class LoggingAuditLog:
    """Writes each event as one JSON object per line to a :mod:`logging` logger.

    Parameters:
        logger: the logger (default ``logging.getLogger("nowramp_auth.audit")``).
        level: the level of each record (default ``INFO``).
    """

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger or logging.getLogger("nowramp_auth.audit")
        self.level = level

    def emit(self, event: AuditEvent) -> None:
        """Log one event as a JSON line."""
        if self.logger.isEnabledFor(self.level):
            self.logger.log(self.level, json.dumps(event.to_dict(), sort_keys=True))


class AuditEmitter:
    """Sends events to sinks without ever blocking or failing the caller.

    Sinks that say ``emit_never_blocks = True`` (the in-memory log, the Redis stream, which
    queues by itself) get events inline. Every other sink (``logging`` handlers can block on a
    disk or a socket; your own sink may be slow) gets them from one background thread through a
    bounded queue. Failures and overflow are counted in ``dropped``, never raised.
    """

    def __init__(self, sinks: AuditSink | Iterable[AuditSink] | None, queue_size: int = 10_000):
        if sinks is None:
            all_sinks: tuple[AuditSink, ...] = ()
        elif isinstance(sinks, AuditSink):
            all_sinks = (sinks,)
        else:
            all_sinks = tuple(sinks)
        for sink in all_sinks:
            if not callable(getattr(sink, "emit", None)):
                raise TypeError(f"audit sink {sink!r} has no emit(event) method")
        self.sinks = all_sinks
        self._inline = tuple(s for s in all_sinks if getattr(s, "emit_never_blocks", False))
        self._deferred = tuple(s for s in all_sinks if s not in self._inline)
        self._raw_only = not self._deferred and all(
            callable(getattr(s, "emit_failure", None)) for s in self._inline
        )
        self._queue: queue.Queue[AuditEvent] = queue.Queue(queue_size)
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def emit(self, event: AuditEvent) -> None:
        """Deliver ``event``: inline to non-blocking sinks, queued for the others."""
        for sink in self._inline:
            self._deliver(sink, event)
        if self._deferred:
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self.dropped += len(self._deferred)
                return
            if self._worker is None:
                self._start()

    def emit_failure(
        self,
        at: float,
        key_id: str | None,
        code: str,
        client_ip: str | None,
        method: str | None,
        path: str | None,
        project_id: str | None = None,
    ) -> None:
        """Deliver an ``auth.failed`` event (the one of every refused request): sinks that take
        raw fields get a tuple; the event object is built only if another sink needs it."""
        fields: FailureFields = (at, key_id, code, client_ip, method, path, project_id)
        if self._raw_only:
            for sink in self._inline:
                try:
                    sink.emit_failure(fields)  # type: ignore[attr-defined]
                except Exception:
                    self.dropped += 1
            return
        self.emit(failure_event(fields))

    def _deliver(self, sink: AuditSink, event: AuditEvent) -> None:
        try:
            sink.emit(event)
        except Exception:  # a sink must never change an auth decision
            self.dropped += 1
            _log.warning("audit sink %s failed; event %s dropped", type(sink).__name__, event.type)

    def _start(self) -> None:
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._run, name="nowramp-audit-sinks", daemon=True
                )
                self._worker.start()

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            try:
                for sink in self._deferred:
                    self._deliver(sink, event)
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until queued events have reached the background sinks; ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True
