"""Keeping a networked store's local caches true across instances, whatever the channel.

A store that caches records in process (:class:`~._redis_cache.LocalCache`) must drop an
entry when another instance changes the record. Its invalidation listener (Redis pub/sub,
PostgreSQL ``LISTEN``) reports two things here: a changed id (:meth:`CacheSync.invalidate`;
``"*"`` for everything) and whether it is subscribed (:meth:`CacheSync.set_subscribed`).
Delivery is at most once, so every (re)subscription flushes the caches, and while the channel
is down the caches take no new entries (their TTL bounds how long old ones serve). The
listener and the usage write-behind run on background threads that the first request-path
call starts (not construction, so a forked child starts its own).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .._models import StoredKey
from ._protocol import NOT_CACHED
from ._redis_cache import LocalCache
from ._stats import StoreCounts, StoreStats, counts_failures

__all__ = ["CacheSync", "CachedReads", "Listener", "close_at_exit_and_reset_after_fork"]

_log = logging.getLogger("nowramp_auth")


class Listener(Protocol):
    """An invalidation listener: a thread (once started) reporting to a :class:`CacheSync`."""

    thread: threading.Thread | None

    def start(self) -> None:
        """Start the listener's thread."""


class CacheSync:
    """The caches of one store, the listener that keeps them true, and the usage flusher.

    Parameters:
        caches: the store's local caches.
        stats: where invalidations and (re)subscriptions are counted.
        make_listener: builds the listener (given this object, to report to), or ``None``
            when the store listens to no channel (its caches then always accept).
        flush: writes the store's buffered usage; run every ``flush_interval`` seconds.
    """

    def __init__(
        self,
        caches: Sequence[LocalCache[Any]],
        stats: StoreStats,
        *,
        make_listener: Callable[[CacheSync], Listener] | None,
        flush: Callable[[], None],
        flush_interval: float,
    ) -> None:
        self.caches = tuple(caches)
        self.stats = stats
        self._make_listener = make_listener
        self._flush = flush
        self._flush_interval = flush_interval
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.subscribed = threading.Event()
        """Set while the listener is subscribed (tests wait on it)."""
        self.listener = self._make_listener(self) if self._make_listener is not None else None
        self._flusher: threading.Thread | None = None
        self._accepting(self.listener is None)

    def after_fork(self, stats: StoreStats) -> None:
        """Threads do not survive fork: a child starts its own, with its own counts."""
        self._lock = threading.Lock()
        self.stats = stats
        for cache in self.caches:
            cache.reset_after_fork()
        self._reset()

    def peek(self, operation: str, args: tuple[Any, ...], missing: Any) -> Any:
        """A cached answer of a request-path read without any I/O (``get_key`` from the
        first cache, ``get_session`` from the second), else ``missing``."""
        if operation == "get_key":
            self.start()
            return self.caches[0].peek(args[0], missing)
        if operation == "get_session":
            self.start()
            return self.caches[1].peek(args[0], missing)
        return missing

    def start(self) -> None:
        """Start the background threads (once; cheap to call on every request)."""
        listener = self.listener
        if self._flusher is not None and (listener is None or listener.thread is not None):
            return
        with self._lock:
            if self.closing.is_set():
                return
            if listener is not None and listener.thread is None:
                listener.start()
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_loop, name="nowramp-usage", daemon=True
                )
                self._flusher.start()

    def _flush_loop(self) -> None:
        while not self.closing.wait(self._flush_interval):
            try:
                self._flush()
            except Exception:  # pragma: no cover - never let the thread die
                _log.exception("usage flush failed")

    def invalidate(self, target: str) -> None:
        """Drop ``target`` (a record id) from the caches; ``"*"``: everything."""
        self.stats.invalidations += 1
        for cache in self.caches:
            if target == "*":
                cache.clear()
            else:
                cache.invalidate(target)

    def set_subscribed(self, value: bool) -> None:
        """The listener's channel came (``True``) or went: messages sent while it was away
        are lost, so the caches start clean, and take entries only while it is up."""
        if value:
            self.stats.subscriptions += 1
            for cache in self.caches:
                cache.clear()
        self._accepting(value)
        if value:
            self.subscribed.set()
        else:
            self.subscribed.clear()

    def _accepting(self, value: bool) -> None:
        for cache in self.caches:
            cache.accepting = value

    def counts(self) -> StoreCounts:
        """The counts for metrics: cache hits and misses of every cache, failed calls per
        operation, invalidation traffic, rate-limit script calls (this process's totals)."""
        stats = self.stats
        return StoreCounts(
            cache_hits=sum(cache.hits for cache in self.caches),
            cache_misses=sum(cache.misses for cache in self.caches),
            errors=dict(stats.errors),
            invalidations=stats.invalidations,
            pubsub_reconnects=max(0, stats.subscriptions - 1),
            rate_limit_calls=stats.calls.get("hit_rate_limit", 0),
        )

    def stop(self) -> None:
        """Stop the threads (waiting up to 2 s for each)."""
        self.closing.set()
        threads = [self._flusher, self.listener.thread if self.listener is not None else None]
        for thread in threads:
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=2)


class _Closable(Protocol):
    def close(self) -> None: ...

    def _after_fork(self) -> None: ...


def close_at_exit_and_reset_after_fork(store: _Closable) -> None:
    """Close ``store`` when the process exits (flushing what it buffers), and let a forked
    child (e.g. ``gunicorn --preload``) start its own threads and sockets. Weak references:
    neither keeps the store alive."""
    ref = weakref.ref(store)
    atexit.register(_close, ref)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=lambda: _reset(ref))


def _close(ref: weakref.ref[_Closable]) -> None:
    store = ref()
    if store is not None:
        store.close()


def _reset(ref: weakref.ref[_Closable]) -> None:
    store = ref()
    if store is not None:
        store._after_fork()


class CachedReads:
    """What every cache-backed networked store has in common (a mixin, first among its
    bases): the cached key read, the cache peek of async callers, the listener's state, the
    metrics counts. The store provides its caches, its :class:`CacheSync` and ``_load_key``."""

    keys_cache: LocalCache[StoredKey]
    stats: StoreStats
    _sync: CacheSync

    def _load_key(self, key_id: str) -> StoredKey | None:
        raise NotImplementedError  # pragma: no cover - each store reads its own way

    @property
    def subscribed(self) -> threading.Event:
        """Set while the invalidation listener is subscribed (tests wait on it)."""
        return self._sync.subscribed

    def _start_threads(self) -> None:
        # The listener and the usage write-behind, started by the first request-path call.
        self._sync.start()

    def peek(self, operation: str, args: tuple[Any, ...]) -> Any:
        """A cached answer for a request-path operation without any I/O, or ``NOT_CACHED``:
        async callers then skip the coroutine machinery."""
        return self._sync.peek(operation, args, NOT_CACHED)

    @counts_failures("get_key")
    def get_key(self, key_id: str) -> StoredKey | None:
        """The stored key (cached), or ``None``; ``StoreUnavailable`` when the store cannot
        answer and no fresh cached answer exists."""
        self._start_threads()
        return self.keys_cache.get(key_id, lambda: self._load_key(key_id))

    def store_counts(self) -> StoreCounts:
        """The store's counts for metrics (cache, failures per operation, invalidation
        traffic, rate-limit calls): totals of this process."""
        return self._sync.counts()
