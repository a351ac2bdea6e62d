"""How a Redis call fails, as the store sees it: every exception of the client library
becomes :class:`~nowramp_auth.stores._errors.StoreUnavailable` (fail closed), and what may be
tried again is decided here (see :mod:`._redis_clients` for the policy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import redis
from redis.exceptions import RedisClusterException, RedisError

from ._errors import StoreUnavailable

__all__ = [
    "CLUSTER_REDIRECTIONS",
    "SLOT_MIGRATION_WAIT",
    "following_redirections",
    "io_errors",
    "redirected_only",
    "unavailable",
    "warn_if_evicting",
    "worth_retrying",
]

_log = logging.getLogger("nowramp_auth.redis")

CLUSTER_REDIRECTIONS = 32
"""How many times redis-py follows ``MOVED``/``ASK`` or waits out ``TRYAGAIN`` for one
command before it gives up with ``ClusterError("TTL exhausted.")``."""
SLOT_MIGRATION_WAIT = 3.0
"""Seconds a command keeps following a slot migration. Each of ``MOVED``, ``ASK`` and
``TRYAGAIN`` says the command did not run, so a command whose every attempt met one of them
is sent again (never a command that may have run) until this much time has passed: a
rate-limited key whose slot is being moved waits for the move instead of answering 503."""


def redirected_only(error: BaseException) -> bool:
    # redis-py's "TTL exhausted": every attempt was answered MOVED, ASK or TRYAGAIN, so the
    # command never ran anywhere and sending it again cannot apply it twice.
    cause = error.__cause__ if isinstance(error, StoreUnavailable) else error
    return isinstance(cause, redis.exceptions.ClusterError) and "TTL exhausted" in str(cause)


def following_redirections(client: Any) -> Any:
    # redis-py reads the number per command from this attribute (a class default of 16).
    client.RedisClusterRequestTTL = CLUSTER_REDIRECTIONS
    return client


_EXPECTED = (TimeoutError, asyncio.TimeoutError, RedisError, RedisClusterException, OSError)


def unavailable(exc: BaseException) -> StoreUnavailable:
    """The store-unavailable error for ``exc`` (logged when it is not a plain Redis error)."""
    if isinstance(exc, StoreUnavailable):
        return exc
    if not isinstance(exc, _EXPECTED):
        _log.warning(
            "Redis client raised %s; answering as unavailable", type(exc).__name__, exc_info=exc
        )
    if _out_of_memory(exc):
        # A script's first write is the one refused (Redis checks memory before each
        # write command), so the refused call changed nothing.
        return StoreUnavailable(
            "Redis refused the command because it is out of memory (maxmemory reached); "
            "nothing was changed"
        )
    return StoreUnavailable(f"Redis unavailable: {type(exc).__name__}")


def _out_of_memory(exc: BaseException) -> bool:
    # Refused outright (OutOfMemoryError), or inside a script (a ResponseError naming OOM).
    return isinstance(exc, redis.exceptions.OutOfMemoryError) or (
        isinstance(exc, redis.exceptions.ResponseError) and "OOM command not allowed" in str(exc)
    )


@contextlib.contextmanager
def io_errors() -> Iterator[None]:
    """Turn every way a Redis call can fail into :class:`StoreUnavailable` (fail closed)."""
    try:
        yield
    except _EXPECTED as exc:
        raise unavailable(exc) from exc


def worth_retrying(error: StoreUnavailable) -> bool:
    # A timeout already spent its bound (Redis did not answer in time, or no connection was
    # free): trying again would only double the wait. Anything else may be a stale
    # connection or a client-internal error that a second attempt does not meet.
    cause = error.__cause__
    return cause is not None and not isinstance(
        cause, (TimeoutError, asyncio.TimeoutError, redis.exceptions.TimeoutError)
    )


def warn_if_evicting(answer: object) -> None:
    # A node answers {"maxmemory-policy": "..."}; a cluster client may nest that per node.
    answers = [answer]
    if isinstance(answer, dict) and "maxmemory-policy" not in answer:
        answers = list(answer.values())
    policies = {a.get("maxmemory-policy") for a in answers if isinstance(a, dict)}
    for policy in sorted(p for p in policies if p and p != "noeviction"):
        _log.warning(
            "Redis maxmemory-policy is %r: Redis may evict the key store's data (rate-limit "
            "state first, as it carries a TTL, which would reset used-up budgets). Set "
            "maxmemory-policy to noeviction.",
            policy,
        )
