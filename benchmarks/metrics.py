"""What metrics cost per request: our middleware with metrics off against the same with
``PrometheusMetrics`` and with ``OpenTelemetryMetrics``, in process, on the memory store (the
fast path, where a cost shows most), for Starlette and Flask and for a refusal. Span
attributes are measured apart: two traced apps (a recording span per request, as an
OpenTelemetry ASGI instrumentation makes), with and without them. Each cost is the median over
rounds of the difference within a round."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nowramp_auth import MemoryKeyStore
from nowramp_auth.metrics import OpenTelemetryMetrics, PrometheusMetrics

from . import asgi, wsgi
from ._rounds import Samples, interleaved, paired

OFF = "Starlette + ours, metrics off"
PROMETHEUS = "Starlette + ours + PrometheusMetrics"
OPENTELEMETRY = "Starlette + ours + OpenTelemetryMetrics (no span)"
TRACED_PLAIN = "traced request, OpenTelemetryMetrics without span attributes"
TRACED = "traced request, OpenTelemetryMetrics with span attributes"
FLASK_OFF = "Flask + ours, metrics off"
FLASK_PROMETHEUS = "Flask + ours + PrometheusMetrics"
REFUSAL_OFF = "Starlette + ours refuses a bad checksum, metrics off"
REFUSAL_PROMETHEUS = "Starlette + ours refuses a bad checksum + PrometheusMetrics"

BASES = {
    PROMETHEUS: OFF,
    OPENTELEMETRY: OFF,
    TRACED: TRACED_PLAIN,
    FLASK_PROMETHEUS: FLASK_OFF,
    REFUSAL_PROMETHEUS: REFUSAL_OFF,
}
"""Each measured case and what its cost is measured against."""
BUDGET_US = 1.0
"""The most metrics may cost a request with Prometheus."""


def prometheus() -> PrometheusMetrics:
    """An exporter on a registry of its own."""
    from prometheus_client import CollectorRegistry

    return PrometheusMetrics(CollectorRegistry())


def opentelemetry(*, span_attributes: bool = True) -> OpenTelemetryMetrics:
    """An exporter on an SDK meter provider of its own (collected only when read)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return OpenTelemetryMetrics(provider, span_attributes=span_attributes)


def _traced(app: Any) -> Any:
    # A recording span around each request (an SDK tracer without processors: the span
    # costs what it costs, the same in both traced cases).
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("bench")

    async def traced(scope: Any, receive: Any, send: Any) -> None:
        with tracer.start_as_current_span("request"):
            await app(scope, receive, send)

    return traced


def cases() -> dict[str, Callable[[int], None]]:
    """The runners, by case name."""
    built: dict[str, Callable[[int], None]] = {}
    for name, metrics in (
        (OFF, None),
        (PROMETHEUS, prometheus()),
        (OPENTELEMETRY, opentelemetry()),
    ):
        app, key = asgi._ours(MemoryKeyStore(), metrics=metrics)
        built[name] = asgi._runner(app, key)
    for name, span_attributes in ((TRACED_PLAIN, False), (TRACED, True)):
        app, key = asgi._ours(
            MemoryKeyStore(), metrics=opentelemetry(span_attributes=span_attributes)
        )
        built[name] = asgi._runner(_traced(app), key)
    for name, metrics in ((FLASK_OFF, None), (FLASK_PROMETHEUS, prometheus())):
        flask_app, key = wsgi._ours(MemoryKeyStore(), metrics=metrics)
        built[name] = wsgi._runner(flask_app, key)
    for name, metrics in ((REFUSAL_OFF, None), (REFUSAL_PROMETHEUS, prometheus())):
        app, key = asgi._ours(MemoryKeyStore(), metrics=metrics)
        typo = key[:-1] + ("A" if key[-1] != "A" else "B")
        built[name] = asgi._runner(app, typo, expect=401)
    return built


def run(*, rounds: int, iterations: int) -> dict[str, dict[str, float]]:
    """``{"us": median µs per request by case, "cost_us": the paired cost by measured case}``."""
    samples: Samples = {}
    medians = interleaved(cases(), rounds=rounds, iterations=iterations, samples=samples)
    costs = {
        name: paired(samples, lambda r, n=name, b=base: r[n] - r[b]) for name, base in BASES.items()
    }
    return {"us": medians, "cost_us": costs}


def rows(results: dict[str, dict[str, float]]) -> list[list[str]]:
    """The table rows of :func:`run`'s results: case, µs per request, cost against its base."""
    shown = []
    for name, value in results["us"].items():
        cost = results["cost_us"].get(name)
        against = "-" if cost is None else f"{cost:+.2f} (vs {BASES[name]})"
        shown.append([name, f"{value:.2f}", against])
    return shown
