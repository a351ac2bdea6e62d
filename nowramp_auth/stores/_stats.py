"""What a store counts for metrics: plain integers, read by exporters at scrape time.

A store that keeps these offers ``store_counts()`` (see :class:`StoreCounts`); the exporters in
:mod:`nowramp_auth.metrics` read it. Counting is an integer increment where the event happens,
without a lock: CPython runs ``counter += 1`` on an attribute or a dict entry without a thread
switch in the middle, so concurrent increments are not lost. No count is keyed by a key id, a
project id or anything else a request chose: operation names are the store's method names.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from ._errors import StoreUnavailable

__all__ = ["StoreCounts", "StoreStats", "counts_failures"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """A store's counts at one moment (every field a total since the process started)."""

    cache_hits: int = 0
    """Lookups answered by the local cache (no Redis round trip)."""
    cache_misses: int = 0
    """Lookups that had to ask Redis."""
    errors: Mapping[str, int] = field(default_factory=dict)
    """Failed store calls (``StoreUnavailable`` to the caller) per operation, once per call."""
    invalidations: int = 0
    """Invalidation messages received from other instances."""
    pubsub_reconnects: int = 0
    """Subscriptions of the invalidation listener after its first."""
    rate_limit_calls: int = 0
    """Rate-limit script calls sent (one may answer for several requests of a key)."""


class StoreStats:
    """The mutable counts behind :class:`StoreCounts` that a store keeps (cache hits and misses
    are kept by its caches)."""

    __slots__ = ("calls", "errors", "invalidations", "subscriptions")

    def __init__(self) -> None:
        self.errors: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.invalidations = 0
        self.subscriptions = 0

    def failed(self, operation: str, calls: int = 1) -> None:
        """Count ``calls`` failed calls of ``operation``."""
        if operation not in self.errors:
            self.errors.setdefault(operation, 0)
        self.errors[operation] += calls

    def sent(self, operation: str, calls: int = 1) -> None:
        """Count ``calls`` script calls of ``operation`` sent to Redis."""
        if operation not in self.calls:
            self.calls.setdefault(operation, 0)
        self.calls[operation] += calls


def counts_failures(operation: str) -> Callable[[F], F]:
    """Decorate a store method (sync or ``async``) so that each call ending in
    ``StoreUnavailable`` counts once in ``self.stats`` under ``operation``."""

    def decorate(method: F) -> F:
        if inspect.iscoroutinefunction(method):

            @functools.wraps(method)
            async def counted_async(self: Any, *args: Any, **kwargs: Any) -> Any:
                try:
                    return await method(self, *args, **kwargs)
                except StoreUnavailable:
                    self.stats.failed(operation)
                    raise

            return cast(F, counted_async)

        @functools.wraps(method)
        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except StoreUnavailable:
                self.stats.failed(operation)
                raise

        return cast(F, counted)

    return decorate
