"""Cross-instance cache invalidation: a background thread listening on Redis pub/sub.

Every mutation publishes the changed record's id on the namespace's channel in the same Lua
step that changes it; each instance's listener drops that id from its local cache. Pub/sub
is at-most-once, so every (re)subscription flushes the cache, and while the subscription is
down the cache takes no new entries (its TTL bounds how long old ones serve). On Redis
Cluster, published messages reach every node's subscribers, so one node is enough; the
listener moves to the next node after a failure.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import redis

from ._redis_clients import RedisClients, io_errors

__all__ = ["InvalidationListener"]

_log = logging.getLogger("nowramp_auth.redis")


class InvalidationListener:
    """Runs the listener thread; calls ``on_subscribed(True/False)`` as the subscription comes
    and goes (flushing the caches on True) and ``on_invalidate(id)`` per message (``"*"``:
    everything)."""

    def __init__(
        self,
        clients: RedisClients,
        channel: str,
        *,
        closing: threading.Event,
        on_subscribed: Callable[[bool], None],
        on_invalidate: Callable[[str], None],
    ) -> None:
        self._clients = clients
        self._channel = channel
        self._closing = closing
        self._on_subscribed = on_subscribed
        self._on_invalidate = on_invalidate
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once)."""
        self.thread = threading.Thread(target=self._loop, name="nowramp-invalidation", daemon=True)
        self.thread.start()

    def _nodes(self) -> list[Any]:
        client = self._clients.client()
        if not self._clients.cluster:
            return [client]
        options = self._clients.options
        return [redis.Redis(host=n.host, port=n.port, **options) for n in client.get_nodes()]

    def _loop(self) -> None:
        delay = 0.05
        attempt = 0
        while not self._closing.is_set():
            pubsub = None
            try:
                with io_errors():
                    nodes = self._nodes()
                node = nodes[attempt % len(nodes)]
                pubsub = node.pubsub()
                pubsub.subscribe(self._channel)
                while not self._closing.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._on_message(message)
                        delay = 0.05
            except Exception as exc:
                _log.warning(
                    "invalidation channel down (%s); cache fills paused", type(exc).__name__
                )
            finally:
                self._on_subscribed(False)
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
            attempt += 1
            self._closing.wait(delay)
            delay = min(delay * 2, 1.0)

    def _on_message(self, message: Mapping[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            self._on_subscribed(True)  # messages sent while we were away are lost: flush
        elif kind == "message":
            self._on_invalidate(str(message.get("data")))
