"""Time: an injectable clock returning timezone-aware UTC datetimes."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = [
    "EPOCH",
    "Clock",
    "epoch_us",
    "from_epoch_us",
    "require_aware",
    "seconds_clock",
    "utc_now",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

Clock = Callable[[], datetime]
"""A zero-argument callable returning the current time, timezone-aware."""


def utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def require_aware(value: datetime, name: str) -> datetime:
    """Return ``value`` in UTC; ``TypeError``/``ValueError`` if it is not an aware datetime."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got a naive datetime")
    return value.astimezone(UTC)


def epoch_us(value: datetime) -> int:
    """An aware datetime as whole microseconds since the epoch (exact, no float rounding)."""
    return (value - EPOCH) // _MICROSECOND


def from_epoch_us(value: int) -> datetime:
    """Inverse of :func:`epoch_us`."""
    return EPOCH + timedelta(microseconds=value)


def seconds_clock(clock: Clock | None) -> Callable[[], float]:
    """Now as seconds since the epoch, from ``clock``; the system clock is read without
    building a datetime (this is read on every request)."""
    if clock is None or clock is utc_now:
        return time.time
    injected = clock

    def from_clock() -> float:
        return require_aware(injected(), "clock()").timestamp()

    return from_clock
