"""How records are laid out in Redis (pure): key names, and hash fields to and from values.

Every Redis key of one rotation lineage carries the lineage's family as its hash tag
(``{Ab3d}``), so a record, its successor, its sessions, its rate-limit log and its usage
counters live in one Redis Cluster slot and can change together in one Lua script. Key names
hold public ids only: never a secret, never a digest.

Times are stored as integer microseconds since the epoch (exact in Lua's doubles until 2255).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from .._budgets import credits_from_json, credits_to_json, decode_limits, encode_limits
from .._keys import key_family
from .._models import KeyRecord, RateLimit, SessionRecord, StoredKey

__all__ = [
    "KeyNames",
    "decode_key",
    "decode_session",
    "encode_changes",
    "encode_key",
    "encode_session",
    "from_us",
    "to_us",
]


def to_us(value: datetime) -> str:
    """A datetime as integer microseconds since the epoch (text)."""
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return str(delta // timedelta(microseconds=1))


def from_us(value: str) -> datetime:
    """Inverse of :func:`to_us`."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(value))


class KeyNames:
    """Redis key names under one namespace."""

    def __init__(self, namespace: str) -> None:
        if not namespace or any(c in namespace for c in "{} \n\r\t"):
            raise ValueError(f"namespace must be non-empty without braces or spaces: {namespace!r}")
        self.ns = namespace
        self.channel = f"{namespace}:invalidate"
        self.all_keys = f"{namespace}:index:keys"
        self.audit = f"{namespace}:audit"

    def record(self, key_id: str) -> str:
        """The hash of a key record."""
        return f"{self.ns}:key:{{{key_family(key_id)}}}:{key_id}"

    def session(self, session_id: str) -> str:
        """The hash of a widget session."""
        return f"{self.ns}:sess:{{{key_family(session_id)}}}:{session_id}"

    def rate_log(self, lineage: str, tag: str | None = None) -> str:
        """The sorted set of a budget's recent accepted requests (exact limits): under the
        lineage's hash tag, or ``tag`` (a project's, for a key whose project has budgets)."""
        return f"{self.ns}:rl:{{{tag or key_family(lineage)}}}:{lineage}"

    def rate_counts(self, lineage: str, tag: str | None = None) -> str:
        """The hash of a budget's counts per sub-window (large limits); tags as
        :meth:`rate_log`."""
        return f"{self.ns}:rlc:{{{tag or key_family(lineage)}}}:{lineage}"

    def credits(self, lineage: str, tag: str | None = None) -> str:
        """The hash of a lineage's credits (r: left, a: refill anchor ms, d: refills done),
        under the tag of the key's rate counters."""
        return f"{self.ns}:cr:{{{tag or key_family(lineage)}}}:{lineage}"

    def project_limits(self, project_id: str) -> str:
        """The JSON list of a project's budgets."""
        return f"{self.ns}:pl:{{p:{project_id}}}"

    def usage(self, key_id: str) -> str:
        """The hash of a key's usage counters."""
        return f"{self.ns}:usage:{{{key_family(key_id)}}}:{key_id}"

    def project(self, project_id: str) -> str:
        """The set of key ids of one project (an index; records are the truth)."""
        return f"{self.ns}:index:project:{project_id}"


def _opt(value: datetime | None) -> str | None:
    return to_us(value) if value is not None else None


