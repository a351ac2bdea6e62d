"""Cross-instance cache invalidation for PostgreSQL: a background thread on ``LISTEN``.

Every change sends ``pg_notify(channel, id)`` inside its own transaction, so the notification
is delivered at commit (and never for a change rolled back). The listener reports to a
:class:`~._cache_sync.CacheSync`: each id is dropped from the caches, and every (re)connection
flushes them (notifications sent while it was away are lost). A connection can die silently
(a dropped flow sends neither FIN nor RST), so after :data:`HEALTH_INTERVAL` seconds of
silence the listener runs ``SELECT 1``; one not answered within :data:`REPLY_DEADLINE`
seconds has its socket shut down by a watchdog, and the listener connects again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from ._cache_sync import CacheSync
from ._pg_connections import PgConnections

__all__ = ["HEALTH_INTERVAL", "REPLY_DEADLINE", "PgListener", "pg_listener_factory"]

HEALTH_INTERVAL = 1.0
REPLY_DEADLINE = 1.5
_log = logging.getLogger("nowramp_auth.postgres")


class PgListener:
    """The listener thread of one store (see the module docstring)."""

    def __init__(self, connections: PgConnections, channel: str, sync: CacheSync) -> None:
        self._connections = connections
        self._channel = channel
        self._sync = sync
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once)."""
        self.thread = threading.Thread(target=self._loop, name="nowramp-pg-listen", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        delay = 0.05
        while not self._sync.closing.is_set():
            started = time.monotonic()
            try:
                with psycopg.connect(
                    self._connections.url, autocommit=True, **_listen_options(self._connections)
                ) as conn:
                    conn.execute(f'LISTEN "{self._channel}"')
                    self._sync.set_subscribed(True)  # anything sent while away is lost: flush
                    self._listen(conn)
            except Exception as exc:
                _log.warning(
                    "invalidation channel down (%s); cache fills paused", type(exc).__name__
                )
            finally:
                self._sync.set_subscribed(False)
            if time.monotonic() - started > 2.0:
                delay = 0.05
            self._sync.closing.wait(delay)
            delay = min(delay * 2, 1.0)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        heard = time.monotonic()
        while not self._sync.closing.is_set():
            for notify in conn.notifies(timeout=0.25, stop_after=256):
                heard = time.monotonic()
                self._sync.invalidate(notify.payload)
            if time.monotonic() - heard >= HEALTH_INTERVAL:
                _checked(conn)
                heard = time.monotonic()


def _listen_options(connections: PgConnections) -> dict[str, Any]:
    return {"connect_timeout": connections.kwargs["connect_timeout"]}


def _checked(conn: psycopg.Connection[Any]) -> None:
    # SELECT 1 with a deadline: a watchdog shuts the socket down if no answer comes, so a
    # silently dead connection fails here instead of blocking forever.
    fd = conn.pgconn.socket
    watchdog = threading.Timer(REPLY_DEADLINE, _shut_down, args=(fd,))
    watchdog.start()
    try:
        conn.execute("SELECT 1")
    finally:
        watchdog.cancel()


def _shut_down(fd: int) -> None:
    with contextlib.suppress(OSError):
        dup = socket.socket(fileno=os.dup(fd))
        try:
            dup.shutdown(socket.SHUT_RDWR)
        finally:
            dup.close()


def pg_listener_factory(
    connections: PgConnections, channel: str
) -> Callable[[CacheSync], PgListener]:
    """What a :class:`CacheSync` builds its listener with."""

    def make(sync: CacheSync) -> PgListener:
        return PgListener(connections, channel, sync)

    return make
