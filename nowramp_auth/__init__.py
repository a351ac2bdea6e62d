"""nowramp_auth: production-grade API-key authentication for partner APIs.

The public API (see the README): keys are created and managed with :class:`KeyManager`,
requests are authenticated with :class:`Authenticator`, against a :class:`MemoryKeyStore` or
a :class:`RedisKeyStore`. Adapters live in :mod:`nowramp_auth.starlette` (ASGI) and
:mod:`nowramp_auth.wsgi` (WSGI).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._audit import AuditSink, LoggingAuditLog, MemoryAuditLog
from ._authenticator import Authenticator
from ._budget_usage import BudgetUsage, key_budget_usage, project_budget_usage
from ._context import current_principal
from ._errors import AuthError, ErrorCode
from ._limits import Credits, Refill
from ._manager import KeyManager
from ._models import (
    AuditEvent,
    IssuedKey,
    IssuedSession,
    KeyRecord,
    Principal,
    RateLimit,
    RateLimitStatus,
)
from ._scopes import KNOWN_SCOPES, ScopeRegistry
from ._version import __version__ as __version__
from .stores import KeyStore, MemoryKeyStore, StoreUnavailable

if TYPE_CHECKING:
    from .stores.postgres import PostgresKeyStore
    from .stores.postgres_audit import PostgresAuditLog
    from .stores.redis import RedisKeyStore
    from .stores.redis_audit import RedisStreamAuditLog
    from .stores.redis_limiter import RedisRateLimiter

__all__ = [
    "KNOWN_SCOPES",
    "AuditEvent",
    "AuditSink",
    "AuthError",
    "Authenticator",
    "BudgetUsage",
    "Credits",
    "ErrorCode",
    "IssuedKey",
    "IssuedSession",
    "KeyManager",
    "KeyRecord",
    "KeyStore",
    "LoggingAuditLog",
    "MemoryAuditLog",
    "MemoryKeyStore",
    "PostgresAuditLog",
    "PostgresKeyStore",
    "Principal",
    "RateLimit",
    "RateLimitStatus",
    "RedisKeyStore",
    "RedisRateLimiter",
    "RedisStreamAuditLog",
    "Refill",
    "ScopeRegistry",
    "StoreUnavailable",
    "current_principal",
    "key_budget_usage",
    "project_budget_usage",
]


def __getattr__(name: str) -> Any:
    # Redis classes are imported on first use, so apps on the memory store never import redis.
    if name == "RedisKeyStore":
        from .stores.redis import RedisKeyStore

        return RedisKeyStore
    if name == "PostgresAuditLog":
        from .stores.postgres_audit import PostgresAuditLog

        return PostgresAuditLog
    if name == "PostgresKeyStore":
        from .stores.postgres import PostgresKeyStore

        return PostgresKeyStore
    if name == "RedisRateLimiter":
        from .stores.redis_limiter import RedisRateLimiter

        return RedisRateLimiter
    if name == "RedisStreamAuditLog":
        from .stores.redis_audit import RedisStreamAuditLog

        return RedisStreamAuditLog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
