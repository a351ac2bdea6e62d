"""``KeyManager``: create, rotate, revoke, update, get and list keys.

Security model: the plaintext key exists only in the :class:`IssuedKey` returned by
:meth:`KeyManager.create` and :meth:`KeyManager.rotate`; the store receives its digest.
Every input is validated before anything is written (unknown scope, bad CIDR, naive datetime,
oversized metadata are ``ValueError``/``TypeError`` naming the value).
"""

from __future__ import annotations

import copy
import dataclasses
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from ._audit import AuditEmitter, AuditSink
from ._client_ip import parse_networks
from ._clock import Clock, require_aware, utc_now
from ._decision import _DUMMY_DIGEST
from ._key_fields import validate_credits as _validate_credits
from ._key_fields import validate_rate_limits as _validate_rate_limits
from ._keys import KeyType, generate_key, key_family, make_hint, parse_key
from ._limits import Credits
from ._models import AuditEvent, IssuedKey, KeyRecord, RateLimit, StoredKey
from ._scopes import ScopeRegistry
from .stores._protocol import KeyStore

__all__ = ["DEFAULT_GRACE", "KeyManager", "validate_project_id"]

DEFAULT_GRACE = timedelta(hours=24)
MAX_METADATA_BYTES = 4096
_UNSET: Any = object()


def validate_project_id(project_id: object, *, optional: bool = True) -> str | None:
    """A project id: a non-empty printable string of at most 128 characters."""
    if project_id is None and optional:
        return None
    if not isinstance(project_id, str):
        raise TypeError("project_id must be a str")
    if not project_id or len(project_id) > 128 or not project_id.isprintable():
        raise ValueError("project_id must be 1 to 128 printable characters")
    return project_id


def _validate_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError("name must be a str")
    if len(name) > 200 or not name.isprintable():
        raise ValueError("name must be at most 200 printable characters")
    return name


