"""The rate limits, project budgets and credits of the in-memory store (a mixin of
:class:`~nowramp_auth.MemoryKeyStore`): per process, under the store's lock, with the same
rules as Redis' (see :mod:`._sliding_log` and :mod:`nowramp_auth._budgets`)."""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime

from .._budgets import Limits, Plan, budget_counters, closest, refilled, refused_by_limit
from .._models import KeyRecord, RateLimit, RateLimitStatus, accepted_status
from ._sliding_log import RateBudget

__all__ = ["MemoryLimits"]


class MemoryLimits:
    """Rate-limit counters, project budgets and credits kept in this process."""

    _lock: threading.Lock
    _limits: dict[str, RateBudget]
    _project_limits: dict[str, tuple[RateLimit, ...]]
    _credits: dict[str, list[int]]  # lineage: [left, anchor ms, refills done]

    def set_project_limits(self, project_id: str, limits: tuple[RateLimit, ...]) -> None:
        """Keep ``limits`` as the project's budgets (empty: none)."""
        with self._lock:
            if limits:
                self._project_limits[project_id] = limits
            else:
                self._project_limits.pop(project_id, None)

    def get_project_limits(self, project_id: str) -> tuple[RateLimit, ...]:
        """The project's budgets."""
        return self._project_limits.get(project_id, ())

    def hit_rate_limit(self, lineage: str, limit: Limits, now: datetime) -> RateLimitStatus:
        """One step of the lineage's budget (exact sliding log, or sub-window counts above
        1,000 requests per window), per process; with several limits, all or none."""
        now_ms = int(now.timestamp() * 1000)
        with self._lock:
            if isinstance(limit, RateLimit):
                return self._budget(lineage).hit(now_ms, limit.requests, limit.window_ms)
            # Several budgets: every counter has room (and the credits suffice), then the
            # request is counted in each; or in none (a refusal by one spends nothing).
            pairs = [(self._budget(c), lim) for c, lim in budget_counters(lineage, limit)]
            checks = [b.hit(now_ms, lim.requests, lim.window_ms, False) for b, lim in pairs]
            credits = limit.credits if isinstance(limit, Plan) else None
            if credits is None:
                if all(check.allowed for check in checks):
                    checks = [b.hit(now_ms, lim.requests, lim.window_ms) for b, lim in pairs]
                    return closest(checks)
                return refused_by_limit(checks, limit)
            state = self._credits.setdefault(lineage, [0, now_ms, 0])
            state[0], state[2], wait_ms = refilled(state[0], state[1], state[2], credits, now_ms)
            rates = closest(checks) if checks else RateLimitStatus(0, 0, 0.0)
            cost = limit.cost if isinstance(limit, Plan) else 1
            if state[0] < cost:
                return dataclasses.replace(
                    rates,
                    allowed=False,
                    retry_after_seconds=wait_ms / 1000,
                    credits_remaining=state[0],
                    credits_exhausted=True,
                    refused_by="credits",
                )
            if not rates.allowed:
                refused = refused_by_limit(checks, limit)
                return dataclasses.replace(refused, credits_remaining=state[0])
            checks = [b.hit(now_ms, lim.requests, lim.window_ms) for b, lim in pairs]
            state[0] -= cost
            rates = closest(checks) if checks else rates
            return accepted_status(rates.limit, rates.remaining, rates.reset_seconds, state[0])

    def peek_rate_limits(self, lineage: str, limits: Limits, now: datetime) -> list[int]:
        """The requests each counter of ``limits`` holds in its window at ``now`` (in
        ``budget_counters`` order), counting nothing: the dashboard's usage."""
        now_ms = int(now.timestamp() * 1000)
        used = []
        with self._lock:
            for counter, limit in budget_counters(lineage, limits):
                budget = self._limits.get(counter)
                status = (
                    budget.hit(now_ms, limit.requests, limit.window_ms, False) if budget else None
                )
                if status is None:
                    used.append(0)
                else:
                    used.append(
                        limit.requests - 1 - status.remaining if status.allowed else limit.requests
                    )
        return used

    def set_credits(self, record: KeyRecord, remaining: int, at: datetime) -> None:
        """Start the credits of ``record``'s lineage at ``remaining`` (refills count from
        ``at``)."""
        with self._lock:
            self._credits[record.lineage] = [remaining, int(at.timestamp() * 1000), 0]

    def add_credits(self, record: KeyRecord, count: int, at: datetime) -> int:
        """Add ``count`` credits to ``record``'s lineage; the count left after."""
        with self._lock:
            # Added to what is kept; a refill due later tops up to its amount, as on Redis.
            state = self._credits.setdefault(record.lineage, [0, int(at.timestamp() * 1000), 0])
            state[0] += count
            if record.credits is None:
                return state[0]
            now_ms = int(at.timestamp() * 1000)
            return refilled(state[0], state[1], state[2], record.credits, now_ms)[0]

    def get_credits(self, record: KeyRecord, at: datetime) -> int | None:
        """The credits left to ``record``'s lineage at ``at`` (due refills counted)."""
        state = self._credits.get(record.lineage)
        if state is None or record.credits is None:
            return None
        return refilled(state[0], state[1], state[2], record.credits, int(at.timestamp() * 1000))[0]

    def _budget(self, counter: str) -> RateBudget:
        budget = self._limits.get(counter)
        if budget is None:
            budget = self._limits[counter] = RateBudget()
        return budget

    async def hit_rate_limit_async(
        self, lineage: str, limit: Limits, now: datetime
    ) -> RateLimitStatus:
        """Async twin of :meth:`hit_rate_limit`."""
        return self.hit_rate_limit(lineage, limit, now)