def encode_key(stored: StoredKey) -> dict[str, str]:
    """Hash fields of a stored key (``None`` fields are left out)."""
    r = stored.record
    fields: dict[str, str | None] = {
        "id": r.id,
        "type": r.key_type,
        "scopes": " ".join(sorted(r.scopes)),
        "name": r.name,
        "project": r.project_id,
        "ips": " ".join(r.allowed_ips),
        "created": to_us(r.created_at),
        "expires": _opt(r.expires_at),
        "revoked": _opt(r.revoked_at),
        "hint": r.hint,
        "meta": json.dumps(dict(r.metadata), sort_keys=True),
        "from": r.rotated_from,
        "to": r.rotated_to,
        "lineage": r.lineage_id,
        "digest": stored.digest,
        **_encode_rate_limit(r.rate_limits),
        "pls": encode_limits(r.project_limits) if r.project_limits else None,
        "cr": json.dumps(credits_to_json(r.credits)) if r.credits else None,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _encode_rate_limit(limits: tuple[RateLimit, ...]) -> dict[str, str | None]:
    # One unnamed limit keeps the fields every earlier version wrote; several (or a named
    # one) are one JSON field, [[requests, window ms, name], ...].
    if len(limits) == 1 and limits[0].name is None:
        limit = limits[0]
        return {
            "rl_requests": str(limit.requests),
            "rl_window_ms": str(limit.window_ms),
            "rls": None,
        }
    if not limits:
        return {"rl_requests": None, "rl_window_ms": None, "rls": None}
    return {"rl_requests": None, "rl_window_ms": None, "rls": encode_limits(limits)}


def _decode_rate_limits(fields: dict[str, str]) -> tuple[RateLimit, ...]:
    if "rls" in fields:
        return decode_limits(fields["rls"])
    if "rl_requests" in fields:
        window = timedelta(milliseconds=int(fields["rl_window_ms"]))
        return (RateLimit(int(fields["rl_requests"]), window),)
    return ()


def encode_changes(changes: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Hash fields to set and to delete for a :meth:`KeyStore.update_key` change set."""
    values: dict[str, str | None] = {}
    for name, value in changes.items():
        if name == "scopes":
            values["scopes"] = " ".join(sorted(value))
        elif name == "allowed_ips":
            values["ips"] = " ".join(value)
        elif name == "name":
            values["name"] = value
        elif name == "metadata":
            values["meta"] = json.dumps(dict(value), sort_keys=True)
        elif name == "rate_limit":
            values.update(_encode_rate_limit(value))
        elif name == "project_limits":
            values["pls"] = encode_limits(value) if value else None
        elif name == "expires_at":
            values["expires"] = _opt(value)
        else:
            raise ValueError(f"field cannot be updated: {name}")
    to_set = {k: v for k, v in values.items() if v is not None}
    to_delete = [k for k, v in values.items() if v is None]
    return to_set, to_delete


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(value.split()) if value else ()


def decode_key(fields: dict[str, str]) -> StoredKey | None:
    """A stored key from its hash fields; ``None`` for an empty (missing) hash."""
    if not fields or "id" not in fields:
        return None
    key_type = fields["type"]
    record = KeyRecord(
        id=fields["id"],
        key_type="live" if key_type == "live" else "test",
        scopes=frozenset(_split(fields.get("scopes"))),
        name=fields.get("name", ""),
        project_id=fields.get("project"),
        allowed_ips=_split(fields.get("ips")),
        created_at=from_us(fields["created"]),
        expires_at=from_us(fields["expires"]) if "expires" in fields else None,
        revoked_at=from_us(fields["revoked"]) if "revoked" in fields else None,
        hint=fields.get("hint", ""),
        metadata=json.loads(fields.get("meta") or "{}"),
        rate_limits=_decode_rate_limits(fields),
        project_limits=decode_limits(fields.get("pls")),
        credits=credits_from_json(fields.get("cr")),
        rotated_from=fields.get("from"),
        rotated_to=fields.get("to"),
        lineage_id=fields.get("lineage"),
    )
    return StoredKey(record, fields["digest"])


def encode_session(session: SessionRecord) -> dict[str, str]:
    """Hash fields of a widget session."""
    fields = {
        "id": session.id,
        "key": session.key_id,
        "project": session.project_id,
        "customer": session.customer_id,
        "scopes": " ".join(sorted(session.scopes)),
        "created": to_us(session.created_at),
        "expires": to_us(session.expires_at),
        "revoked": _opt(session.revoked_at),
        "digest": session.digest,
    }
    return {k: v for k, v in fields.items() if v is not None}


def decode_session(fields: dict[str, str]) -> SessionRecord | None:
    """A session from its hash fields; ``None`` for a missing hash."""
    if not fields or "id" not in fields:
        return None
    return SessionRecord(
        id=fields["id"],
        key_id=fields["key"],
        project_id=fields["project"],
        customer_id=fields.get("customer"),
        scopes=frozenset(_split(fields.get("scopes"))),
        created_at=from_us(fields["created"]),
        expires_at=from_us(fields["expires"]),
        revoked_at=from_us(fields["revoked"]) if "revoked" in fields else None,
        digest=fields["digest"],
    )


def flat_pairs(fields: Mapping[str, str]) -> list[str]:
    """A hash's fields as Redis' flat argument list: ``[field, value, field, value, ...]``."""
    return [item for pair in fields.items() for item in pair]


def as_dict(flat: list[str]) -> dict[str, str]:
    """A flat ``HGETALL`` reply (as a script returns it) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
