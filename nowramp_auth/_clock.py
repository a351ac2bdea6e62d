"""Time: an injectable clock returning timezone-aware UTC datetimes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "require_aware", "utc_now"]

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