def _validate_metadata(metadata: object) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError("metadata must be a JSON object (a dict)")
    if not all(isinstance(k, str) for k in metadata):
        raise TypeError("metadata keys must be strings")
    try:
        encoded = json.dumps(dict(metadata), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must be JSON-serialisable: {exc}") from None
    if len(encoded.encode()) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata must be at most {MAX_METADATA_BYTES} bytes as JSON")
    result: dict[str, Any] = json.loads(encoded)
    return result


class KeyManager:
    """Manage API keys in a store.

    Parameters:
        store: any :class:`~nowramp_auth.stores.KeyStore` (memory, Redis).
        clock: returns the current aware datetime (default: UTC now).
        audit: an audit sink or several; key lifecycle events go there.
        scopes: a :class:`ScopeRegistry` or an iterable of allowed scopes
            (default: the twelve NowRamp scopes).
        actor: who makes the changes, named in every audit event (``AuditEvent.actor``);
            :meth:`acting_as` gives a manager for another actor.

    Example::

        manager = KeyManager(MemoryKeyStore())
        issued = manager.create(scopes=["quotes:read"], key_type="test", name="ci")
        issued.secret  # shown once
    """

    def __init__(
        self,
        store: KeyStore,
        *,
        clock: Clock | None = None,
        audit: AuditSink | Iterable[AuditSink] | None = None,
        scopes: ScopeRegistry | Iterable[str] | None = None,
        actor: str | None = None,
    ) -> None:
        for method in ("get_key", "insert_key", "rotate_key", "revoke_key", "digest"):
            if not callable(getattr(store, method, None)):
                raise TypeError(f"store {type(store).__name__} has no {method}() method")
        self.store = store
        self.clock: Clock = clock or utc_now
        self.audit = AuditEmitter(audit)
        self.scopes = scopes if isinstance(scopes, ScopeRegistry) else ScopeRegistry(scopes)
        if actor is not None and (not isinstance(actor, str) or not actor):
            raise TypeError("actor must be a non-empty str or None")
        self.actor = actor

    def acting_as(self, actor: str) -> KeyManager:
        """This manager (same store, clock, audit and scopes) with ``actor`` named in its
        audit events, e.g. the signed-in dashboard user."""
        other = copy.copy(self)
        if not isinstance(actor, str) or not actor:
            raise TypeError("actor must be a non-empty str")
        other.actor = actor
        return other

    def __repr__(self) -> str:
        return f"KeyManager(store={self.store!r})"

    def _now(self) -> datetime:
        return require_aware(self.clock(), "clock()")

    def _event(self, type_: str, record: KeyRecord, detail: str | None = None) -> None:
        if self.audit:
            self.audit.emit(
                AuditEvent(
                    type_,
                    self._now(),
                    key_id=record.id,
                    project_id=record.project_id,
                    detail=detail,
                    actor=self.actor,
                )
            )

    def create(
        self,
        *,
        scopes: Iterable[str],
        key_type: KeyType = "test",
        name: str = "",
        project_id: str | None = None,
        allowed_ips: Iterable[str] = (),
        expires_at: datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        rate_limit: RateLimit | Sequence[RateLimit] | None = None,
        credits: Credits | None = None,
    ) -> IssuedKey:
        """Create a key. Returns the :class:`IssuedKey`; its ``secret`` is never shown again.
        ``rate_limit`` is one :class:`RateLimit` or a list of them (a request must fit each,
        e.g. ``[RateLimit(20, timedelta(seconds=1)), RateLimit(10_000, timedelta(days=1))]``).
        ``credits`` (a :class:`Credits`) gives the key a count of requests in all, with an
        optional refill; successors share it.

        Raises ``ValueError``/``TypeError`` for an unknown scope, a bad key type, CIDR, expiry
        (naive or not in the future), project id, name, metadata or rate limit.
        """
        if key_type not in ("live", "test"):
            raise ValueError(f"key_type must be 'live' or 'test', got {key_type!r}")
        now = self._now()
        valid_scopes = self.scopes.validate(scopes)
        networks = parse_networks(allowed_ips)
        if expires_at is not None:
            expires_at = require_aware(expires_at, "expires_at")
            if expires_at <= now:
                raise ValueError("expires_at must be in the future")
        secret, key_id = generate_key(key_type)
        record = KeyRecord(
            id=key_id,
            key_type=key_type,
            scopes=valid_scopes,
            name=_validate_name(name),
            project_id=validate_project_id(project_id),
            allowed_ips=tuple(str(n) for n in networks),
            created_at=now,
            expires_at=expires_at,
            revoked_at=None,
            hint=make_hint(secret),
            metadata=_validate_metadata(metadata),
            rate_limits=_validate_rate_limits(rate_limit),
            project_limits=self.store.get_project_limits(project_id) if project_id else (),
            credits=_validate_credits(credits),
        )
        if record.credits is not None:  # before the key exists: never a key without them
            self.store.set_credits(record, record.credits.remaining, now)
        self.store.insert_key(StoredKey(record, self.store.digest(secret)))
        self._event("key.created", record)
        return IssuedKey(secret=secret, key=record)

    def rotate(self, key_id: str, *, grace: timedelta = DEFAULT_GRACE) -> IssuedKey:
        """Issue a successor of ``key_id``; the old key stays valid for ``grace`` (never longer
        than its existing expiry).

        Raises ``KeyError`` for an unknown key, ``ValueError`` for a revoked or expired key or
        one already rotated (rotate its successor instead).
        """
        if not isinstance(grace, timedelta):
            raise TypeError("grace must be a timedelta")
        if grace < timedelta(0):
            raise ValueError("grace must not be negative")
        old = self._get_raw(key_id)
        now = self._now()
        secret, new_id = generate_key(old.key_type, family=key_family(old.id))
        old_record, new_record = self.store.rotate_key(
            key_id,
            new_id=new_id,
            new_digest=self.store.digest(secret),
            new_hint=make_hint(secret),
            now=now,
            grace_end=now + grace,
        )
        self._event("key.rotated", old_record, detail=f"rotated_to={new_record.id}")
        return IssuedKey(secret=secret, key=new_record)

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a key at once (idempotent). ``KeyError`` for an unknown key."""
        record = self.store.revoke_key(key_id, self._now())
        self._event("key.revoked", record)
        return record

    def find_presented(self, token: str) -> KeyRecord | None:
        """The record of a plaintext key found somewhere (a leak report): only when the
        token is well formed, its checksum holds and its digest matches the stored one
        (constant time), whatever the key's state; ``None`` otherwise. A made-up key or a
        bad checksum costs no store access; a known id with the wrong secret is ``None``."""
        parsed = parse_key(token) if isinstance(token, str) else None
        if parsed is None:
            return None
        stored = self.store.get_key(parsed.key_id)
        expected = stored.digest if stored is not None else _DUMMY_DIGEST
        if not hmac.compare_digest(expected, self.store.digest(token)) or stored is None:
            return None
        return stored.record

    def revoke_leaked(
        self, key_id: str, *, url: str | None, source: str | None
    ) -> tuple[KeyRecord, AuditEvent]:
        """Revoke a key found in public (if not revoked already) and record ``key.leaked``
        with where it was found (``url``, ``source``; never the key) in its detail. Returns
        the record and that event."""
        now = self._now()
        record = self.store.revoke_key(key_id, now)
        if record.revoked_at == now:  # revoked now, not before (the first time stays)
            self._event("key.revoked", record)
        found = {"url": (url or "")[:2048], "source": (source or "")[:200]}
        event = AuditEvent(
            "key.leaked",
            now,
            key_id=record.id,
            project_id=record.project_id,
            detail=json.dumps(found, sort_keys=True),
            actor=self.actor,
        )
        if self.audit:
            self.audit.emit(event)
        return record, event

    def update(
        self,
        key_id: str,
        *,
        scopes: Iterable[str] = _UNSET,
        allowed_ips: Iterable[str] = _UNSET,
        name: str = _UNSET,
        metadata: Mapping[str, Any] = _UNSET,
        rate_limit: RateLimit | Sequence[RateLimit] | None = _UNSET,
        expires_at: datetime | None = _UNSET,
    ) -> KeyRecord:
        """Change the given fields of a key (others stay). ``KeyError`` for an unknown key;
        ``ValueError``/``TypeError`` for invalid values (nothing is written then).

        A rotated key's grace end is a hard cap: ``expires_at`` may shorten it, while a value
        that would lift (``None``) or extend it is a ``ValueError`` naming the grace end."""
        changes: dict[str, Any] = {}
        if scopes is not _UNSET:
            changes["scopes"] = self.scopes.validate(scopes)
        if allowed_ips is not _UNSET:
            changes["allowed_ips"] = tuple(str(n) for n in parse_networks(allowed_ips))
        if name is not _UNSET:
            changes["name"] = _validate_name(name)
        if metadata is not _UNSET:
            changes["metadata"] = _validate_metadata(metadata)
        if rate_limit is not _UNSET:
            # A tuple of every limit (empty: none); stores set KeyRecord.rate_limits.
            changes["rate_limit"] = _validate_rate_limits(rate_limit)
        if expires_at is not _UNSET:
            changes["expires_at"] = (
                None if expires_at is None else require_aware(expires_at, "expires_at")
            )
        if not changes:
            return self.get(key_id)
        record = self.store.update_key(key_id, changes)
        self._event("key.updated", record, detail="fields=" + ",".join(sorted(changes)))
        return self._with_usage([record])[0]

    def _get_raw(self, key_id: str) -> KeyRecord:
        stored = self.store.get_key(key_id)
        if stored is None:
            raise KeyError(key_id)
        return stored.record

    def _with_usage(self, records: list[KeyRecord]) -> list[KeyRecord]:
        usage = self.store.get_usage(r.id for r in records)
        merged = []
        for record in records:
            count, last = usage.get(record.id, (0, None))
            if count or last:
                record = dataclasses.replace(record, request_count=count, last_used_at=last)
            if record.credits is not None:
                left = self.store.get_credits(record, self._now())
                record = dataclasses.replace(record, credits_remaining=left)
            merged.append(record)
        return merged

    def add_credits(self, key_id: str, count: int) -> int:
        """Add ``count`` credits to a key (and its lineage); returns the credits left.
        ``KeyError``: unknown key; ``ValueError``: no credits, or a count below 1."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be an int of at least 1, got {count!r}")
        record = self._get_raw(key_id)
        if record.credits is None:
            raise ValueError(f"key {key_id} has no credits (create it with credits=Credits(...))")
        left = self.store.add_credits(record, count, self._now())
        self._event("key.credits_added", record, detail=f"added={count} remaining={left}")
        return left

    def get(self, key_id: str) -> KeyRecord:
        """The record of ``key_id`` with its usage merged in. ``KeyError`` when unknown."""
        return self._with_usage([self._get_raw(key_id)])[0]

    def set_project_limits(
        self, project_id: str, limits: RateLimit | Sequence[RateLimit] | None
    ) -> tuple[RateLimit, ...]:
        """Set the budgets shared by every key of ``project_id`` (successors and widget
        sessions included; ``[]`` clears them) and return them. Each key of the project keeps
        a copy (``KeyRecord.project_limits``), updated here, so other instances see the change
        as they see any key update; keys created later get the budgets too.
        Example: ``manager.set_project_limits("p1", [RateLimit(10_000, timedelta(days=1))])``.
        """
        checked = validate_project_id(project_id, optional=False)
        if checked is None:  # pragma: no cover - optional=False never answers None
            raise ValueError("project_id is required")
        project_id = checked
        budgets = _validate_rate_limits(limits)
        self.store.set_project_limits(project_id, budgets)
        for record in self.store.list_keys(project_id):
            if record.project_limits != budgets:
                self.store.update_key(record.id, {"project_limits": budgets})
        if self.audit:
            text = ", ".join(str(limit) for limit in budgets) or "none"
            self.audit.emit(
                AuditEvent(
                    "project.limits_changed",
                    self._now(),
                    project_id=project_id,
                    detail=f"limits={text}",
                    actor=self.actor,
                )
            )
        return budgets

    def get_project_limits(self, project_id: str) -> tuple[RateLimit, ...]:
        """The budgets shared by the keys of ``project_id`` (empty: none)."""
        return self.store.get_project_limits(project_id)

    def list(self, project_id: str | None = None) -> list[KeyRecord]:
        """Every key (of ``project_id`` when given), oldest first, with usage merged in."""
        return self._with_usage(self.store.list_keys(project_id))
