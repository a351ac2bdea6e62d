"""``MemoryKeyStore``: an in-process store for development, tests and single-process apps.

Security model: it holds digests, never plaintext keys; with ``pepper=`` the digest is
HMAC-SHA256, so a dump of the process memory's records does not let anyone test guesses
without the pepper. All state is guarded by one lock, so every mutation is atomic across
threads; the async methods run the same code (there is no I/O to wait for).
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from .._keys import make_hasher
from .._models import KeyRecord, RateLimit, SessionRecord, StoredKey
from ._memory_limits import MemoryLimits
from ._protocol import UPDATABLE_FIELDS, Usage, grace_cap_refused, rotation_refused
from ._sliding_log import RateBudget
from ._usage import History, UsageLog

__all__ = ["MemoryKeyStore"]


class MemoryKeyStore(MemoryLimits):
    """In-memory key store implementing both the sync and the async store protocols.

    Parameters:
        pepper: optional server-side secret; digests become HMAC-SHA256 keyed with it.
    """

    request_path_never_blocks = True
    """Its request-path methods do no I/O, so async callers may call the sync ones."""

    def __init__(self, *, pepper: bytes | str | None = None) -> None:
        self._pepper = pepper.encode() if isinstance(pepper, str) else pepper
        self.hasher = make_hasher(self._pepper)
        """The hash of the bytes of a presented key; its ``hexdigest()`` is :meth:`digest`."""
        self._lock = threading.Lock()
        self._keys: dict[str, StoredKey] = {}
        self.current_key = self._keys.get
        """The record held for a key id right now, without I/O (the fast path's version
        check): every change stores a new object, so identity tells whether it changed."""
        self._sessions: dict[str, SessionRecord] = {}
        self._dashboard: dict[tuple[str, str], tuple[str, float | None]] = {}
        self._attempts: dict[str, list[tuple[float, str]]] = {}
        self._usage = UsageLog()
        self.count_request = self._usage.count
        """Count one request of a key at a time in epoch seconds (no lock, no I/O)."""
        self.usage_cell = self._usage.cell
        self.fold_usage = self._usage.fold
        self._limits: dict[str, RateBudget] = {}
        self._project_limits: dict[str, tuple[RateLimit, ...]] = {}
        self._credits: dict[str, list[int]] = {}  # lineage: [left, anchor ms, refills done]

    def __repr__(self) -> str:
        return f"MemoryKeyStore(keys={len(self._keys)}, sessions={len(self._sessions)})"

    def digest(self, token: str) -> str:
        """Digest of a plaintext key or token."""
        return self.hasher(token.encode("ascii")).hexdigest()

    # -- keys -------------------------------------------------------------------------------
    def get_key(self, key_id: str) -> StoredKey | None:
        """The stored key or ``None``."""
        return self._keys.get(key_id)

    async def get_key_async(self, key_id: str) -> StoredKey | None:
        """Async twin of :meth:`get_key`."""
        return self._keys.get(key_id)

    def insert_key(self, stored: StoredKey) -> None:
        """Add a new key; ``ValueError`` when the id exists."""
        with self._lock:
            if stored.record.id in self._keys:
                raise ValueError(f"key id {stored.record.id} already exists")
            self._keys[stored.record.id] = stored

    def _require(self, key_id: str) -> StoredKey:
        stored = self._keys.get(key_id)
        if stored is None:
            raise KeyError(key_id)
        return stored

    def update_key(self, key_id: str, changes: Mapping[str, Any]) -> KeyRecord:
        """Set fields of a key atomically; ``KeyError`` when unknown."""
        unknown = set(changes) - UPDATABLE_FIELDS
        if unknown:
            raise ValueError(f"fields cannot be updated: {', '.join(sorted(unknown))}")
        with self._lock:
            stored = self._require(key_id)
            old = stored.record
            if "expires_at" in changes and old.rotated_to is not None and old.expires_at:
                new_expiry = changes["expires_at"]
                if new_expiry is None or new_expiry > old.expires_at:
                    raise grace_cap_refused(key_id, old.expires_at)
            fields = dict(changes)
            if "rate_limit" in fields:  # the change set names every limit, as a tuple
                fields["rate_limits"] = fields.pop("rate_limit")
            record = dataclasses.replace(old, **fields)
            self._keys[key_id] = dataclasses.replace(stored, record=record)
            return record  # a new rate limit applies to the lineage's existing budget

    def revoke_key(self, key_id: str, at: datetime) -> KeyRecord:
        """Mark a key revoked; the first revocation time stays."""
        with self._lock:
            stored = self._require(key_id)
            if stored.record.revoked_at is not None:
                return stored.record
            record = dataclasses.replace(stored.record, revoked_at=at)
            self._keys[key_id] = dataclasses.replace(stored, record=record)
            return record

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
        """Atomically create the successor and shorten the old key's life."""
        with self._lock:
            stored = self._require(old_id)
            old = stored.record
            if old.revoked_at is not None:
                raise rotation_refused(old.id, "revoked")
            if old.expires_at is not None and now >= old.expires_at:
                raise rotation_refused(old.id, "expired")
            if old.rotated_to is not None:
                raise rotation_refused(old.id, "rotated", old.rotated_to)
            if new_id in self._keys:
                raise ValueError(f"key id {new_id} already exists")
            new = dataclasses.replace(
                old,
                id=new_id,
                created_at=now,
                revoked_at=None,
                hint=new_hint,
                rotated_from=old.id,
                rotated_to=None,
                last_used_at=None,
                request_count=0,
                lineage_id=old.lineage,
            )
            old_expiry = grace_end if old.expires_at is None else min(old.expires_at, grace_end)
            old = dataclasses.replace(old, expires_at=old_expiry, rotated_to=new_id)
            self._keys[old_id] = dataclasses.replace(stored, record=old)
            self._keys[new_id] = StoredKey(new, new_digest)
            return old, new

    def list_keys(self, project_id: str | None = None) -> list[KeyRecord]:
        """Every key (of one project when given), oldest first."""
        records = [s.record for s in list(self._keys.values())]
        if project_id is not None:
            records = [r for r in records if r.project_id == project_id]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    # -- sessions ---------------------------------------------------------------------------
    def insert_session(self, session: SessionRecord) -> None:
        """Add a widget session."""
        with self._lock:
            if session.id in self._sessions:
                raise ValueError(f"session id {session.id} already exists")
            self._sessions[session.id] = session

    async def insert_session_async(self, session: SessionRecord) -> None:
        """Async twin of :meth:`insert_session`."""
        self.insert_session(session)

    def get_session(self, session_id: str) -> SessionRecord | None:
        """The session or ``None``."""
        return self._sessions.get(session_id)

    async def get_session_async(self, session_id: str) -> SessionRecord | None:
        """Async twin of :meth:`get_session`."""
        return self._sessions.get(session_id)

    def revoke_session(self, session_id: str, at: datetime) -> SessionRecord | None:
        """Mark a session revoked; ``None`` when unknown."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or session.revoked_at is not None:
                return session
            session = dataclasses.replace(session, revoked_at=at)
            self._sessions[session_id] = session
            return session

    # -- rate limits and usage ---------------------------------------------------------------
    def record_usage(self, key_id: str, at: datetime) -> None:
        """Count one request (in memory, no I/O)."""
        self.count_request(key_id, at.timestamp())

    def count_refusal(self, key_id: str, code: str, at: datetime) -> None:
        """Count a refusal of a request that presented ``key_id``'s secret."""
        self._usage.count_refusal(key_id, code, at.timestamp())

    def usage_history(self, key_id: str, hours: int = 7 * 24) -> History:
        """Accepted requests and refusals by code per hour over the last ``hours`` hours
        (epoch hours)."""
        first = int(time.time() // 3600) - hours + 1
        held = self._usage.history(key_id)
        return History(
            {h: n for h, n in held.accepted.items() if h >= first},
            {b: n for b, n in held.refused.items() if b[0] >= first},
        )

    # -- dashboard state (accounts, sign-in sessions) -----------------------------------------
    def put_dashboard_item(self, kind: str, item_id: str, value: str, ttl: float | None) -> None:
        """Store ``value`` under ``(kind, item_id)``, for ``ttl`` seconds (``None``: kept)."""
        expires = time.monotonic() + ttl if ttl is not None else None
        with self._lock:
            self._dashboard[(kind, item_id)] = (value, expires)

    def get_dashboard_item(self, kind: str, item_id: str) -> str | None:
        """The value under ``(kind, item_id)``, or ``None`` (absent or expired)."""
        with self._lock:
            entry = self._dashboard.get((kind, item_id))
            if entry is None:
                return None
            if entry[1] is not None and entry[1] <= time.monotonic():
                del self._dashboard[(kind, item_id)]
                return None
            return entry[0]

    def delete_dashboard_item(self, kind: str, item_id: str) -> bool:
        """Remove ``(kind, item_id)``; whether it was there."""
        with self._lock:
            return self._dashboard.pop((kind, item_id), None) is not None

    def dashboard_item_ids(self, kind: str) -> list[str]:
        """The ids of the kept (TTL-less) items of ``kind``, sorted."""
        with self._lock:
            return sorted(
                item_id
                for (k, item_id), (_, expires) in self._dashboard.items()
                if k == kind and expires is None
            )

    def take_attempt(self, bucket: str, limit: int, window: float) -> str | None:
        """Take one of ``limit`` slots per ``window`` seconds of ``bucket`` (a ticket naming
        it), or ``None`` when all are taken."""
        now = time.monotonic()
        with self._lock:
            kept = [slot for slot in self._attempts.get(bucket, ()) if slot[0] > now - window]
            if len(kept) >= limit:
                self._attempts[bucket] = kept
                return None
            ticket = secrets.token_hex(8)
            if len(self._attempts) >= 10_000:  # forget buckets whose slots have all expired
                self._attempts = {
                    b: slots
                    for b, slots in self._attempts.items()
                    if slots and slots[-1][0] > now - window
                }
            self._attempts[bucket] = [*kept, (now, ticket)]
            return ticket

    def return_attempt(self, bucket: str, ticket: str) -> None:
        """Give back the slot ``ticket`` names."""
        with self._lock:
            slots = self._attempts.get(bucket, [])
            self._attempts[bucket] = [slot for slot in slots if slot[1] != ticket]

    def get_usage(self, key_ids: Iterable[str]) -> dict[str, Usage]:
        """Usage of the given keys."""
        return {
            key_id: (count, datetime.fromtimestamp(last, UTC))
            for key_id, (count, last) in self._usage.totals(key_ids).items()
        }
