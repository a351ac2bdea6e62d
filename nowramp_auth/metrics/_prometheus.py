"""``PrometheusMetrics``: the authenticator's counts as Prometheus metrics (prometheus_client).

A custom collector reads the plain counts at scrape time (see
:mod:`nowramp_auth._request_counts`): the request path never calls ``inc()`` or ``observe()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._metrics_source import MetricsSource
from .._request_counts import ResultHook
from ._totals import Sources, Totals, bound_label

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

__all__ = ["PrometheusMetrics"]

_REQUESTS = ("nowramp_auth_requests", "Requests authenticated, by final result and key type.")
_SECONDS = ("nowramp_auth_authenticate_seconds", "Time to authenticate a request (seconds).")
_COUNTERS = (
    ("nowramp_auth_cache_requests", "Key and session lookups, by local cache result."),
    ("nowramp_auth_store_errors", "Store calls that failed (once per call), by operation."),
    ("nowramp_auth_invalidations", "Cache invalidation messages received from other instances."),
    ("nowramp_auth_pubsub_reconnects", "Re-subscriptions of the cache invalidation listener."),
    ("nowramp_auth_rate_limit_calls", "Rate-limit script calls sent to Redis."),
    ("nowramp_auth_audit_dropped", "Audit events dropped (a failing or overflowing sink)."),
    (
        "nowramp_auth_rate_limit_refusals",
        "Requests refused by a rate limit or credits (RATE_LIMITED, CREDITS_EXHAUSTED), by the "
        "kind of budget that refused: key, project or credits.",
    ),
)


class PrometheusMetrics:
    """Export authentication metrics to a prometheus_client registry.

    Parameters:
        registry: where to register the collector (default: prometheus_client's global
            ``REGISTRY``, which ``/metrics`` handlers such as ``make_asgi_app()`` serve).

    Pass it to one or more authenticators (their counts add up)::

        metrics = PrometheusMetrics()
        auth = Authenticator(store, metrics=metrics)

    Series: ``nowramp_auth_requests_total{result, key_type}``,
    ``nowramp_auth_authenticate_seconds`` (histogram, 5 µs to 1 s),
    ``nowramp_auth_cache_requests_total{result}``,
    ``nowramp_auth_store_errors_total{operation}``, ``nowramp_auth_invalidations_total``,
    ``nowramp_auth_pubsub_reconnects_total``, ``nowramp_auth_rate_limit_calls_total``,
    ``nowramp_auth_audit_dropped_total``,
    ``nowramp_auth_rate_limit_refusals_total{budget}`` (``key``, ``project`` or ``credits``:
    which kind of budget refused a ``RATE_LIMITED`` or ``CREDITS_EXHAUSTED`` request). No
    label holds a key id, a project id or a path.
    Each process reports its own counts (scrape each worker; prometheus_client's
    multiprocess mode does not read custom collectors).

    Raises ``ImportError`` when prometheus_client is not installed (the ``metrics`` extra),
    ``ValueError`` when ``registry`` already has these metrics.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        try:
            from prometheus_client import REGISTRY
        except ImportError as exc:
            raise ImportError(
                "PrometheusMetrics needs prometheus_client: pip install 'nowramp_auth[metrics]'"
            ) from exc
        self._sources = Sources()
        self.registry = registry if registry is not None else REGISTRY
        self.registry.register(self)

    def __repr__(self) -> str:
        return "PrometheusMetrics()"

    def attach(self, source: MetricsSource) -> ResultHook | None:
        """Report ``source``'s counts (called by ``Authenticator``); no per-request hook."""
        self._sources.add(source)
        return None

    def describe(self) -> list[Any]:
        """The metric families, without samples (lets the registry refuse duplicates)."""
        return list(_families(Totals(), with_samples=False))

    def collect(self) -> Iterator[Any]:
        """The metric families with their current values (called at each scrape)."""
        yield from _families(self._sources.totals(), with_samples=True)


def _families(totals: Totals, *, with_samples: bool) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

    requests = CounterMetricFamily(*_REQUESTS, labels=["result", "key_type"])
    histogram = HistogramMetricFamily(*_SECONDS, unit="")
    cache, errors, invalidations, reconnects, rate_calls, dropped, refusals = (
        CounterMetricFamily(name, doc, labels=labels)
        for (name, doc), labels in zip(
            _COUNTERS, (["result"], ["operation"], None, None, None, None, ["budget"]), strict=True
        )
    )
    if with_samples:
        for (result, key_type), count in sorted(totals.requests.items()):
            requests.add_metric([result, key_type], count)
        histogram.add_metric(
            [],
            [(bound_label(bound), count) for bound, count in totals.cumulative_buckets()],
            totals.seconds,
        )
        cache.add_metric(["hit"], totals.cache_hits)
        cache.add_metric(["miss"], totals.cache_misses)
        for operation, count in sorted(totals.store_errors.items()):
            errors.add_metric([operation], count)
        invalidations.add_metric([], totals.invalidations)
        reconnects.add_metric([], totals.pubsub_reconnects)
        rate_calls.add_metric([], totals.rate_limit_calls)
        dropped.add_metric([], totals.audit_dropped)
        for budget, count in totals.refusals.items():
            refusals.add_metric([budget], count)
    yield from (
        *(requests, histogram, cache, errors, invalidations, reconnects, rate_calls, dropped),
        refusals,
    )
