"""Key stores: the protocols, the in-memory store and (imported lazily) the Redis store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import StoreUnavailable
from ._protocol import AsyncRequestStore, KeyStore, Usage
from .memory import MemoryKeyStore

if TYPE_CHECKING:
    from .redis import RedisKeyStore

__all__ = [
    "AsyncRequestStore",
    "KeyStore",
    "MemoryKeyStore",
    "RedisKeyStore",
    "StoreUnavailable",
    "Usage",
]


def __getattr__(name: str) -> Any:
    if name == "RedisKeyStore":
        from .redis import RedisKeyStore

        return RedisKeyStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
