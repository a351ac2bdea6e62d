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

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ._limits import Credits, Refill
from ._models import KeyRecord, RateLimit, RateLimitStatus

__all__ = [
    "MAX_LIMITS",
    "Limits",
    "Plan",
    "budget_counters",
    "closest",
    "counter_ids",
    "credits_from_json",
    "credits_tag",
    "credits_to_json",
    "decode_limits",
    "encode_limits",
    "limits_to_charge",
    "refilled",
    "refused_by_limit",
    "refusing_kind",
    "with_cost",
]


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a request of a key spends beyond one or several limits of its own: its
    project's budgets (shared by every key of the project) and its credits, checked and
    spent together with its own limits."""

    own: tuple[RateLimit, ...]
    project_id: str | None
    """The key's project (on Redis, every counter of the plan lives under its hash tag)."""
    project: tuple[RateLimit, ...] = ()
    credits: Credits | None = None
    cost: int = 1
    """Credits one accepted request spends (a route's ``cost=``)."""


Limits = RateLimit | tuple[RateLimit, ...] | Plan
"""What a limiter call is given: one limit, several that must all be met, or a key's
:class:`Plan` (its limits with its project's budgets and its credits)."""

MAX_LIMITS = 8
"""The most limits one key may carry."""


def limits_to_charge(record: KeyRecord) -> Limits | None:
    """What a request of ``record``'s key is charged against: ``None`` (no limit), its one
    :class:`RateLimit` (the same object for a record version, which limiters cache by), the
    tuple of its several limits, or, when its project has budgets or it has credits, its
    :class:`Plan`."""
    limits = record.rate_limits
    project = record.project_limits if record.project_id is not None else ()
    if project or record.credits is not None:
        return Plan(limits, record.project_id, project, record.credits)
    if not limits:
        return None
    return limits[0] if len(limits) == 1 else limits


def budget_counters(lineage: str, limits: Limits) -> list[tuple[str, RateLimit]]:
    """Every counter a request is charged in, with its limit: the key's own (under its
    lineage, see :func:`counter_ids`), then its project's (``project:<id>``, ``#<i>``)."""
    if isinstance(limits, RateLimit):
        return [(lineage, limits)]
    own = limits.own if isinstance(limits, Plan) else limits
    pairs = list(zip(counter_ids(lineage, len(own)), own, strict=True))
    if isinstance(limits, Plan) and limits.project:
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


def refused_by_limit(statuses: Sequence[RateLimitStatus], limits: Limits) -> RateLimitStatus:
    """:func:`closest` of a refused request's statuses (in :func:`budget_counters`' order),
    saying which kind of budget refused it: one of the key's own limits or its project's."""
    refusing = closest(statuses)
    index = next(i for i, status in enumerate(statuses) if status is refusing)
    return dataclasses.replace(refusing, refused_by=refusing_kind(index, limits))


def refusing_kind(index: int, limits: Limits) -> str:
    """``"key"`` or ``"project"``: the kind of the budget at ``index`` of
    :func:`budget_counters`' list for ``limits``."""
    if isinstance(limits, RateLimit):
        return "key"
    own = len(limits.own) if isinstance(limits, Plan) else len(limits)
    return "key" if index < own else "project"


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


def refilled(
    remaining: int, anchor_ms: int, done: int, credits: Credits, now_ms: int
) -> tuple[int, int, int]:
    """Credits after the refills due at ``now_ms``: ``(remaining, refills done, ms until the
    next refill (0: none))``. A refill tops the count up to its amount, once per period
    counted from ``anchor_ms`` (when the credits were set); credits above the amount stay."""
    refill = credits.refill
    if refill is None:
        return remaining, done, 0
    every = refill.every_ms
    periods = max(0, (now_ms - anchor_ms) // every)
    if periods > done:
        remaining, done = max(remaining, refill.amount), periods
    return remaining, done, anchor_ms + (done + 1) * every - now_ms


def credits_tag(project_id: str | None) -> str | None:
    """The Redis hash tag every counter of a :class:`Plan` lives under: the project's (so a
    project's budgets and its keys' counters and credits share one cluster slot), or, for a
    key without a project, ``None`` (its lineage's)."""
    return f"p:{project_id}" if project_id is not None else None


def credits_to_json(credits: Credits) -> list[int]:
    """A key's credits configuration as JSON: ``[remaining, refill amount, period ms]``
    (the last two 0 without a refill)."""
    refill = credits.refill
    return [credits.remaining, refill.amount if refill else 0, refill.every_ms if refill else 0]


def credits_from_json(encoded: str | list[int] | None) -> Credits | None:
    """The inverse of :func:`credits_to_json` (``None`` for none)."""
    if not encoded:
        return None
    remaining, amount, every_ms = json.loads(encoded) if isinstance(encoded, str) else encoded
    refill = Refill(int(amount), timedelta(milliseconds=int(every_ms))) if amount else None
    return Credits(int(remaining), refill)


def with_cost(limits: Limits, cost: int) -> Limits:
    """``limits`` charging ``cost`` credits per request (only a :class:`Plan` with credits
    spends any; anything else is returned as it is)."""
    if cost == 1 or not isinstance(limits, Plan) or limits.credits is None:
        return limits
    return dataclasses.replace(limits, cost=cost)
