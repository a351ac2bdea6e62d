"""``nowramp-auth keys export`` / ``keys import``: move keys between stores as JSON lines.

Each line is one key: its record (ids, type, scopes, project, allowlist, times, rotation links
and lineage, metadata, rate limits, project budgets, credits and what is left of them), its
digest and its usage, never a plaintext. Imported keys
keep their ids and digests, so every secret issued by the old store works unchanged on the
new one (give both the same pepper). Importing is idempotent: a key already there is left
alone and counted as skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, TextIO

from .._limits import Credits, Refill
from .._models import KeyRecord, RateLimit, StoredKey
from ._common import UsageError

__all__ = ["export_keys", "import_keys"]

FORMAT = "nowramp_auth.key/1"


def export_keys(store: Any, records: Iterable[KeyRecord], out: TextIO) -> int:
    """Write one JSON line per key to ``out``; how many were written."""
    written = 0
    for record in records:
        stored = store.get_key(record.id)
        if stored is None:  # removed meanwhile
            continue
        line = {"format": FORMAT, "key": record.to_dict(), "digest": stored.digest}
        out.write(json.dumps(line, sort_keys=True) + "\n")
        written += 1
    return written


def import_keys(store: Any, lines: Iterable[str]) -> tuple[int, int]:
    """Insert the keys of ``lines`` (JSON lines of :func:`export_keys`), keeping their ids;
    ``(imported, skipped as already there)``. ``UsageError`` names a line that is not one."""
    imported = skipped = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        stored, usage, left = _parse(line, number)
        if store.get_key(stored.record.id) is not None:  # the id exists: leave it
            skipped += 1
            continue
        record = stored.record
        if record.credits is not None and record.lineage == record.id:  # once per lineage
            store.set_credits(record, left, record.created_at)
        try:
            store.insert_key(stored)
        except ValueError:  # inserted meanwhile
            skipped += 1
            continue
        count, last = usage
        if (count or last) and callable(getattr(store, "import_usage", None)):
            store.import_usage(stored.record.id, count, last)
        imported += 1
    return imported, skipped


def _parse(line: str, number: int) -> tuple[StoredKey, tuple[int, datetime | None], int]:
    try:
        data = json.loads(line)
        if data.get("format") != FORMAT:
            raise ValueError("not an exported key")
        key = data["key"]
        # "rate_limits" (every limit) since 0.3; earlier exports have "rate_limit" only.
        limits = key.get("rate_limits")
        if limits is None:
            limits = [key["rate_limit"]] if key["rate_limit"] else []
        record = KeyRecord(
            id=str(key["id"]),
            key_type="live" if key["key_type"] == "live" else "test",
            scopes=frozenset(key["scopes"]),
            name=str(key["name"]),
            project_id=key["project_id"],
            allowed_ips=tuple(key["allowed_ips"]),
            created_at=_required_time(key["created_at"]),
            expires_at=_time(key["expires_at"]),
            revoked_at=_time(key["revoked_at"]),
            hint=str(key["hint"]),
            metadata=dict(key["metadata"]),
            rate_limits=tuple(_limit(limit) for limit in limits),
            rotated_from=key["rotated_from"],
            rotated_to=key["rotated_to"],
            lineage_id=key["lineage_id"] if key["lineage_id"] != key["id"] else None,
            project_limits=tuple(_limit(limit) for limit in key.get("project_limits") or ()),
            credits=_credits(key.get("credits")),
        )
        digest = str(data["digest"])
        if len(digest) != 64:
            raise ValueError("bad digest")
        usage = (int(key.get("request_count") or 0), _time(key.get("last_used_at")))
        left = key.get("credits_remaining")
        left = (
            int(left) if left is not None else (record.credits.remaining if record.credits else 0)
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"line {number} is not an exported key ({exc})") from None
    return StoredKey(record, digest), usage, left


def _required_time(value: object) -> datetime:
    found = _time(value)
    if found is None:
        raise ValueError("created_at is missing")
    return found


def _time(value: object) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError("times must carry their UTC offset")
    return parsed


def _limit(data: dict[str, Any]) -> RateLimit:
    return RateLimit(
        int(data["requests"]), timedelta(seconds=float(data["window_seconds"])), data.get("name")
    )


def _credits(data: dict[str, Any] | None) -> Credits | None:
    if not data:
        return None
    refill = data.get("refill")
    return Credits(
        int(data["remaining"]),
        Refill(int(refill["amount"]), timedelta(seconds=float(refill["every_seconds"])))
        if refill
        else None,
    )
