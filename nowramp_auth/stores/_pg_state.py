"""Usage (written behind) and dashboard state of the PostgreSQL store.

Usage is counted in process memory on the request path (:class:`~._usage.UsageLog`: no I/O)
and written by a background thread in **one transaction per flush**: totals and hourly counts
together, so a flush that fails writes nothing and its counts are kept for the next one
(nothing lost, nothing counted twice). Dashboard accounts, sign-in sessions and throttle slots
are rows; a throttle slot is taken in one statement (``take_attempt``), so concurrent sign-ins
on any number of instances cannot overrun it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from ._errors import StoreUnavailable
from ._pg_connections import PgConnections
from ._protocol import Usage
from ._stats import StoreStats, counts_failures
from ._usage import HISTORY_HOURS, History, UsageLog

__all__ = ["PgState"]


class PgState:
    """The usage and dashboard-state methods of :class:`~nowramp_auth.PostgresKeyStore` (a
    mixin: the store provides the connections, counts and background threads)."""

    stats: StoreStats
    _pg: PgConnections

    def _start_threads(self) -> None:
        raise NotImplementedError  # pragma: no cover - provided by the store

    def _setup_usage(self) -> None:
        self._pruned_below = 0  # usage_hours older than this hour are gone
        self._usage = UsageLog()
        self.count_request = self._usage.count
        """Count one request of a key at a time in epoch seconds (no lock, no I/O)."""
        self.usage_cell = self._usage.cell
        self.fold_usage = self._usage.fold

    # -- usage ---------------------------------------------------------------------------------
    def record_usage(self, key_id: str, at: datetime) -> None:
        """Count one request in memory; a background thread writes counts behind."""
        self._start_threads()
        self.count_request(key_id, at.timestamp())

    def count_refusal(self, key_id: str, code: str, at: datetime) -> None:
        """Count a refusal of a request that presented ``key_id``'s secret (written behind)."""
        self._start_threads()
        self._usage.count_refusal(key_id, code, at.timestamp())

    def flush_usage(self) -> None:
        """Write buffered usage now, in one transaction (kept for later when it fails)."""
        batch = self._usage.take()
        if not batch:
            return

        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO usage AS u (key_id, request_count, last_used_at) "
                    "VALUES (%s, %s, %s) ON CONFLICT (key_id) DO UPDATE SET "
                    "request_count = u.request_count + excluded.request_count, "
                    "last_used_at = greatest(u.last_used_at, excluded.last_used_at)",
                    [
                        (key_id, int(count), datetime.fromtimestamp(last, UTC))
                        for key_id, (count, last) in batch.totals.items()
                    ],
                )
                rows = [(k, h, "", n) for k, hours in batch.hours.items() for h, n in hours.items()]
                rows += [
                    (k, h, code, n)
                    for k, refused in batch.refusals.items()
                    for (h, code), n in refused.items()
                ]
                cur.executemany(
                    "INSERT INTO usage_hours AS h (key_id, hour, code, n) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (key_id, hour, code) DO UPDATE SET n = h.n + excluded.n",
                    rows,
                )
                cutoff = int(time.time() // 3600) - HISTORY_HOURS
                if cutoff != self._pruned_below:  # old hours leave once an hour, not per flush
                    cur.execute("DELETE FROM usage_hours WHERE hour < %s", (cutoff,))

        try:
            self._pg.transaction(write)
            self._pruned_below = int(time.time() // 3600) - HISTORY_HOURS
        except StoreUnavailable:
            self.stats.failed("flush_usage")
            self._usage.give_back(batch)

    def import_usage(self, key_id: str, count: int, last_used_at: datetime | None) -> None:
        """Add usage counted elsewhere (``keys import``)."""
        self._pg.write(
            lambda conn: conn.execute(
                "INSERT INTO usage AS u (key_id, request_count, last_used_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (key_id) DO UPDATE SET request_count = u.request_count + "
                "excluded.request_count, last_used_at = greatest(u.last_used_at, "
                "excluded.last_used_at)",
                (key_id, count, last_used_at),
            )
        )

    @counts_failures("get_usage")
    def get_usage(self, key_ids: Iterable[str]) -> dict[str, Usage]:
        """Usage of the given keys: the database's counts plus this process' unwritten ones."""
        ids = list(key_ids)
        if not ids:
            return {}
        rows = self._pg.read(
            lambda conn: conn.execute(
                "SELECT key_id, request_count, last_used_at FROM usage WHERE key_id = ANY(%s)",
                (ids,),
            ).fetchall()
        )
        found = {key_id: (int(count), last) for key_id, count, last in rows}
        pending = self._usage.totals(ids)
        result: dict[str, Usage] = {}
        for key_id in ids:
            count, last = found.get(key_id, (0, None))
            if key_id in pending:
                count += pending[key_id][0]
                mine = datetime.fromtimestamp(pending[key_id][1], UTC)
                last = max(last, mine) if last is not None else mine
            if count or last:
                result[key_id] = (count, last)
        return result

    @counts_failures("usage_history")
    def usage_history(self, key_id: str, hours: int = 7 * 24) -> History:
        """Accepted requests and refusals by code per hour over the last ``hours`` hours."""
        first = int(time.time() // 3600) - hours + 1
        rows = self._pg.read(
            lambda conn: conn.execute(
                "SELECT hour, code, n FROM usage_hours WHERE key_id = %s AND hour >= %s",
                (key_id, first),
            ).fetchall()
        )
        history = History({}, {})
        for hour, code, n in rows:
            if code == "":
                history.accepted[int(hour)] = int(n)
            else:
                history.refused[(int(hour), code)] = int(n)
        pending = self._usage.history(key_id)
        for hour, n in pending.accepted.items():
            if hour >= first:
                history.accepted[hour] = history.accepted.get(hour, 0) + n
        for bucket, n in pending.refused.items():
            if bucket[0] >= first:
                history.refused[bucket] = history.refused.get(bucket, 0) + n
        return history

    # -- dashboard state -----------------------------------------------------------------------
    @counts_failures("put_dashboard_item")
    def put_dashboard_item(self, kind: str, item_id: str, value: str, ttl: float | None) -> None:
        """Store ``value`` under ``(kind, item_id)``, for ``ttl`` seconds (``None``: kept)."""
        expires = datetime.now(UTC) + timedelta(seconds=ttl) if ttl is not None else None
        self._pg.write(
            lambda conn: conn.execute(
                "INSERT INTO dashboard_items AS d VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (kind, item_id) DO UPDATE SET value = excluded.value, "
                "expires_at = excluded.expires_at",
                (kind, item_id, value, expires),
            )
        )

    @counts_failures("get_dashboard_item")
    def get_dashboard_item(self, kind: str, item_id: str) -> str | None:
        """The value under ``(kind, item_id)``, or ``None`` (absent or expired)."""
        row = self._pg.read(
            lambda conn: conn.execute(
                "SELECT value FROM dashboard_items WHERE kind = %s AND item_id = %s "
                "AND (expires_at IS NULL OR expires_at > now())",
                (kind, item_id),
            ).fetchone()
        )
        return str(row[0]) if row else None

    @counts_failures("delete_dashboard_item")
    def delete_dashboard_item(self, kind: str, item_id: str) -> bool:
        """Remove ``(kind, item_id)``; whether it was there."""
        removed = self._pg.write(
            lambda conn: (
                conn.execute(
                    "DELETE FROM dashboard_items WHERE kind = %s AND item_id = %s", (kind, item_id)
                ).rowcount
            )
        )
        return bool(removed)

    @counts_failures("dashboard_item_ids")
    def dashboard_item_ids(self, kind: str) -> list[str]:
        """The ids of the kept (TTL-less) items of ``kind``, sorted."""
        rows = self._pg.read(
            lambda conn: conn.execute(
                "SELECT item_id FROM dashboard_items WHERE kind = %s AND expires_at IS NULL "
                "ORDER BY item_id",
                (kind,),
            ).fetchall()
        )
        return [str(r[0]) for r in rows]

    @counts_failures("take_attempt")
    def take_attempt(self, bucket: str, limit: int, window: float) -> str | None:
        """Take one of ``limit`` slots per ``window`` seconds of ``bucket`` in one statement:
        a ticket naming the slot, or ``None`` when all are taken."""
        ticket = secrets.token_hex(8)
        row = self._pg.write(
            lambda conn: conn.execute(
                "SELECT take_attempt(%s, %s, %s, %s)",
                (bucket, limit, max(1, int(window * 1000)), ticket),
            ).fetchone()
        )
        return ticket if row and row[0] else None

    @counts_failures("return_attempt")
    def return_attempt(self, bucket: str, ticket: str) -> None:
        """Give back the slot ``ticket`` names."""
        self._pg.write(
            lambda conn: conn.execute(
                "DELETE FROM attempts WHERE bucket = %s AND ticket = %s", (bucket, ticket)
            )
        )
