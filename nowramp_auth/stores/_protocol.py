"""The store protocols: what the core needs from a key store, sync and async.

A store keeps :class:`~nowramp_auth._models.StoredKey` records by key id and widget sessions by
session id. It never sees a plaintext key, only digests made by its own :meth:`digest` (which
knows the pepper). Every mutation that must be atomic is one store method, so a networked
store can make it one server-side step: rotation checks and links both records at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from .._budgets import Limits
from .._models import KeyRecord, RateLimit, RateLimitStatus, SessionRecord, StoredKey

__all__ = [
    "NOT_CACHED",
    "UPDATABLE_FIELDS",
    "AsyncRequestStore",
    "KeyStore",
    "Usage",
    "grace_cap_refused",
    "rotation_refused",
]

NOT_CACHED: Any = object()
"""What an optional ``peek(operation, args)`` method returns when it has no cached answer."""

Usage = tuple[int, datetime | None]
"""(request count, last used at) of one key."""

UPDATABLE_FIELDS = frozenset(
    {"scopes", "allowed_ips", "name", "metadata", "rate_limit", "project_limits", "expires_at"}
)


def rotation_refused(key_id: str, reason: str, successor: str | None = None) -> ValueError:
    """The error every store raises for a key that cannot be rotated.

    ``reason`` is ``"revoked"``, ``"expired"`` or ``"rotated"`` (then ``successor`` names the
    key to rotate instead)."""
    if reason == "revoked":
        return ValueError(f"key {key_id} is revoked and cannot be rotated")
    if reason == "expired":
        return ValueError(f"key {key_id} has expired and cannot be rotated")
    return ValueError(f"key {key_id} was already rotated to {successor}; rotate that key instead")


def grace_cap_refused(key_id: str, grace_end: datetime) -> ValueError:
    """The error every store raises for an update that would lift or extend the expiry of a
    rotated key: the end of its grace period is a hard cap (it may only be shortened)."""
    return ValueError(
        f"key {key_id} was rotated; its grace period ends {grace_end.isoformat()} and an "
        "update may only shorten it"
    )


@runtime_checkable
class KeyStore(Protocol):
    """Synchronous store: the request path (WSGI, CLI) and every management operation.

    A store may also offer ``store_counts()``, returning a
    :class:`~nowramp_auth.stores._stats.StoreCounts` (its cache hits and misses, failed calls
    per operation, invalidation traffic, rate-limit script calls) for the metrics exporters;
    without it, those series stay at 0 (the memory store has no cache and no network)."""

    def digest(self, token: str) -> str:
        """Digest of a plaintext key or session token (SHA-256, or HMAC with the pepper)."""

    def get_key(self, key_id: str) -> StoredKey | None:
        """The stored key, or ``None`` when unknown. Raises ``StoreUnavailable`` on I/O failure."""

    def insert_key(self, stored: StoredKey) -> None:
        """Add a new key; ``ValueError`` when the id exists."""

    def update_key(self, key_id: str, changes: Mapping[str, Any]) -> KeyRecord:
        """Set the given fields of a key atomically; ``KeyError`` when unknown."""

    def revoke_key(self, key_id: str, at: datetime) -> KeyRecord:
        """Mark a key revoked (idempotent: the first revocation time stays); ``KeyError``."""

    def rotate_key(
        self,
        old_id: str,
        *,
        new_id: str,
        new_digest: str,
        new_hint: str,
        now: datetime,
        grace_end: datetime,
    ) -> tuple[KeyRecord, KeyRecord]:
        """Atomically create the successor of ``old_id`` and shorten the old key's life.

        The successor copies type, scopes, name, project, allowlist, metadata, rate limit and
        expiry. The old key's ``expires_at`` becomes ``min(expires_at, grace_end)``. Returns
        ``(old, new)``. ``KeyError`` when unknown; ``ValueError`` when the old key is revoked,
        expired at ``now``, or already has a successor.
        """

    def set_project_limits(self, project_id: str, limits: tuple[RateLimit, ...]) -> None:
        """Keep ``limits`` as the budgets of ``project_id`` (empty: none)."""

    def get_project_limits(self, project_id: str) -> tuple[RateLimit, ...]:
        """The budgets of ``project_id`` (empty: none)."""

    def set_credits(self, record: KeyRecord, remaining: int, at: datetime) -> None:
        """Start the credits of ``record``'s lineage at ``remaining`` (its refills count
        from ``at``). Called before the key is inserted."""

    def add_credits(self, record: KeyRecord, count: int, at: datetime) -> int:
        """Add ``count`` credits to ``record``'s lineage (atomically); the count left."""

    def get_credits(self, record: KeyRecord, at: datetime) -> int | None:
        """The credits ``record``'s lineage has left at ``at`` (``None``: none)."""

    def list_keys(self, project_id: str | None = None) -> list[KeyRecord]:
        """Every key (of one project when given), oldest first."""

    def insert_session(self, session: SessionRecord) -> None:
        """Add a widget session (a networked store expires it at ``session.expires_at``)."""

    def get_session(self, session_id: str) -> SessionRecord | None:
        """The session, or ``None`` when unknown or gone."""

    def revoke_session(self, session_id: str, at: datetime) -> SessionRecord | None:
        """Mark a session revoked; ``None`` when unknown."""

    def hit_rate_limit(self, lineage: str, limit: Limits, now: datetime) -> RateLimitStatus:
        """Count one request against ``limit`` if it fits; say whether it did. ``lineage``
        (``KeyRecord.lineage``) names the budget a key shares with its rotated successors.
        ``limit`` may be a tuple of several limits: the request is counted in all of them
        or, when any one is used up, in none (one atomic step), and the status is
        :func:`~nowramp_auth._budgets.closest` of theirs."""

    def record_usage(self, key_id: str, at: datetime) -> None:
        """Note one authenticated request. Must not block on I/O (write behind)."""

    def get_usage(self, key_ids: Iterable[str]) -> dict[str, Usage]:
        """Usage of the given keys (keys never used may be missing)."""


@runtime_checkable
class AsyncRequestStore(Protocol):
    """The request-path operations for async callers; they never block the event loop."""

    async def get_key_async(self, key_id: str) -> StoredKey | None:
        """Async twin of :meth:`KeyStore.get_key`."""

    async def get_session_async(self, session_id: str) -> SessionRecord | None:
        """Async twin of :meth:`KeyStore.get_session`."""

    async def insert_session_async(self, session: SessionRecord) -> None:
        """Async twin of :meth:`KeyStore.insert_session`."""

    def hit_rate_limit_async(
        self, lineage: str, limit: Limits, now: datetime
    ) -> Awaitable[RateLimitStatus]:
        """Async twin of :meth:`KeyStore.hit_rate_limit` (a coroutine function, or a method
        returning a future).

        A store may also offer ``rate_charger(lineage, limit)``, returning a function of
        ``now`` (epoch seconds) that makes the same call: the authenticator builds it once
        per verified key version and calls it on every rate-limited request of its fast
        path, so whatever the call needs per budget is prepared once (the Redis store's key
        names and arguments). Without it, each call goes through this method."""
