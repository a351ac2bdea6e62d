"""Value objects: frozen dataclasses that carry keys, sessions, principals and events.

Security model: the plaintext key lives only in :class:`IssuedKey` / :class:`IssuedSession`,
whose ``repr`` hides it. Digests live only in the store-side :class:`StoredKey` /
:class:`SessionRecord` and are hidden from their ``repr`` too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from ._keys import KeyType
from ._limits import Credits, RateLimit, RateLimitStatus, accepted_status

__all__ = [
    "AUDIT_EVENT_TYPES",
    "AuditEvent",
    "IssuedKey",
    "IssuedSession",
    "KeyRecord",
    "Principal",
    "RateLimit",
    "RateLimitStatus",
    "SessionRecord",
    "StoredKey",
    "accepted_status",
    "with_rate_limit",
]

PrincipalKind = Literal["api_key", "session"]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """Everything known about one API key except its secret. Times are timezone-aware UTC."""

    id: str
    key_type: KeyType
    scopes: frozenset[str]
    name: str
    project_id: str | None
    allowed_ips: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    hint: str
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)
    rate_limits: tuple[RateLimit, ...] = ()
    """Every rate limit of the key: a request must fit each one (empty: no limit)."""
    project_limits: tuple[RateLimit, ...] = ()
    """The budgets of the key's project, shared by every key of the project (a copy kept
    with each key, set by ``KeyManager.set_project_limits``): a request must fit these too."""
    credits: Credits | None = None
    """The key's credits as set at creation (the count it started with and its refill);
    what is left now is :attr:`credits_remaining`."""
    credits_remaining: int | None = None
    """Credits left (merged in by ``KeyManager.get``/``list``; ``None``: no credits)."""
    rotated_from: str | None = None
    rotated_to: str | None = None
    last_used_at: datetime | None = None
    request_count: int = 0
    lineage_id: str | None = None
    """The id of the first key of this key's rotation lineage (``None``: this key is the
    first). A key and its successors share one rate-limit budget."""

    @property
    def rate_limit(self) -> RateLimit | None:
        """The key's rate limit when it has one; the first of :attr:`rate_limits` when it
        has several (``None``: no limit)."""
        return self.rate_limits[0] if self.rate_limits else None

    @property
    def lineage(self) -> str:
        """The id the lineage's shared state (its rate-limit budget) is kept under."""
        return self.lineage_id or self.id

    def status(self, now: datetime) -> str:
        """``"revoked"``, ``"expired"``, ``"rotated"`` (in grace) or ``"active"`` at ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        if self.rotated_to is not None:
            return "rotated"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO 8601 times, sorted scopes). Holds no secret."""
        return {
            "id": self.id,
            "key_type": self.key_type,
            "name": self.name,
            "project_id": self.project_id,
            "scopes": sorted(self.scopes),
            "allowed_ips": list(self.allowed_ips),
            "hint": self.hint,
            "metadata": dict(self.metadata),
            # "rate_limit": the first limit, as before several were possible.
            "rate_limit": (
                {
                    "requests": self.rate_limit.requests,
                    "window_seconds": self.rate_limit.window.total_seconds(),
                }
                if self.rate_limit
                else None
            ),
            "rate_limits": [_limit_dict(limit) for limit in self.rate_limits],
            "project_limits": [_limit_dict(limit) for limit in self.project_limits],
            "credits": _credits_dict(self.credits) if self.credits else None,
            "credits_remaining": self.credits_remaining,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "rotated_from": self.rotated_from,
            "rotated_to": self.rotated_to,
            "lineage_id": self.lineage,
            "last_used_at": _iso(self.last_used_at),
            "request_count": self.request_count,
        }


def _limit_dict(limit: RateLimit) -> dict[str, Any]:
    return {
        "requests": limit.requests,
        "window_seconds": limit.window.total_seconds(),
        "name": limit.name,
    }


