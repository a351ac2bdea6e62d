"""Audit sinks: in-memory, Python ``logging`` (one JSON object per line), and fan-out.

Security model: an :class:`~nowramp_auth.AuditEvent` has no field that can hold a secret; the
core builds events from key ids, codes and request metadata only. A sink that raises never
changes an auth decision: :class:`AuditEmitter` counts the failure and moves on. Sinks that
do network I/O (the Redis stream sink) buffer and write from a background thread.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from ._models import AuditEvent

__all__ = ["AuditEmitter", "AuditSink", "LoggingAuditLog", "MemoryAuditLog"]

_log = logging.getLogger("nowramp_auth")


@runtime_checkable
class AuditSink(Protocol):
    """Anything with ``emit(event)``. ``emit`` must return quickly and may raise."""

    def emit(self, event: AuditEvent) -> None:
        """Record one event."""


class MemoryAuditLog:
    """Keeps the newest ``maxlen`` events in memory; ``.events`` is a list, oldest first."""

    def __init__(self, maxlen: int = 10_000) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        self._events: deque[AuditEvent] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def emit(self, event: AuditEvent) -> None:
        """Append one event (the oldest falls off when full)."""
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[AuditEvent]:
        """A copy of the kept events, oldest first."""
        with self._lock:
            return list(self._events)

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
    """Sends events to sinks; a failing sink is counted in ``dropped``, never raised."""

    def __init__(self, sinks: AuditSink | Iterable[AuditSink] | None) -> None:
        if sinks is None:
            self.sinks: tuple[AuditSink, ...] = ()
        elif isinstance(sinks, AuditSink):
            self.sinks = (sinks,)
        else:
            self.sinks = tuple(sinks)
        for sink in self.sinks:
            if not callable(getattr(sink, "emit", None)):
                raise TypeError(f"audit sink {sink!r} has no emit(event) method")
        self.dropped = 0

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def emit(self, event: AuditEvent) -> None:
        """Deliver ``event`` to every sink, swallowing (and counting) their failures."""
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception:  # a sink must never change an auth decision
                self.dropped += 1
                _log.warning(
                    "audit sink %s failed; event %s dropped", type(sink).__name__, event.type
                )
