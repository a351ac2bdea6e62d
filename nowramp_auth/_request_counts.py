"""Request metrics as plain counts: what the request path keeps for the exporters.

An :class:`~nowramp_auth.Authenticator` built with ``metrics=`` keeps a :class:`RequestCounts`:
each request counts once, with its final result (``ok`` or the error code) and its key's type,
and its authentication time lands in one bucket of a fixed histogram. The exporters
(:mod:`nowramp_auth.metrics`) read these counts when scraped or collected, so the request path
pays a few integer increments, not a metrics library's locks and label lookups.

Counting takes no lock: CPython (with its global interpreter lock) runs ``counter[key] += 1``
on a list or a dict of ints and floats without a thread switch in the middle (no call, no back
jump between the read and the write), so increments from concurrent threads are not lost (a
test counts 8 threads). A free-threaded build would need a lock here.

Security model: nothing here holds a key, a key id, a project id or a path. Results are the
fixed set in :data:`RESULTS`, key types the fixed set in :data:`KEY_TYPES`; what a request
sent chooses among them but never adds to them. Only the optional result hook (span attributes)
sees the public key id.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING

from ._errors import AuthError, ErrorCode
from ._limits import REFUSING_BUDGETS
from ._models import Principal

if TYPE_CHECKING:
    from ._fast_path import LimitedKey

__all__ = [
    "DURATION_BUCKETS",
    "KEY_TYPES",
    "RESULTS",
    "AcceptVerified",
    "RequestCounts",
    "RequestTotals",
    "ResultHook",
]

RESULTS: tuple[str, ...] = ("ok", *(code.value for code in ErrorCode))
"""Every value of the ``result`` label: ``ok`` or an error code."""
KEY_TYPES: tuple[str, ...] = ("live", "test", "unknown")
"""Every value of the ``key_type`` label."""
DURATION_BUCKETS: tuple[float, ...] = (
    0.000005,
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
"""Upper bounds (seconds, inclusive) of the authentication-time histogram; one more bucket
holds everything slower."""

ResultHook = Callable[[str, str | None, str, str | None], None]
"""``(result, key id or None, key type, credential or None)``, called once per counted request
(the exporter's span attributes)."""
AcceptVerified = Callable[..., "Principal | LimitedKey | None"]

_FIRST_BOUND = DURATION_BUCKETS[0]
_CREDENTIAL_KINDS = frozenset({"api_key", "session"})
_SESSION_CODES = frozenset({ErrorCode.INVALID_SESSION_TOKEN, ErrorCode.SESSION_EXPIRED})
_LIMITER_RESULTS = frozenset({ErrorCode.RATE_LIMITED.value, ErrorCode.CREDITS_EXHAUSTED.value})


@dataclass(frozen=True, slots=True)
class RequestTotals:
    """An authenticator's counts at one moment (totals since it was built)."""

    requests: dict[tuple[str, str], int]
    """Requests by ``(result, key type)``; only pairs that occurred."""
    buckets: tuple[int, ...]
    """Requests per histogram bucket (not cumulative); the last is above every bound."""
    seconds: float
    """Total authentication time of those requests."""
    fast_path_hits: int
    """Requests the fast path found verified (served from the store's cached record)."""
    refusals: dict[str, int]
    """Requests a limiter refused, by the kind of budget that refused them (every kind of
    :data:`~nowramp_auth._limits.REFUSING_BUDGETS`, zeros included)."""


class RequestCounts:
    """The counts one authenticator keeps (see the module docstring)."""

    __slots__ = ("buckets", "fast", "fast_limited", "hook", "refusals", "results", "seconds")

    def __init__(self) -> None:
        self.fast: dict[str, int] = {"live": 0, "test": 0}
        """Requests the fast path accepted, by key type."""
        self.fast_limited = [0]
        """Rate-limited keys the fast path found (their result counts after the charge)."""
        self.results: dict[tuple[str, str], int] = {
            (result, key_type): 0 for result in RESULTS for key_type in KEY_TYPES
        }
        """Every other request, by (result, key type); a route-level refusal after acceptance
        moves one request from ``ok`` to its code."""
        self.refusals: dict[str, int] = dict.fromkeys(REFUSING_BUDGETS, 0)
        """Requests a limiter refused (``RATE_LIMITED``, ``CREDITS_EXHAUSTED``), by the kind
        of budget that refused them."""
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.seconds = [0.0]
        self.hook: ResultHook | None = None

    def counting(self, accept: AcceptVerified) -> AcceptVerified:
        """``accept`` (the fast path, see :mod:`nowramp_auth._fast_path`) that counts the
        requests it accepts. Budget per accepted request: two clock reads, one compare (or a
        bisect), three increments."""
        fast, limited, buckets, seconds = self.fast, self.fast_limited, self.buckets, self.seconds
        counts = self

        def accept_counted(
            api_key: bytes, peer: str | None, required: Collection[str] = ()
        ) -> Principal | LimitedKey | None:
            started = perf_counter()
            accepted = accept(api_key, peer, required)
            if type(accepted) is Principal:
                elapsed = perf_counter() - started
                fast[accepted.key_type] += 1
                # _timed's three lines, inline: a method call would cost this path more.
                bucket = 0 if elapsed <= _FIRST_BOUND else bisect_left(DURATION_BUCKETS, elapsed)
                buckets[bucket] += 1
                seconds[0] += elapsed
                if counts.hook is not None:
                    counts.hook("ok", accepted.key_id, accepted.key_type, accepted.kind)
            elif accepted is not None:
                limited[0] += 1
            return accepted

        return accept_counted

    def accepted(self, principal: Principal, started: float) -> None:
        """Count a request accepted outside the fast path (``started``: ``perf_counter()``
        when its authentication began)."""
        self._timed(perf_counter() - started)
        self.results["ok", principal.key_type] += 1
        if self.hook is not None:
            self.hook("ok", principal.key_id, principal.key_type, principal.kind)

    def refused(self, error: AuthError, started: float | None) -> None:
        """Count a refused request; ``started`` as for :meth:`accepted`, or ``None`` when its
        time was counted already (a refusal after acceptance: see :meth:`recount`)."""
        if started is not None:
            self._timed(perf_counter() - started)
        key_type = error.key_type
        if key_type != "live" and key_type != "test":
            key_type = "unknown"
        result: str = error.code._value_  # the Enum's value without its property's cost
        self.results[result, key_type] += 1
        if error.rate_limit is not None and result in _LIMITER_RESULTS:  # a limiter refused
            self.refusals[_refusing_budget(error)] += 1
        if self.hook is not None:
            self.hook(result, error.key_id, key_type, _credential(error))

    def recount(self, principal: Principal, error: AuthError) -> None:
        """A request counted as accepted was refused after all (a route's scope check, a bad
        widget-session body): it counts with that refusal instead."""
        self.results["ok", principal.key_type] -= 1
        error.key_type = principal.key_type
        error.credential = principal.kind
        self.refused(error, None)

    def _timed(self, elapsed: float) -> None:
        bucket = 0 if elapsed <= _FIRST_BOUND else bisect_left(DURATION_BUCKETS, elapsed)
        self.buckets[bucket] += 1
        self.seconds[0] += elapsed

    def totals(self) -> RequestTotals:
        """The counts now. A request the fast path accepted and a route then refused may show
        as ``ok`` until the refusal lands (microseconds later); exporters keep their counters
        from going down meanwhile."""
        results = dict(self.results)
        buckets = tuple(self.buckets)
        seconds = self.seconds[0]
        fast = dict(self.fast)
        for key_type, count in fast.items():
            results["ok", key_type] += count
        requests = {pair: count for pair, count in results.items() if count}
        hits = sum(fast.values()) + self.fast_limited[0]
        return RequestTotals(requests, buckets, seconds, hits, dict(self.refusals))


def _refusing_budget(error: AuthError) -> str:
    # The kind of budget that refused a RATE_LIMITED or CREDITS_EXHAUSTED request, as its
    # limiter said; a limiter that does not say refused by the key's own limit.
    status = error.rate_limit
    refused_by = status.refused_by if status is not None else None
    if refused_by in REFUSING_BUDGETS:
        return refused_by
    return "credits" if error.code is ErrorCode.CREDITS_EXHAUSTED else "key"


def _credential(error: AuthError) -> str | None:
    # What the refused request presented: as the authenticator noted it (a session's other
    # refusals), else as its code says (no credential at all for MISSING_API_KEY).
    if error.credential in _CREDENTIAL_KINDS:
        return error.credential
    if error.code is ErrorCode.MISSING_API_KEY:
        return None
    return "session" if error.code in _SESSION_CODES else "api_key"
