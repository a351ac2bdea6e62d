"""The local cache in front of Redis: bounded, TTL-limited, invalidated across instances.

Security model: the cache holds what Redis holds (digests, never keys). Its TTL bounds how
long a revoked key can still be accepted by an instance that missed the invalidation message
(pub/sub is at-most-once). Every (re)subscription flushes the cache, and a fill that raced
with an invalidation is dropped, so a stale record is never cached after its invalidation.

Concurrent misses for one id collapse into one Redis lookup ("single flight"), for threads and
for asyncio tasks alike.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from cachetools import TTLCache

__all__ = ["LocalCache"]

V = TypeVar("V")
_MISSING = object()


class _Flight(Generic[V]):
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: V | None = None
        self.error: BaseException | None = None


class LocalCache(Generic[V]):
    """A TTL cache of positive and negative lookups with single-flight loading.

    Parameters:
        maxsize: entries kept for found records (negative answers get their own, equal budget,
            so a flood of unknown ids cannot evict hot keys).
        ttl: seconds an entry may be served; ``0`` disables caching.
    """

    def __init__(self, maxsize: int, ttl: float) -> None:
        if maxsize < 1:
            raise ValueError(f"cache size must be at least 1, got {maxsize}")
        if not 0 <= ttl <= 30:
            raise ValueError(f"cache TTL must be between 0 and 30 seconds, got {ttl}")
        self.enabled = ttl > 0
        self._found: TTLCache[str, V] = TTLCache(maxsize, ttl or 1)
        self._absent: TTLCache[str, bool] = TTLCache(maxsize, ttl or 1)
        self._lock = threading.Lock()
        self._epoch = 0
        self._flights: dict[str, _Flight[V]] = {}
        self._async_flights: dict[tuple[int, str], asyncio.Future[V | None]] = {}
        self.accepting = True
        """False while cross-instance invalidation is down: serve entries, add none."""

    def _lookup(self, key: str) -> object:
        with self._lock:
            value = self._found.get(key, _MISSING)
            if value is _MISSING and self._absent.get(key):
                value = None
            return value

    def peek(self, key: str, default: object) -> object:
        """The cached value (``None`` for a cached "absent"), or ``default``; never loads."""
        if not self.enabled:
            return default
        cached = self._lookup(key)
        return default if cached is _MISSING else cached

    def _fill(self, key: str, value: V | None, epoch: int) -> None:
        if not self.enabled or not self.accepting:
            return
        with self._lock:
            if epoch != self._epoch:  # invalidated while we were loading: do not cache
                return
            if value is None:
                self._absent[key] = True
            else:
                self._found[key] = value

    def get(self, key: str, load: Callable[[], V | None]) -> V | None:
        """The cached value of ``key``, else ``load()`` (once for concurrent callers)."""
        if self.enabled:
            cached = self._lookup(key)
            if cached is not _MISSING:
                return cached  # type: ignore[return-value]
        with self._lock:
            epoch = self._epoch
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = load()
            self._fill(key, flight.value, epoch)
            return flight.value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()

    async def get_async(self, key: str, load: Callable[[], Awaitable[V | None]]) -> V | None:
        """Async twin of :meth:`get` (single flight per event loop)."""
        if self.enabled:
            cached = self._lookup(key)
            if cached is not _MISSING:
                return cached  # type: ignore[return-value]
        loop = asyncio.get_running_loop()
        flight_key = (id(loop), key)
        existing = self._async_flights.get(flight_key)
        if existing is not None:
            try:
                return await asyncio.shield(existing)
            except asyncio.CancelledError:
                if not existing.cancelled():
                    raise  # we were cancelled ourselves
                # the leader was cancelled: load it ourselves below
        future: asyncio.Future[V | None] = loop.create_future()
        self._async_flights[flight_key] = future
        epoch = self._epoch
        try:
            value = await load()
            self._fill(key, value, epoch)
            future.set_result(value)
            return value
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: followers (if any) re-raise it
            raise
        finally:
            if self._async_flights.get(flight_key) is future:
                del self._async_flights[flight_key]

    def invalidate(self, key: str) -> None:
        """Drop one entry (and make in-flight loads not cache their answer)."""
        with self._lock:
            self._epoch += 1
            self._found.pop(key, None)
            self._absent.pop(key, None)

    def reset_after_fork(self) -> None:
        """In a forked child: new lock, no in-flight loads, no entries."""
        self._lock = threading.Lock()
        self._flights = {}
        self._async_flights = {}
        self.clear()

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._epoch += 1
            self._found.clear()
            self._absent.clear()

    def __len__(self) -> int:
        return len(self._found) + len(self._absent)
