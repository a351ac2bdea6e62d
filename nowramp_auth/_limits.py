"""``RateLimit``: one limit on the requests a key may make in a window; ``Credits`` and
``Refill``: a number of requests a key may make in all, topped up on a schedule (values)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

__all__ = [
    "REFUSING_BUDGETS",
    "Credits",
    "RateLimit",
    "RateLimitStatus",
    "Refill",
    "accepted_status",
]

REFUSING_BUDGETS: tuple[str, ...] = ("key", "project", "credits")
"""Every value of :attr:`RateLimitStatus.refused_by` (and of the refusals metric's label)."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``requests`` accepted requests in any interval of length ``window``.

    A key may carry several (``rate_limit=[...]``): a request must fit every one. ``name``
    (optional) tells them apart in listings, e.g. ``"burst"`` and ``"daily"``.

    Example: ``RateLimit(100, timedelta(seconds=60))``,
    ``RateLimit(10_000, timedelta(days=1), name="daily")``.
    """

    requests: int
    window: timedelta
    name: str | None = None

    def __post_init__(self) -> None:
        if self.name is not None and (
            not isinstance(self.name, str)
            or not 1 <= len(self.name) <= 40
            or not self.name.isprintable()
            or self.name != self.name.strip()
        ):
            raise ValueError(
                "RateLimit.name must be 1 to 40 printable characters without surrounding "
                f"spaces, got {self.name!r}"
            )
        if isinstance(self.requests, bool) or not isinstance(self.requests, int):
            raise TypeError("RateLimit.requests must be an int")
        if self.requests < 1:
            raise ValueError(f"RateLimit.requests must be at least 1, got {self.requests}")
        if not isinstance(self.window, timedelta):
            raise TypeError("RateLimit.window must be a timedelta")
        if self.window < timedelta(milliseconds=1):
            raise ValueError("RateLimit.window must be at least 1 millisecond")

    @property
    def window_ms(self) -> int:
        """The window in whole milliseconds."""
        return int(self.window / timedelta(milliseconds=1))

    def __str__(self) -> str:
        seconds = self.window.total_seconds()
        text = f"{seconds:g}s" if seconds != int(seconds) else f"{int(seconds)}s"
        named = f" ({self.name})" if self.name else ""
        return f"{self.requests}/{text}{named}"


@dataclass(frozen=True, slots=True)
class Refill:
    """Every ``every`` (counted from when the credits were set), the key's remaining credits
    are topped up to ``amount`` (credits above it, e.g. bought with ``add_credits``, stay).

    Example: ``Refill(500, timedelta(days=30))``.
    """

    amount: int
    every: timedelta

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount < 1:
            raise ValueError(f"Refill.amount must be an int of at least 1, got {self.amount!r}")
        if not isinstance(self.every, timedelta) or self.every < timedelta(seconds=1):
            raise ValueError("Refill.every must be a timedelta of at least 1 second")

    @property
    def every_ms(self) -> int:
        """The period in whole milliseconds."""
        return int(self.every / timedelta(milliseconds=1))


@dataclass(frozen=True, slots=True)
class Credits:
    """A key's credits: each accepted request spends one; at zero the key gets
    ``CREDITS_EXHAUSTED`` until credits are added or the ``refill`` comes.

    Example: ``Credits(500)`` (a trial), ``Credits(10_000, Refill(10_000, timedelta(days=30)))``.
    """

    remaining: int
    refill: Refill | None = None

    def __post_init__(self) -> None:
        if (
            isinstance(self.remaining, bool)
            or not isinstance(self.remaining, int)
            or self.remaining < 0
        ):
            raise ValueError(f"Credits.remaining must be an int >= 0, got {self.remaining!r}")
        if self.refill is not None and not isinstance(self.refill, Refill):
            raise TypeError("Credits.refill must be a Refill or None")


@dataclass(frozen=True, slots=True)
class RateLimitStatus:
    """The state of a key's rate limit after one request, for the ``RateLimit-*`` headers."""

    limit: int
    """The size of the limit closest to refusing; 0 for a key with credits and no limit."""
    remaining: int
    reset_seconds: float
    allowed: bool = True
    retry_after_seconds: float = 0.0
    credits_remaining: int | None = None
    """For a key with credits: what is left after this request (``X-Credits-Remaining``)."""
    credits_exhausted: bool = False
    """Refused because the key's credits are used up (``CREDITS_EXHAUSTED``)."""
    refused_by: str | None = None
    """For a refusal, the kind of budget that refused it: ``"key"`` (one of the key's own
    limits), ``"project"`` (a budget its project's keys share) or ``"credits"``; ``None``
    when accepted (a refusal that does not say is the key's own limit's)."""

    def headers(self) -> list[tuple[str, str]]:
        """``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset`` (whole
        seconds), and ``X-Credits-Remaining`` for a key with credits."""
        return [(_NAMES[name], value.decode()) for name, value in self.raw_headers()]

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """:meth:`headers` as ASGI header pairs (lower-case names, bytes): what every
        response to a limited key carries, built without a str round trip."""
        headers = []
        if self.limit:
            headers = [
                (b"ratelimit-limit", b"%d" % self.limit),
                (b"ratelimit-remaining", b"%d" % max(0, self.remaining)),
                (b"ratelimit-reset", b"%d" % max(0, math.ceil(self.reset_seconds))),
            ]
        if self.credits_remaining is not None:
            headers.append((b"x-credits-remaining", b"%d" % max(0, self.credits_remaining)))
        return headers


_NAMES = {
    b"ratelimit-limit": "RateLimit-Limit",
    b"ratelimit-remaining": "RateLimit-Remaining",
    b"ratelimit-reset": "RateLimit-Reset",
    b"x-credits-remaining": "X-Credits-Remaining",
}

_new = object.__new__
(
    _set_limit,
    _set_remaining,
    _set_reset,
    _set_allowed,
    _set_retry,
    _set_credits,
    _set_out,
    _set_refused_by,
) = (getattr(RateLimitStatus, name).__set__ for name in RateLimitStatus.__slots__)


def accepted_status(
    limit: int, remaining: int, reset_seconds: float, credits_remaining: int | None = None
) -> RateLimitStatus:
    """``RateLimitStatus(limit, remaining, reset_seconds, credits_remaining=...)`` of an
    accepted request, built with slot stores (one per request of a rate-limited key; see
    :func:`with_rate_limit`)."""
    status = _new(RateLimitStatus)
    _set_limit(status, limit)
    _set_remaining(status, remaining)
    _set_reset(status, reset_seconds)
    _set_allowed(status, True)
    _set_retry(status, 0.0)
    _set_credits(status, credits_remaining)
    _set_out(status, False)
    _set_refused_by(status, None)
    return status
