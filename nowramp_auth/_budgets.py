"""Several rate limits on one key: the counters they are kept under, and one status for the
``RateLimit-*`` headers (pure).

A key with several limits (say 20 per second and 10,000 per day) has one counter per limit,
all under its lineage: the first limit keeps the lineage's own counter (so a key that gains
a second limit keeps the requests already counted against its first), limit ``i`` uses
``<lineage>#<i>``. Stores check every counter and spend on all of them in one atomic step,
or on none: a request refused by one limit spends nothing of the others.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._models import KeyRecord, RateLimit, RateLimitStatus

__all__ = ["MAX_LIMITS", "Limits", "closest", "counter_ids", "limits_of", "limits_to_charge"]

Limits = RateLimit | tuple[RateLimit, ...]
"""What a limiter call is given: one limit, or several that must all be met."""

MAX_LIMITS = 8
"""The most limits one key may carry."""


def limits_to_charge(record: KeyRecord) -> Limits | None:
    """What a request of ``record``'s key is charged against: ``None`` (no limit), its one
    :class:`RateLimit` (the same object for a record version, which limiters cache by), or
    the tuple of its several limits."""
    limits = record.rate_limits
    if not limits:
        return None
    return limits[0] if len(limits) == 1 else limits


def limits_of(limits: Limits) -> tuple[RateLimit, ...]:
    """``limits`` as a tuple."""
    return (limits,) if isinstance(limits, RateLimit) else limits


def counter_ids(lineage: str, count: int) -> list[str]:
    """The counters of a lineage's ``count`` limits (the first is the lineage itself)."""
    return [lineage] + [f"{lineage}#{index}" for index in range(1, count)]


def closest(statuses: Sequence[RateLimitStatus]) -> RateLimitStatus:
    """One status for several limits' statuses of one request: when every limit accepted
    it, the limit closest to refusing (fewest remaining); otherwise the refusing limit that
    frees last (its ``Retry-After`` is when every limit has room again)."""
    refused = [status for status in statuses if not status.allowed]
    if refused:
        return max(refused, key=lambda status: status.retry_after_seconds)
    return min(statuses, key=lambda status: (status.remaining, -status.reset_seconds))
