"""An audit sink that writes behind: ``emit`` only queues, a background thread writes batches.

Security model: a slow or unreachable backend never blocks a request or changes a decision;
when the queue is full, or the backend stays down, events are dropped and counted in
``dropped`` (the metrics read it). Subclasses say how a batch is written.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
import weakref

from .._models import AuditEvent
from ._errors import StoreUnavailable

__all__ = ["QueuedAuditSink"]

_log = logging.getLogger("nowramp_auth.audit")


class QueuedAuditSink:
    """The queue, the writer thread and the drop count of a write-behind audit sink."""

    emit_never_blocks = True

    def __init__(self, *, queue_size: int, flush_interval: float) -> None:
        if queue_size < 1 or flush_interval <= 0:
            raise ValueError("queue_size and flush_interval must be positive")
        self.flush_interval = flush_interval
        self._queue: queue.Queue[AuditEvent] = queue.Queue(queue_size)
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0
        self.written = 0
        atexit.register(_close_at_exit, weakref.ref(self))

    def _write(self, batch: list[AuditEvent]) -> None:
        """Write a batch (``StoreUnavailable`` when the backend cannot take it)."""
        raise NotImplementedError  # pragma: no cover - each sink says how

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
                        target=self._run, name="nowramp-audit", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while not self._closing.wait(self.flush_interval):
            self.flush()

    def flush(self) -> None:
        """Write every queued event now (dropped and counted when the backend is down)."""
        batch: list[AuditEvent] = []
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not batch:
            return
        try:
            self._write(batch)
            self.written += len(batch)
        except StoreUnavailable:
            self.dropped += len(batch)
            _log.warning("audit backend unavailable; %d events dropped", len(batch))

    def close(self) -> None:
        """Write what is queued and stop the background thread."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with contextlib.suppress(Exception):
            self.flush()


def _close_at_exit(ref: weakref.ref[QueuedAuditSink]) -> None:
    sink = ref()
    if sink is not None:
        sink.close()
