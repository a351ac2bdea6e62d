"""Rate limits of the PostgreSQL store: in a ``rate_limiter`` (a
:class:`~nowramp_auth.RedisRateLimiter`, batched and exact) when one is given, else one
statement per limited request on the database's clock (``hit_rate_limit`` in the schema:
exact up to 1,000 requests per window, sub-window counts above, never late). A call whose
outcome is unknown is never sent again: it fails closed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from .._budgets import Limits, Plan, budget_counters, decode_limits, refilled, refusing_kind
from .._models import KeyRecord, RateLimit, RateLimitStatus
from ._errors import StoreUnavailable
from ._pg_connections import PgConnections
from ._pg_records import limits_json
from ._sliding_log import EXACT_LIMIT, SUB_WINDOWS
from ._stats import StoreStats, counts_failures

__all__ = ["PgLimits"]

# What hit_rate_limits would count now, per counter, in the order given (changing nothing).
_PEEK = """
SELECT (SELECT count(*) FROM rate_log r
            WHERE r.lineage = c.counter AND r.at_ms > v.now_ms - c.win)
     + (SELECT coalesce(sum(k.n), 0) FROM rate_counts k
            WHERE k.lineage = c.counter AND (k.bucket + 1) * k.width - 1 > v.now_ms - c.win)
FROM unnest(%s::text[], %s::bigint[]) WITH ORDINALITY AS c(counter, win, i),
     (SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now_ms) v
