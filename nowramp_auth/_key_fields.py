"""Validation of a key's limits and credits as ``KeyManager`` takes them (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from ._budgets import MAX_LIMITS
from ._limits import Credits, RateLimit

__all__ = ["validate_credits", "validate_rate_limits"]


def validate_credits(credits: object) -> Credits | None:
    """``credits`` when it is a :class:`Credits` or ``None``; ``TypeError`` otherwise."""
    if credits is not None and not isinstance(credits, Credits):
        raise TypeError("credits must be a Credits or None")
    return credits


def validate_rate_limits(rate_limit: object) -> tuple[RateLimit, ...]:
    """One :class:`RateLimit`, several (a request must fit each), or ``None`` / ``[]`` for
    none, as a tuple; ``TypeError``/``ValueError`` naming what is wrong."""
    if rate_limit is None:
        return ()
    if isinstance(rate_limit, RateLimit):
        return (rate_limit,)
    if isinstance(rate_limit, str | bytes) or not isinstance(rate_limit, Iterable):
        raise TypeError("rate_limit must be a RateLimit, a list of them, or None")
    limits = tuple(rate_limit)
    if not all(isinstance(limit, RateLimit) for limit in limits):
        raise TypeError("rate_limit must be a RateLimit, a list of them, or None")
    if len(limits) > MAX_LIMITS:
        raise ValueError(f"a key may have at most {MAX_LIMITS} rate limits, got {len(limits)}")
    names = [limit.name for limit in limits if limit.name is not None]
    if len(names) != len(set(names)):
        raise ValueError(f"rate limit names must differ, got {names}")
    return limits
