"""The local cache in front of Redis: bounded, TTL-limited, invalidated across instances.

Security model: the cache holds what Redis holds (digests, never keys). Its TTL bounds how
long a revoked key can still be accepted by an instance that missed the invalidation message
(pub/sub is at-most-once). Every (re)subscription flushes the cache, and a fill that raced
with an invalidation is dropped, so a stale record is never cached after its invalidation.

Concurrent misses for one id collapse into one Redis lookup ("single flight"), for threads and
for asyncio tasks alike.

Found records live in a plain dict of ``(value, deadline)`` (insertion-ordered, the oldest
dropped first when full), so :meth:`LocalCache.current` answers the request path's "is this
still the record we hold?" with one dict lookup and one clock read, without the lock. Negative
answers live in a cachetools ``TTLCache`` with its own, equal budget.
"""

from __future__ import annotations

import asyncio
import threading
import time
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
        self._ttl = ttl
        self._maxsize = maxsize
        self._found: dict[str, tuple[V, float]] = {}
        self._absent: TTLCache[str, bool] = TTLCache(maxsize, ttl or 1)
        self._lock = threading.Lock()
        self._epoch = 0
        self._flights: dict[str, _Flight[V]] = {}
        self._async_flights: dict[tuple[int, str], asyncio.Future[V | None]] = {}
        self.accepting = True
        """False while cross-instance invalidation is down: serve entries, add none."""
        self.hits = 0
        """Lookups answered from the cache (``peek``, ``get``, ``get_async``)."""
        self.misses = 0
        """Lookups that had to load (``get``, ``get_async``; a ``peek`` that finds nothing is
        followed by one of those, which counts it)."""

    def current(self, key: str) -> V | None:
        """The cached record for ``key`` while it is fresh, else ``None``; no lock, no I/O.

        Every invalidation removes the entry and every fill stores a new object, so callers
        compare the answer by identity to learn whether a record they hold is still current.
        """
        entry = self._found.get(key)
        if entry is not None and entry[1] > time.monotonic():
            return entry[0]
        return None

    def _lookup(self, key: str) -> object:
        entry = self._found.get(key)
        if entry is not None:
            if entry[1] > time.monotonic():
                return entry[0]
            with self._lock:
                if self._found.get(key) is entry:
                    del self._found[key]
        with self._lock:
            if self._absent.get(key):
                return None
        return _MISSING

    def peek(self, key: str, default: object) -> object:
        """The cached value (``None`` for a cached "absent"), or ``default``; never loads."""
        if not self.enabled:
            return default
        cached = self._lookup(key)
        if cached is _MISSING:
            return default
        self.hits += 1
        return cached

    def _fill(self, key: str, value: V | None, epoch: int) -> None:
        if not self.enabled or not self.accepting:
            return
        with self._lock:
            if epoch != self._epoch:  # invalidated while we were loading: do not cache
                return
            if value is None:
                self._absent[key] = True
                return
            self._found.pop(key, None)
            while len(self._found) >= self._maxsize:
                del self._found[next(iter(self._found))]
            self._found[key] = (value, time.monotonic() + self._ttl)

    def get(self, key: str, load: Callable[[], V | None]) -> V | None:
        """The cached value of ``key``, else ``load()`` (once for concurrent callers)."""
        if self.enabled:
            cached = self._lookup(key)
            if cached is not _MISSING:
                self.hits += 1
                return cached  # type: ignore[return-value]
        self.misses += 1
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
                self.hits += 1
                return cached  # type: ignore[return-value]
        self.misses += 1
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
        """In a forked child: new lock, no in-flight loads, no entries, no counts."""
        self._lock = threading.Lock()
        self.hits = self.misses = 0
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
