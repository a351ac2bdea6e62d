"""Several rate limits on one key, and budgets shared by a project's keys: the counters they
are kept under, and one status for the ``RateLimit-*`` headers (pure).

A key with several limits (say 20 per second and 10,000 per day) has one counter per limit,
all under its lineage: the first limit keeps the lineage's own counter (so a key that gains
a second limit keeps the requests already counted against its first), limit ``i`` uses
``<lineage>#<i>``. Stores check every counter and spend on all of them in one atomic step,
or on none: a request refused by one limit spends nothing of the others. A project's
budgets are counters of their own (``project:<id>``, ``project:<id>#<i>``), charged in the
same step as the limits of whichever of its keys made the request.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ._models import KeyRecord, RateLimit, RateLimitStatus

__all__ = [
    "MAX_LIMITS",
    "Limits",
    "SharedLimits",
    "budget_counters",
    "closest",
    "counter_ids",
    "decode_limits",
    "encode_limits",
    "limits_to_charge",
]


@dataclass(frozen=True, slots=True)
class SharedLimits:
    """A key's own limits and its project's budgets (shared by every key of the project),
    checked and spent together."""

    own: tuple[RateLimit, ...]
    project_id: str
    project: tuple[RateLimit, ...]


Limits = RateLimit | tuple[RateLimit, ...] | SharedLimits
"""What a limiter call is given: one limit, several that must all be met, or a key's limits
with its project's budgets."""

MAX_LIMITS = 8
"""The most limits one key may carry."""


def limits_to_charge(record: KeyRecord) -> Limits | None:
    """What a request of ``record``'s key is charged against: ``None`` (no limit), its one
    :class:`RateLimit` (the same object for a record version, which limiters cache by), the
    tuple of its several limits, or, when its project has budgets, :class:`SharedLimits`."""
    limits = record.rate_limits
    if record.project_limits and record.project_id is not None:
        return SharedLimits(limits, record.project_id, record.project_limits)
    if not limits:
        return None
    return limits[0] if len(limits) == 1 else limits


def budget_counters(lineage: str, limits: Limits) -> list[tuple[str, RateLimit]]:
    """Every counter a request is charged in, with its limit: the key's own (under its
    lineage, see :func:`counter_ids`), then its project's (``project:<id>``, ``#<i>``)."""
    if isinstance(limits, RateLimit):
        return [(lineage, limits)]
    own = limits.own if isinstance(limits, SharedLimits) else limits
    pairs = list(zip(counter_ids(lineage, len(own)), own, strict=True))
    if isinstance(limits, SharedLimits):
        shared = counter_ids(f"project:{limits.project_id}", len(limits.project))
        pairs += list(zip(shared, limits.project, strict=True))
    return pairs


def counter_ids(lineage: str, count: int) -> list[str]:
    """The counters of ``count`` limits of one owner (the first is ``owner`` itself)."""
    if count == 0:
        return []
    return [lineage] + [f"{lineage}#{index}" for index in range(1, count)]


def closest(statuses: Sequence[RateLimitStatus]) -> RateLimitStatus:
    """One status for several limits' statuses of one request: when every limit accepted
    it, the limit closest to refusing (fewest remaining); otherwise the refusing limit that
    frees last (its ``Retry-After`` is when every limit has room again)."""
    refused = [status for status in statuses if not status.allowed]
    if refused:
        return max(refused, key=lambda status: status.retry_after_seconds)
    return min(statuses, key=lambda status: (status.remaining, -status.reset_seconds))


def encode_limits(limits: tuple[RateLimit, ...]) -> str:
    """Limits as JSON, ``[[requests, window ms, name], ...]`` (every store writes this)."""
    return json.dumps([[limit.requests, limit.window_ms, limit.name] for limit in limits])


def decode_limits(encoded: str | list[Any] | None) -> tuple[RateLimit, ...]:
    """Limits from :func:`encode_limits`' JSON (or the list it holds); ``()`` for none."""
    if not encoded:
        return ()
    items = json.loads(encoded) if isinstance(encoded, str) else encoded
    return tuple(
        RateLimit(int(requests), timedelta(milliseconds=int(window_ms)), name)
        for requests, window_ms, name in items
    )