def _credits_dict(credits: Credits) -> dict[str, Any]:
    refill = credits.refill
    return {
        "remaining": credits.remaining,
        "refill": (
            {"amount": refill.amount, "every_seconds": refill.every.total_seconds()}
            if refill
            else None
        ),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What a store keeps for a key: the record and the digest of the key."""

    record: KeyRecord
    digest: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A newly created or rotated key. ``secret`` is the plaintext, available only here."""

    secret: str = field(repr=False)
    key: KeyRecord

    def __repr__(self) -> str:
        return f"IssuedKey(key={self.key!r}, secret='{self.key.hint}')"


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A widget session as the store keeps it (digest, never the token)."""

    id: str
    key_id: str
    project_id: str
    customer_id: str | None
    scopes: frozenset[str]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    digest: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """A newly created widget session. ``token`` is the plaintext, available only here."""

    token: str = field(repr=False)
    session_id: str
    expires_at: datetime
    project_id: str
    scopes: frozenset[str]
    customer_id: str | None = None

    def __repr__(self) -> str:
        return (
            f"IssuedSession(session_id={self.session_id!r}, project_id={self.project_id!r}, "
            f"expires_at={self.expires_at!r}, token='ramp_sess_…')"
        )

    def to_dict(self) -> dict[str, Any]:
        """The widget endpoint's 201 body."""
        body: dict[str, Any] = {
            "session_token": self.token,
            "expires_at": self.expires_at.isoformat(),
            "project_id": self.project_id,
            "scopes": sorted(self.scopes),
        }
        if self.customer_id is not None:
            body["customer_id"] = self.customer_id
        return body


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request authenticated as.

    Also usable as Starlette's ``request.user`` (``is_authenticated``, ``display_name``,
    ``identity``) without this module importing Starlette.
    """

    key_id: str
    key_type: KeyType
    scopes: frozenset[str]
    project_id: str | None
    kind: PrincipalKind = "api_key"
    session_id: str | None = None
    customer_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    rate_limit: RateLimitStatus | None = field(default=None, compare=False)

    @property
    def is_authenticated(self) -> bool:
        """Always true: a principal exists only for an authenticated request."""
        return True

    @property
    def display_name(self) -> str:
        """The key id (or session id), safe to show."""
        return self.session_id or self.key_id

    @property
    def identity(self) -> str:
        """The key id (or session id)."""
        return self.session_id or self.key_id

    def has_scopes(self, *scopes: str) -> bool:
        """True when every one of ``scopes`` is held."""
        return self.scopes.issuperset(scopes)


_new = object.__new__
(
    _set_key_id,
    _set_key_type,
    _set_scopes,
    _set_project_id,
    _set_kind,
    _set_session_id,
    _set_customer_id,
    _set_metadata,
    _set_rate_limit,
) = (getattr(Principal, name).__set__ for name in Principal.__slots__)


def with_rate_limit(principal: Principal, status: RateLimitStatus) -> Principal:
    """``principal`` with ``rate_limit=status``: what every request of a rate-limited key
    gets. Equal to ``dataclasses.replace(principal, rate_limit=status)``, built with one slot
    store per field instead of the frozen ``__init__``'s ``object.__setattr__`` calls (half
    the cost, on the request path)."""
    copy = _new(Principal)
    _set_key_id(copy, principal.key_id)
    _set_key_type(copy, principal.key_type)
    _set_scopes(copy, principal.scopes)
    _set_project_id(copy, principal.project_id)
    _set_kind(copy, principal.kind)
    _set_session_id(copy, principal.session_id)
    _set_customer_id(copy, principal.customer_id)
    _set_metadata(copy, principal.metadata)
    _set_rate_limit(copy, status)
    return copy


AUDIT_EVENT_TYPES = (
    "key.created",
    "key.rotated",
    "key.revoked",
    "key.updated",
    "key.leaked",
    "key.credits_added",
    "project.limits_changed",
    "session.created",
    "session.revoked",
    "auth.failed",
    "auth.succeeded",
)
"""Every audit event type, in lifecycle order."""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit log entry. Fields not known for an event are ``None``. Never holds a secret."""

    type: str
    at: datetime
    key_id: str | None = None
    code: str | None = None
    client_ip: str | None = None
    method: str | None = None
    path: str | None = None
    project_id: str | None = None
    session_id: str | None = None
    detail: str | None = None
    actor: str | None = None
    """Who caused the event, for events a person caused: a dashboard user's id, ``"cli"``
    from the command line, or what ``KeyManager(actor=...)`` names; ``None`` otherwise."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with stable field names."""
        return {
            "type": self.type,
            "at": self.at.isoformat(),
            "key_id": self.key_id,
            "code": self.code,
            "client_ip": self.client_ip,
            "method": self.method,
            "path": self.path,
            "project_id": self.project_id,
            "session_id": self.session_id,
            "detail": self.detail,
            "actor": self.actor,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEvent:
        """Inverse of :meth:`to_dict`."""
        return cls(
            type=str(data["type"]),
            at=datetime.fromisoformat(str(data["at"])),
            **{
                k: data.get(k)
                for k in (
                    "key_id",
                    "code",
                    "client_ip",
                    "method",
                    "path",
                    "project_id",
                    "session_id",
                    "detail",
                    "actor",
                )
            },
        )


def ceil_seconds(delta: timedelta) -> int:
    """Whole seconds, rounded up, at least 1 (for ``Retry-After``)."""
    return max(1, math.ceil(delta.total_seconds()))
