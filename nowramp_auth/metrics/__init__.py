"""Metrics and tracing: Prometheus (``PrometheusMetrics``) and OpenTelemetry
(``OpenTelemetryMetrics``) exporters for ``Authenticator(store, metrics=...)``.

The request path keeps plain integer counts; these exporters read them at scrape or
collection time, so metrics cost well under a microsecond per request. Each exporter needs its
library (extras ``metrics`` and ``opentelemetry``) only when it is built.

Security model: no metric label or attribute holds a key id, a project id or a path. Per-key
usage lives in the store's usage counters and the audit log; only the optional span
attributes name the (public) key id of a request.
"""

from __future__ import annotations

from ._opentelemetry import OpenTelemetryMetrics
from ._prometheus import PrometheusMetrics

__all__ = ["OpenTelemetryMetrics", "PrometheusMetrics"]
