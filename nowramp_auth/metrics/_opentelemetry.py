"""``OpenTelemetryMetrics``: the same counts through the OpenTelemetry metrics API, and the
result of each request on the current span.

Every instrument is observable: its callback reads the plain counts when the SDK collects
(see :mod:`nowramp_auth._request_counts`), so the request path records nothing through the
SDK. The API has no observable histogram, so authentication time is exported as its bucket
counts (``le`` attribute, cumulative, as in Prometheus), its sum and its count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .._metrics_source import MetricsSource
from .._request_counts import ResultHook
from ._totals import Sources, Totals, bound_label

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

__all__ = ["OpenTelemetryMetrics"]

_Reading = Callable[[Totals], Iterable[tuple[float, dict[str, str]]]]


class OpenTelemetryMetrics:
    """Export authentication metrics through the OpenTelemetry metrics API.

    Parameters:
        meter_provider: the meter provider (default: the global one, ``get_meter_provider()``).
        span_attributes: set ``nowramp_auth.result``, ``nowramp_auth.key_id`` (the public
            id, when the key parsed), ``nowramp_auth.key_type`` and ``nowramp_auth.credential``
            (``api_key`` or ``session``, when one was presented) on the current span of each
            request, when that span is recording (default ``True``).

    Instruments (all observable counters): ``nowramp_auth.requests`` {result, key_type},
    ``nowramp_auth.authenticate.duration.bucket`` {le}, ``nowramp_auth.authenticate.duration.sum``
    (s), ``nowramp_auth.authenticate.duration.count``, ``nowramp_auth.cache.requests`` {result},
    ``nowramp_auth.store.errors`` {operation}, ``nowramp_auth.invalidations``,
    ``nowramp_auth.pubsub.reconnects``, ``nowramp_auth.rate_limit.calls``,
    ``nowramp_auth.audit.dropped``, ``nowramp_auth.rate_limit.refusals`` {budget} (``key``,
    ``project`` or ``credits``). No metric attribute holds a key id, a project id or a path.

    Raises ``ImportError`` when opentelemetry-api is not installed (the ``opentelemetry``
    extra).
    """

    def __init__(
        self, meter_provider: MeterProvider | None = None, *, span_attributes: bool = True
    ) -> None:
        try:
            from opentelemetry import metrics
        except ImportError as exc:
            raise ImportError(
                "OpenTelemetryMetrics needs opentelemetry-api: "
                "pip install 'nowramp_auth[opentelemetry]'"
            ) from exc
        self._sources = Sources()
        self._span_attributes = span_attributes
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter = provider.get_meter("nowramp_auth")
        for name, unit, description, reading in _INSTRUMENTS:
            meter.create_observable_counter(
                name, callbacks=[self._callback(reading)], unit=unit, description=description
            )

    def __repr__(self) -> str:
        return f"OpenTelemetryMetrics(span_attributes={self._span_attributes})"

    def attach(self, source: MetricsSource) -> ResultHook | None:
        """Report ``source``'s counts (called by ``Authenticator``); the span hook."""
        self._sources.add(source)
        return _span_hook() if self._span_attributes else None

    def _callback(self, reading: _Reading) -> Callable[[CallbackOptions], Iterable[Observation]]:
        from opentelemetry.metrics import Observation

        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(value, attributes)
                for value, attributes in reading(self._sources.totals())
            ]

        return observe


def _span_hook() -> ResultHook:
    # Once per counted request: only a recording span pays for the attributes.
    from opentelemetry.trace import get_current_span

    def set_span_attributes(
        result: str, key_id: str | None, key_type: str, credential: str | None
    ) -> None:
        span = get_current_span()
        if span.is_recording():
            attributes = {"nowramp_auth.result": result, "nowramp_auth.key_type": key_type}
            if key_id is not None:
                attributes["nowramp_auth.key_id"] = key_id
            if credential is not None:
                attributes["nowramp_auth.credential"] = credential
            span.set_attributes(attributes)

    return set_span_attributes


def _requests(t: Totals) -> list[tuple[float, dict[str, str]]]:
    return [(n, {"result": r, "key_type": k}) for (r, k), n in sorted(t.requests.items())]


def _buckets(t: Totals) -> list[tuple[float, dict[str, str]]]:
    return [(n, {"le": bound_label(b)}) for b, n in t.cumulative_buckets()]


_INSTRUMENTS: tuple[tuple[str, str, str, _Reading], ...] = (
    (
        "nowramp_auth.requests",
        "{request}",
        "Requests authenticated, by final result and key type.",
        _requests,
    ),
    (
        "nowramp_auth.authenticate.duration.bucket",
        "{request}",
        "Requests authenticated within each time bound (cumulative).",
        _buckets,
    ),
    (
        "nowramp_auth.authenticate.duration.sum",
        "s",
        "Total time to authenticate requests.",
        lambda t: [(t.seconds, {})],
    ),
    (
        "nowramp_auth.authenticate.duration.count",
        "{request}",
        "Requests timed.",
        lambda t: [(sum(t.buckets), {})],
    ),
    (
        "nowramp_auth.cache.requests",
        "{lookup}",
        "Key and session lookups, by local cache result.",
        lambda t: [(t.cache_hits, {"result": "hit"}), (t.cache_misses, {"result": "miss"})],
    ),
    (
        "nowramp_auth.store.errors",
        "{call}",
        "Store calls that failed (once per call), by operation.",
        lambda t: [(n, {"operation": o}) for o, n in sorted(t.store_errors.items())],
    ),
    (
        "nowramp_auth.invalidations",
        "{message}",
        "Cache invalidation messages received.",
        lambda t: [(t.invalidations, {})],
    ),
    (
        "nowramp_auth.pubsub.reconnects",
        "{reconnect}",
        "Re-subscriptions of the invalidation listener.",
        lambda t: [(t.pubsub_reconnects, {})],
    ),
    (
        "nowramp_auth.rate_limit.calls",
        "{call}",
        "Rate-limit script calls sent to Redis.",
        lambda t: [(t.rate_limit_calls, {})],
    ),
    (
        "nowramp_auth.audit.dropped",
        "{event}",
        "Audit events dropped.",
        lambda t: [(t.audit_dropped, {})],
    ),
    (
        "nowramp_auth.rate_limit.refusals",
        "{request}",
        "Requests refused by a rate limit or credits, by the kind of budget that refused.",
        lambda t: [(n, {"budget": b}) for b, n in t.refusals.items()],
    ),
)