ORDER BY c.i
"""


class PgLimits:
    """The rate-limit methods of :class:`~nowramp_auth.PostgresKeyStore` (a mixin)."""

    stats: StoreStats
    limiter: Any
    _pg: PgConnections

    @counts_failures("hit_rate_limit")
    def hit_rate_limit(self, lineage: str, limit: Limits, now: datetime) -> RateLimitStatus:
        """One atomic step of the lineage's budget: in ``rate_limiter`` when given, else one
        statement on the database's clock (never retried: an unknown outcome fails closed)."""
        if self.limiter is not None:
            status: RateLimitStatus = self.limiter.hit_rate_limit(lineage, limit, now)
            return status
        self.stats.sent("hit_rate_limit")
        if not isinstance(limit, RateLimit):
            return self._hit_several(lineage, limit, now)
        sub = 0 if limit.requests <= EXACT_LIMIT else SUB_WINDOWS
        row = self._pg.write(
            lambda c: c.execute(
                "SELECT * FROM hit_rate_limit(%s, %s, %s, %s)",
                (lineage, limit.requests, limit.window_ms, sub),
            ).fetchone()
        )
        if row is None:  # pragma: no cover - the function always answers one row
            raise StoreUnavailable("PostgreSQL gave no rate-limit answer")
        allowed, remaining, retry_ms, reset_ms = row
        return RateLimitStatus(
            limit.requests,
            int(remaining),
            int(reset_ms) / 1000,
            bool(allowed),
            int(retry_ms) / 1000,
            refused_by=None if allowed else "key",
        )

    def _hit_several(self, lineage: str, several: Limits, now: datetime) -> RateLimitStatus:
        # hit_rate_limits in the schema: every counter (and the credits) checked, then spent
        # on all or none, in one statement.
        pairs = budget_counters(lineage, several)
        limits = [limit for _, limit in pairs]
        subs = [0 if limit.requests <= EXACT_LIMIT else SUB_WINDOWS for limit in limits]
        credits = several.credits if isinstance(several, Plan) else None
        refill = credits.refill if credits else None
        arguments = (
            [counter for counter, _ in pairs],
            [limit.requests for limit in limits],
            [limit.window_ms for limit in limits],
            subs,
            lineage if credits else None,
            several.cost if isinstance(several, Plan) else 1,
            refill.amount if refill else 0,
            refill.every_ms if refill else 0,
            int(now.timestamp() * 1000),
        )
        row = self._pg.write(
            lambda c: c.execute(
                "SELECT * FROM hit_rate_limits(%s, %s, %s, %s, %s, %s, %s, %s, %s)", arguments
            ).fetchone()
        )
        if row is None:  # pragma: no cover - the function always answers one row
            raise StoreUnavailable("PostgreSQL gave no rate-limit answer")
        allowed, remaining, retry_ms, reset_ms, which, left, exhausted = row
        return RateLimitStatus(
            limits[which].requests if which >= 0 else 0,
            int(remaining),
            int(reset_ms) / 1000,
            bool(allowed),
            int(retry_ms) / 1000,
            int(left) if credits and left is not None and left >= 0 else None,
            bool(exhausted),
            None if allowed else "credits" if exhausted else refusing_kind(which, several),
        )

    def peek_rate_limits(self, lineage: str, limits: Limits, now: datetime) -> list[int]:
        """The requests each counter of ``limits`` holds in its window now (in
        ``budget_counters`` order, on the database's clock), counting nothing: in
        ``rate_limiter`` when given, else one query."""
        if self.limiter is not None:
            used: list[int] = self.limiter.peek_rate_limits(lineage, limits, now)
            return used
        pairs = budget_counters(lineage, limits)
        if not pairs:
            return []
        counters = [counter for counter, _ in pairs]
        windows = [limit.window_ms for _, limit in pairs]
        rows = self._pg.read(lambda c: c.execute(_PEEK, (counters, windows)).fetchall())
        return [int(row[0]) for row in rows]

    def set_credits(self, record: KeyRecord, remaining: int, at: datetime) -> None:
        """Start the credits of ``record``'s lineage (refills count from ``at``): in
        ``rate_limiter`` when given (it counts them with the limits), else in the table."""
        if self.limiter is not None:
            self.limiter.set_credits(record, remaining, at)
            return
        anchor = int(at.timestamp() * 1000)
        self._pg.write(
            lambda c: c.execute(
                "INSERT INTO credits VALUES (%s, %s, %s, 0) ON CONFLICT (lineage) DO UPDATE "
                "SET remaining = EXCLUDED.remaining, anchor_ms = EXCLUDED.anchor_ms, refills = 0",
                (record.lineage, remaining, anchor),
            )
        )

    def add_credits(self, record: KeyRecord, count: int, at: datetime) -> int:
        """Add ``count`` credits (one statement); the count left, due refills counted."""
        if self.limiter is not None:
            added: int = self.limiter.add_credits(record, count, at)
            return added
        self._pg.write(
            lambda c: c.execute(
                "UPDATE credits SET remaining = remaining + %s WHERE lineage = %s",
                (count, record.lineage),
            )
        )
        left = self.get_credits(record, at)
        return 0 if left is None else left

    def get_credits(self, record: KeyRecord, at: datetime) -> int | None:
        """The credits ``record``'s lineage has left at ``at`` (due refills counted)."""
        if record.credits is None:
            return None
        if self.limiter is not None:
            left: int | None = self.limiter.get_credits(record, at)
            return left
        row = self._pg.read(
            lambda c: c.execute(
                "SELECT remaining, anchor_ms, refills FROM credits WHERE lineage = %s",
                (record.lineage,),
            ).fetchone()
        )
        if row is None:
            return 0
        now_ms = int(at.timestamp() * 1000)
        return refilled(int(row[0]), int(row[1]), int(row[2]), record.credits, now_ms)[0]

    def set_project_limits(self, project_id: str, limits: tuple[RateLimit, ...]) -> None:
        """Keep ``limits`` as the project's budgets (empty: none)."""
        if limits:
            encoded = limits_json(limits)
            self._pg.write(
                lambda c: c.execute(
                    "INSERT INTO project_budgets VALUES (%s, %s) "
                    "ON CONFLICT (project_id) DO UPDATE SET limits = EXCLUDED.limits",
                    (project_id, encoded),
                )
            )
        else:
            self._pg.write(
                lambda c: c.execute(
                    "DELETE FROM project_budgets WHERE project_id = %s", (project_id,)
                )
            )

    def get_project_limits(self, project_id: str) -> tuple[RateLimit, ...]:
        """The project's budgets."""
        row = self._pg.read(
            lambda c: c.execute(
                "SELECT limits FROM project_budgets WHERE project_id = %s", (project_id,)
            ).fetchone()
        )
        return decode_limits(row[0]) if row else ()

    def hit_rate_limit_async(
        self, lineage: str, limit: Limits, now: datetime
    ) -> Awaitable[RateLimitStatus]:
        """Async twin of :meth:`hit_rate_limit`."""
        if self.limiter is not None:
            status: Awaitable[RateLimitStatus] = self.limiter.hit_rate_limit_async(
                lineage, limit, now
            )
            return status
        return self._pg.run_async(lambda: self.hit_rate_limit(lineage, limit, now))

    def rate_charger(
        self, lineage: str, limit: Limits
    ) -> Callable[[float], Awaitable[RateLimitStatus]]:
        """The lineage's async limiter call, built once per record version (the Redis
        limiter's own, batched, when one is given)."""
        if self.limiter is not None:
            charger: Callable[[float], Awaitable[RateLimitStatus]] = self.limiter.rate_charger(
                lineage, limit
            )
            return charger

        def charge(now: float) -> Awaitable[RateLimitStatus]:
            return self.hit_rate_limit_async(lineage, limit, datetime.fromtimestamp(now, UTC))

        return charge
