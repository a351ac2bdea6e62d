"""The allow/refuse decision, from (stored record, presented digest, now, client, scopes) (pure).

Order of checks: digest → revoked → expired → client address → scopes. The digest is
compared first and in constant time, so a caller without the right secret learns nothing about
a key's state. An unknown key is compared against a dummy digest, so that path takes the same
time as a wrong secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection
from datetime import datetime
from types import MappingProxyType

from ._client_ip import IPAddress, NetworkSet, ip_allowed, parse_networks
from ._errors import AuthError, ErrorCode
from ._models import KeyRecord, Principal, SessionRecord, StoredKey

__all__ = ["decide_key", "decide_session", "derived", "verify_session_digest"]

_DUMMY_DIGEST = "0" * 64

_ANY_ADDRESS = NetworkSet()
_derived_cache: dict[int, tuple[KeyRecord, Principal, NetworkSet]] = {}


def _missing_scopes(held: frozenset[str], required: Collection[str]) -> bool:
    return bool(required) and not held.issuperset(required)


def decide_key(
    stored: StoredKey | None,
    presented_digest: str,
    now: datetime,
    client_ip: IPAddress | None,
    required_scopes: Collection[str] = (),
) -> Principal:
    """Principal for a key that passes every check; else raise :class:`AuthError`."""
    expected = stored.digest if stored is not None else _DUMMY_DIGEST
    if not hmac.compare_digest(expected, presented_digest) or stored is None:
        raise AuthError(ErrorCode.INVALID_API_KEY)
    record = stored.record
    if record.revoked_at is not None:
        raise AuthError(
            ErrorCode.INVALID_API_KEY, key_id=record.id, project_id=record.project_id, verified=True
        )
    if record.expires_at is not None and now >= record.expires_at:
        raise AuthError(
            ErrorCode.API_KEY_EXPIRED, key_id=record.id, project_id=record.project_id, verified=True
        )
    principal, allowlist = derived(record)
    if not ip_allowed(client_ip, allowlist):
        raise AuthError(
            ErrorCode.IP_NOT_ALLOWED, key_id=record.id, project_id=record.project_id, verified=True
        )
    if _missing_scopes(record.scopes, required_scopes):
        raise AuthError(
            ErrorCode.INSUFFICIENT_PERMISSIONS,
            required_scopes=required_scopes,
            key_id=record.id,
            project_id=record.project_id,
            verified=True,
        )
    return principal


def derived(record: KeyRecord) -> tuple[Principal, NetworkSet]:
    """The principal and the parsed allowlist of a record, built once per record version.

    Records are immutable and stores hand out the same object until it changes, so both are
    cached by identity (the entry holds the record, so the id cannot be reused while cached).
    The principal is shared by every request of that version, so it is immutable throughout:
    frozen, a frozenset of scopes, a read-only copy of the metadata."""
    entry = _derived_cache.get(id(record))
    if entry is not None and entry[0] is record:
        return entry[1], entry[2]
    principal = Principal(
        key_id=record.id,
        key_type=record.key_type,
        scopes=record.scopes,
        project_id=record.project_id,
        metadata=MappingProxyType(dict(record.metadata)),
    )
    allowlist = parse_networks(record.allowed_ips) if record.allowed_ips else _ANY_ADDRESS
    if len(_derived_cache) > 8192:
        _derived_cache.clear()
    _derived_cache[id(record)] = (record, principal, allowlist)
    return principal, allowlist


def verify_session_digest(session: SessionRecord | None, presented_digest: str) -> SessionRecord:
    """The session if the presented token's digest matches (constant time); else refuse."""
    expected = session.digest if session is not None else _DUMMY_DIGEST
    if not hmac.compare_digest(expected, presented_digest) or session is None:
        raise AuthError(ErrorCode.INVALID_SESSION_TOKEN)
    return session


def decide_session(
    session: SessionRecord,
    parent: KeyRecord | None,
    now: datetime,
    required_scopes: Collection[str] = (),
) -> Principal:
    """Principal for a widget session whose digest matched; else raise :class:`AuthError`.

    The parent key's IP allowlist does not apply (the session runs in a browser); its
    revocation and expiry do, and so do later cuts to its scopes.
    """
    key_id, project = session.key_id, session.project_id
    if session.revoked_at is not None or parent is None or parent.revoked_at is not None:
        raise AuthError(
            ErrorCode.INVALID_SESSION_TOKEN, key_id=key_id, project_id=project, verified=True
        )
    if now >= session.expires_at or (parent.expires_at is not None and now >= parent.expires_at):
        raise AuthError(ErrorCode.SESSION_EXPIRED, key_id=key_id, project_id=project, verified=True)
    scopes = session.scopes & parent.scopes
    if _missing_scopes(scopes, required_scopes):
        raise AuthError(
            ErrorCode.INSUFFICIENT_PERMISSIONS,
            required_scopes=required_scopes,
            key_id=key_id,
            project_id=project,
            verified=True,
        )
    return Principal(
        key_id=key_id,
        key_type=parent.key_type,
        scopes=scopes,
        project_id=session.project_id,
        kind="session",
        session_id=session.id,
        customer_id=session.customer_id,
    )
