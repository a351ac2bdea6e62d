"""Cross-instance cache invalidation: a background thread listening on Redis pub/sub.

Every mutation publishes the changed record's id on the namespace's channel in the same Lua
step that changes it; each instance's listener drops that id from its local cache. Pub/sub
is at-most-once, so every (re)subscription flushes the cache, and while the subscription is
down the cache takes no new entries (its TTL bounds how long old ones serve). On Redis
Cluster, published messages reach every node's subscribers, so one node is enough; the
listener moves to the next node after a failure.

A subscription can also die silently: a NAT or load balancer that drops an idle flow sends
neither FIN nor RST, and the socket just stops delivering. So the listener checks its channel:
after :data:`HEALTH_INTERVAL` seconds without any message it sends a ``PING`` on the
subscription, and a channel that has not answered within :data:`REPLY_DEADLINE` seconds is
dropped and replaced (with the cache flushed, as on every re-subscription). A dead channel is
thus noticed within ``HEALTH_INTERVAL + REPLY_DEADLINE`` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis

from ._cache_sync import CacheSync
from ._redis_clients import RedisClients, io_errors

__all__ = ["InvalidationListener", "listener_factory"]

_log = logging.getLogger("nowramp_auth.redis")

HEALTH_INTERVAL = 1.0
"""Seconds of silence on the subscription before the listener pings it."""
REPLY_DEADLINE = 1.5
"""Seconds a ping may go unanswered before the subscription is declared dead."""


class ChannelSilent(Exception):
    """The subscription did not answer a ping in time (a silently dropped connection)."""


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
        health_interval: float = HEALTH_INTERVAL,
        reply_deadline: float = REPLY_DEADLINE,
    ) -> None:
        self._health_interval = health_interval
        self._reply_deadline = reply_deadline
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
            started = time.monotonic()
            try:
                with io_errors():
                    nodes = self._nodes()
                node = nodes[attempt % len(nodes)]
                pubsub = node.pubsub()
                pubsub.subscribe(self._channel)
                self._listen(pubsub)
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
            if time.monotonic() - started > 2.0:  # it was up for a while: come back quickly
                delay = 0.05
            self._closing.wait(delay)
            delay = min(delay * 2, 1.0)

    def _listen(self, pubsub: Any) -> None:
        # Deliver messages until closing; ping the channel when it has been silent, and give
        # up on it (ChannelSilent) when a ping goes unanswered past the deadline.
        heard = time.monotonic()
        pinged: float | None = None
        while not self._closing.is_set():
            message = pubsub.get_message(timeout=0.25)
            now = time.monotonic()
            if message is not None:
                heard, pinged = now, None
                self._on_message(message)
            elif pinged is not None:
                if now - pinged > self._reply_deadline:
                    raise ChannelSilent(f"no reply to a ping in {self._reply_deadline:g} s")
            elif now - heard >= self._health_interval:
                pubsub.ping()
                pinged = now

    def _on_message(self, message: Mapping[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            self._on_subscribed(True)  # messages sent while we were away are lost: flush
        elif kind == "message":
            self._on_invalidate(str(message.get("data")))


def listener_factory(
    clients: RedisClients, channel: str
) -> Callable[[CacheSync], InvalidationListener]:
    """What a :class:`CacheSync` builds its listener with: ``channel`` on ``clients``."""

    def make(sync: CacheSync) -> InvalidationListener:
        return InvalidationListener(
            clients,
            channel,
            closing=sync.closing,
            on_subscribed=sync.set_subscribed,
            on_invalidate=sync.invalidate,
        )

    return make
