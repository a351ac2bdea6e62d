"""The sum of every attached authenticator's counts, as exporters read it at scrape time.

Security model: labels come only from fixed sets (results, key types, store operation names,
kinds of budget),
never from a key id, a project id or a path: one series per key would overwhelm a metrics
server, and a key id in a label would spread it to every dashboard.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .._limits import REFUSING_BUDGETS
from .._metrics_source import MetricsSource
from .._request_counts import DURATION_BUCKETS

__all__ = ["Sources", "Totals", "bound_label"]


@dataclass(frozen=True, slots=True)
class Totals:
    """Everything an exporter reports, summed over its authenticators (and their distinct
    stores and audit sinks)."""

    requests: dict[tuple[str, str], int] = field(default_factory=dict)
    buckets: tuple[int, ...] = (0,) * (len(DURATION_BUCKETS) + 1)
    seconds: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0
    store_errors: dict[str, int] = field(default_factory=dict)
    invalidations: int = 0
    pubsub_reconnects: int = 0
    rate_limit_calls: int = 0
    audit_dropped: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    """Limiter refusals by the kind of budget that refused (key, project, credits)."""

    def cumulative_buckets(self) -> list[tuple[float, int]]:
        """``(upper bound, requests at or below it)`` per bucket, ``inf`` last."""
        running = 0
        cumulative: list[tuple[float, int]] = []
        for bound, count in zip((*DURATION_BUCKETS, float("inf")), self.buckets, strict=True):
            running += count
            cumulative.append((bound, running))
        return cumulative


class Sources:
    """The authenticators an exporter reports on."""

    def __init__(self) -> None:
        self._sources: list[MetricsSource] = []
        self._lock = threading.Lock()
        self._high: dict[tuple[str, str], int] = {}

    def add(self, source: MetricsSource) -> None:
        """Report on one more authenticator."""
        with self._lock:
            self._sources.append(source)

    def totals(self) -> Totals:
        """The sums now. A request counted ``ok`` that a route then refuses moves to its
        refusal a moment later; a scrape in between would see ``ok`` go down, which a
        Prometheus counter must never do, so each series reports at least what it reported
        before (exact again once the refusal lands and the next request counts)."""
        with self._lock:
            sources = list(self._sources)
            # Each distinct store's counts, read once (None: a store without a cache).
            store_counts = {id(s.store): s.store_counts() for s in sources}
            requests: dict[tuple[str, str], int] = {}
            buckets = [0] * (len(DURATION_BUCKETS) + 1)
            seconds = 0.0
            fast_hits = 0
            refusals = dict.fromkeys(REFUSING_BUDGETS, 0)
            for source in sources:
                totals = source.counts.totals()
                for budget, count in totals.refusals.items():
                    refusals[budget] += count
                for pair, count in totals.requests.items():
                    requests[pair] = requests.get(pair, 0) + count
                buckets = [a + b for a, b in zip(buckets, totals.buckets, strict=True)]
                seconds += totals.seconds
                if store_counts[id(source.store)] is not None:  # a store with a cache
                    fast_hits += totals.fast_path_hits
            for pair in {*requests, *self._high}:
                count, high = requests.get(pair, 0), self._high.get(pair, 0)
                if count < high:
                    requests[pair] = high
                else:
                    self._high[pair] = count
        counted = [c for c in store_counts.values() if c is not None]
        errors: dict[str, int] = {}
        for counts in counted:
            for operation, count in counts.errors.items():
                errors[operation] = errors.get(operation, 0) + count
        audit = {id(counter): counter for s in sources for counter in s.audit_counters()}
        return Totals(
            requests=requests,
            buckets=tuple(buckets),
            seconds=seconds,
            cache_hits=fast_hits + sum(c.cache_hits for c in counted),
            cache_misses=sum(c.cache_misses for c in counted),
            store_errors=errors,
            invalidations=sum(c.invalidations for c in counted),
            pubsub_reconnects=sum(c.pubsub_reconnects for c in counted),
            rate_limit_calls=sum(c.rate_limit_calls for c in counted),
            audit_dropped=sum(int(counter.dropped) for counter in audit.values()),
            refusals=refusals,
        )


def bound_label(bound: float) -> str:
    """A histogram bound as Prometheus writes ``le``: ``"5e-06"``, ``"1.0"``, ``"+Inf"``."""
    return "+Inf" if bound == float("inf") else repr(bound)
