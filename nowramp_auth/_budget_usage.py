"""How much of each budget a key or a project has used: what a partner's dashboard shows
beside its plan (read only: looking counts no request).

Each figure is what the limiter would count at that moment: the accepted requests in the
current window of the limit (a sliding window: older requests have left it). The store reads
its counters without changing them (``peek_rate_limits``); a store that cannot gives
``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._budgets import Plan, budget_counters, limits_to_charge, refusing_kind
from ._clock import utc_now
from ._models import KeyRecord, RateLimit

__all__ = ["BudgetUsage", "key_budget_usage", "project_budget_usage"]


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    """One budget and what is used of it now.

    ``kind`` is ``"key"`` (one of the key's own limits, shared with its rotated successors)
    or ``"project"`` (a budget every key of its project shares).
    """

    kind: str
    limit: RateLimit
    used: int
    """Accepted requests in the limit's current window."""

    @property
    def remaining(self) -> int:
        """Requests the budget still accepts in its window (0 when used up)."""
        return max(0, self.limit.requests - self.used)

    @property
    def percent(self) -> int:
        """``used`` as a whole percentage of the limit (at most 100)."""
        return min(100, self.used * 100 // self.limit.requests)


def key_budget_usage(
    store: Any, record: KeyRecord, now: datetime | None = None
) -> list[BudgetUsage] | None:
    """Every budget a request of ``record``'s key counts against (its own limits, then its
    project's), with what is used of each; ``[]`` for a key without limits, ``None`` when
    ``store`` cannot read its counters."""
    limits = limits_to_charge(record)
    if limits is None:
        return []
    return _usage(store, record.lineage, limits, now)


def project_budget_usage(
    store: Any, project_id: str, limits: tuple[RateLimit, ...], now: datetime | None = None
) -> list[BudgetUsage] | None:
    """The project's budgets (``limits``, from ``get_project_limits``) with what its keys
    together have used of each; ``None`` when ``store`` cannot read its counters."""
    if not limits:
        return []
    return _usage(store, "", Plan((), project_id, limits), now)


def _usage(store: Any, lineage: str, limits: Any, now: datetime | None) -> list[BudgetUsage] | None:
    peek = getattr(store, "peek_rate_limits", None)
    if peek is None:
        return None
    used: list[int] = peek(lineage, limits, now or utc_now())
    pairs = budget_counters(lineage, limits)
    return [
        BudgetUsage(refusing_kind(index, limits), limit, count)
        for index, ((_, limit), count) in enumerate(zip(pairs, used, strict=True))
    ]
