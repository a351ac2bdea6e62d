"""The redis-py clients of one ``RedisKeyStore``, and what makes load different from failure.

Load is not unavailability. redis-py's asyncio pools raise ``MaxConnectionsError`` instead of
waiting when every connection is busy, so a burst larger than the pool would turn into false
``503``s. Every command therefore first takes a permit from a *gate*: a semaphore with as many
permits as the pool has connections (one gate for threads, one per event loop). A burst of any
size waits in that queue; ``queue_timeout`` (seconds, default 5) bounds the wait, and only
then is the store reported unavailable. ``socket_timeout`` bounds Redis' reply once a command
is sent; ``connect_timeout`` bounds connecting.

Failure is ``StoreUnavailable``: every exception the client library raises around a command
(connection errors, timeouts, and its own internal errors under concurrency) is turned into
it, and unexpected ones are logged by type. Reads are idempotent, so a read that fails is
tried once more on a fresh connection; script calls that change state are never retried by
us or by redis-py (both clients are built with no retries): a call whose outcome is unknown
fails closed.

A sync read that timed out is not tried again: the socket's own timeout fired, so Redis did
not answer in time. An async read that timed out is tried once more, because an asyncio
timeout is a timer of this process's event loop: when the loop was kept busy past the
deadline (a burst of work, a pause of the whole process), the timer and Redis' reply become
ready in the same turn and the timer wins, though the reply was there. An async read
therefore fails closed after at most twice ``socket_timeout``. Only waiting for a permit
(``queue_timeout``) is never repeated.

At the first connection the store reads ``maxmemory-policy`` and logs a warning, once, when
Redis may evict keys: key records carry no TTL while rate-limit state does, so under a
``volatile-*`` policy the limits would be evicted first and a used-up key would get a fresh
budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.backoff import NoBackoff

from . import _redis_scripts as scripts
from ._errors import StoreUnavailable
from ._redis_errors import (
    SLOT_MIGRATION_WAIT,
    following_redirections,
    io_errors,
    redirected_only,
    unavailable,
    warn_if_evicting,
    worth_retrying,
)

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_QUEUE_TIMEOUT",
    "RedisClients",
    "io_errors",
    "unavailable",
]

_log = logging.getLogger("nowramp_auth.redis")

DEFAULT_MAX_CONNECTIONS = 50
DEFAULT_QUEUE_TIMEOUT = 5.0
T = TypeVar("T")


class _LoopState:
    """What one event loop uses: its client, its gate, its script hashes and its batchers."""

    __slots__ = ("batchers", "client", "gate", "loop", "ready", "ready_lock")

    def __init__(self, loop: asyncio.AbstractEventLoop, client: Any, permits: int) -> None:
        self.loop = loop
        self.client = client
        self.gate = asyncio.Semaphore(permits)
        self.ready = False
        self.ready_lock = asyncio.Lock()
        self.batchers: dict[str, Any] = {}


class RedisClients:
    """Sync and per-event-loop async clients for one URL, behind gates.

    Parameters:
        url: the Redis URL; cluster: use the Redis Cluster protocol.
        options: redis-py connection options (timeouts, ``decode_responses``).
        max_connections: connections per client (per node on a cluster), and permits of
            each gate.
        queue_timeout: seconds a call may wait for a permit before the store is reported
            unavailable.
    """

    def __init__(
        self,
        url: str,
        *,
        cluster: bool,
        options: dict[str, Any],
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        queue_timeout: float = DEFAULT_QUEUE_TIMEOUT,
    ) -> None:
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise TypeError("max_connections must be an int")
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        if not queue_timeout > 0:
            raise ValueError(f"queue_timeout must be positive, got {queue_timeout}")
        self.url = url
        self.cluster = cluster
        self.options = options
        self.max_connections = max_connections
        self.queue_timeout = queue_timeout
        self._lock = threading.Lock()
        self._sync: Any = None
        self._gate = threading.BoundedSemaphore(max_connections)
        self._shas: dict[str, str] = {}
        self._loops: dict[int, _LoopState] = {}
        self._policy_checked = False

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        cluster: bool,
        socket_timeout: float,
        connect_timeout: float,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        queue_timeout: float = DEFAULT_QUEUE_TIMEOUT,
    ) -> RedisClients:
        """Clients for ``url`` with the store's options (replies decoded as text);
        ``ValueError`` for a timeout that is not positive."""
        for name, value in (
            ("socket_timeout", socket_timeout),
            ("connect_timeout", connect_timeout),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        options = {
            "decode_responses": True,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
        }
        return cls(
            url,
            cluster=cluster,
            options=options,
            max_connections=max_connections,
            queue_timeout=queue_timeout,
        )

    def after_fork(self) -> None:
        """In a forked child: new locks and gates, no clients (sockets are the parent's)."""
        self._lock = threading.Lock()
        self._gate = threading.BoundedSemaphore(self.max_connections)
        self._sync = None
        self._loops = {}

    # -- construction --------------------------------------------------------------------------
    def _pool_size(self) -> int:
        # Headroom over the gate for connections taken outside it (pub/sub, script loads).
        return self.max_connections + 4

    def _make_sync(self) -> Any:
        no_retry = redis.retry.Retry(NoBackoff(), 0)
        if self.cluster:
            return following_redirections(
                redis.cluster.RedisCluster.from_url(
                    self.url, retry=no_retry, max_connections=self._pool_size(), **self.options
                )
            )
        return redis.Redis.from_url(
            self.url, retry=no_retry, max_connections=self._pool_size(), **self.options
        )

    def _make_async(self) -> Any:
        no_retry = redis.asyncio.retry.Retry(NoBackoff(), 0)
        if self.cluster:
            return following_redirections(
                redis.asyncio.cluster.RedisCluster.from_url(
                    self.url, retry=no_retry, max_connections=self._pool_size(), **self.options
                )
            )
        return redis.asyncio.Redis.from_url(
            self.url, retry=no_retry, max_connections=self._pool_size(), **self.options
        )

    # -- sync ----------------------------------------------------------------------------------
    def client(self) -> Any:
        """The sync client (created on first use)."""
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    with io_errors():
                        self._sync = self._make_sync()
                    self._check_policy_sync(self._sync)
        return self._sync

    @contextlib.contextmanager
    def slot(self) -> Iterator[Any]:
        """A gate permit and the sync client for the duration of the block; failures inside
        become :class:`StoreUnavailable`."""
        if not self._gate.acquire(timeout=self.queue_timeout):
            raise StoreUnavailable("Redis unavailable: no connection within queue_timeout")
        try:
            with io_errors():
                yield self.client()
        finally:
            self._gate.release()

    def read(self, call: Callable[[Any], T]) -> T:
        """Run an idempotent ``call(client)``; a failure other than a timeout is tried once
        more (a stale connection after a Redis restart, an internal client error)."""
        for attempt in (1, 2):
            try:
                with self.slot() as client:
                    return call(client)
            except StoreUnavailable as exc:
                if attempt == 2 or not worth_retrying(exc):
                    raise
            except Exception as exc:  # the client library's own internal errors
                if attempt == 2:
                    raise unavailable(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def write(self, call: Callable[[Any], T]) -> T:
        """Run a state-changing ``call(client)`` once; any failure is ``StoreUnavailable``.
        On a cluster, a call that only met redirections (it did not run) follows a slot
        migration for up to :data:`SLOT_MIGRATION_WAIT` seconds."""
        deadline = time.monotonic() + SLOT_MIGRATION_WAIT
        while True:
            try:
                with self.slot() as client:
                    return call(client)
            except StoreUnavailable as exc:
                if not (self.cluster and redirected_only(exc) and time.monotonic() < deadline):
                    raise
            except Exception as exc:
                raise unavailable(exc) from exc
            time.sleep(0.05)

    def sha(self, name: str) -> str:
        """The SHA1 of script ``name``: what Redis names it by (computed here, no round trip;
        a Redis that does not know it yet answers NOSCRIPT, then :meth:`load_script`)."""
        sha = self._shas.get(name)
        if sha is None:
            body: str = getattr(scripts, name)
            sha = self._shas[name] = hashlib.sha1(body.encode(), usedforsecurity=False).hexdigest()
        return sha

    def load_script(self, name: str) -> str:
        """Load script ``name`` into Redis (after NOSCRIPT) and return its SHA1."""
        body: str = getattr(scripts, name)
        sha: str = self.write(lambda client: client.script_load(body))
        return sha

    def _check_policy_sync(self, client: Any) -> None:
        if self._policy_checked:
            return
        self._policy_checked = True
        try:
            answer = client.config_get("maxmemory-policy")
        except Exception as exc:  # CONFIG may be disabled (managed Redis): say so, go on
            _log.info("could not read maxmemory-policy (%s)", type(exc).__name__)
            return
        warn_if_evicting(answer)

    async def _check_policy_async(self, client: Any) -> None:
        if self._policy_checked:
            return
        self._policy_checked = True
        try:
            answer = await asyncio.wait_for(
                client.config_get("maxmemory-policy"), self.queue_timeout
            )
        except Exception as exc:
            _log.info("could not read maxmemory-policy (%s)", type(exc).__name__)
            return
        warn_if_evicting(answer)

    # -- async ---------------------------------------------------------------------------------
    def loop_state(self) -> _LoopState:
        """The running event loop's client, gate and batchers (created on first use)."""
        loop = asyncio.get_running_loop()
        state = self._loops.get(id(loop))
        if state is None or state.loop is not loop:
            for key, other in list(self._loops.items()):
                if other.loop.is_closed():
                    del self._loops[key]
            with io_errors():
                client = self._make_async()
            state = self._loops[id(loop)] = _LoopState(loop, client, self.max_connections)
        return state

    async def _ready(self, state: _LoopState) -> None:
        # A cluster client initialises its slot map once, before any concurrent command:
        # redis-py initialising it from many commands at once races with itself.
        async with state.ready_lock:
            if not state.ready:
                if self.cluster:
                    await asyncio.wait_for(state.client.initialize(), self.queue_timeout)
                await self._check_policy_async(state.client)
                state.ready = True

    async def _acquire(self, state: _LoopState) -> None:
        if not state.gate.locked():  # a permit is free: take it without a timer
            await state.gate.acquire()
            return
        try:
            await asyncio.wait_for(state.gate.acquire(), self.queue_timeout)
        except TimeoutError:
            raise StoreUnavailable(
                "Redis unavailable: no connection within queue_timeout"
            ) from None

    async def _call_async(
        self, call: Callable[[Any], Awaitable[T]], state: _LoopState | None = None
    ) -> T:
        state = state or self.loop_state()
        try:
            if not state.ready:
                await self._ready(state)
            await self._acquire(state)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise unavailable(exc) from exc
        try:
            return await call(state.client)
        except Exception as exc:
            raise unavailable(exc) from exc
        finally:
            state.gate.release()

    async def read_async(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """Run an idempotent ``await call(client)``; any failure of the call itself, timeouts
        included (see the module docstring), is tried once more. Running out of
        ``queue_timeout`` is not."""
        try:
            return await self._call_async(call)
        except StoreUnavailable as exc:
            if exc.__cause__ is None:  # no permit within queue_timeout
                raise
            return await self._call_async(call)

    async def write_async(
        self, call: Callable[[Any], Awaitable[T]], state: _LoopState | None = None
    ) -> T:
        """Run a state-changing ``await call(client)`` once (fails closed); on a cluster, a
        call that met only redirections follows a slot migration (see :meth:`write`)."""
        deadline = time.monotonic() + SLOT_MIGRATION_WAIT
        while True:
            try:
                return await self._call_async(call, state)
            except StoreUnavailable as exc:
                if not (self.cluster and redirected_only(exc) and time.monotonic() < deadline):
                    raise
            await asyncio.sleep(0.05)

    async def sha_async(self, name: str, *, reload: bool = False) -> str:
        """The SHA1 of script ``name``; ``reload`` first loads it through this loop's client
        (after NOSCRIPT)."""
        if reload:
            body: str = getattr(scripts, name)
            await self.write_async(lambda client: client.script_load(body))
        return self.sha(name)

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the sync client."""
        if self._sync is not None:
            with contextlib.suppress(Exception):
                self._sync.close()

    async def aclose(self) -> None:
        """Close the running loop's async client."""
        state = self._loops.pop(id(asyncio.get_running_loop()), None)
        if state is not None:
            with contextlib.suppress(Exception):
                await state.client.aclose()
