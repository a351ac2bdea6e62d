"""What a metrics exporter reads from an authenticator, and what it must offer to be one.

:class:`MetricsSource` gathers, for one :class:`~nowramp_auth.Authenticator`, the three places
that count: its :class:`~nowramp_auth._request_counts.RequestCounts`, its store's
``store_counts()`` (when the store keeps counts) and its audit sinks' ``dropped`` counts. An
exporter (:mod:`nowramp_auth.metrics`) is given a source by each authenticator it is passed to,
and reads them all when scraped.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ._audit import AuditEmitter
from ._request_counts import RequestCounts, ResultHook
from .stores._stats import StoreCounts

__all__ = ["MetricsExporter", "MetricsSource"]


class MetricsSource:
    """One authenticator's counts, for an exporter.

    Attributes:
        counts: the request counts.
        store: the key store (its counts come from :meth:`store_counts`).
        audit: the authenticator's audit emitter.
    """

    __slots__ = ("audit", "counts", "store")

    def __init__(self, counts: RequestCounts, store: Any, audit: AuditEmitter) -> None:
        self.counts = counts
        self.store = store
        self.audit = audit

    def store_counts(self) -> StoreCounts | None:
        """The store's counts, or ``None`` when the store keeps none (the memory store: no
        cache, no network)."""
        read = getattr(self.store, "store_counts", None)
        counts = read() if callable(read) else None
        return counts if isinstance(counts, StoreCounts) else None

    def audit_counters(self) -> list[Any]:
        """The objects whose ``dropped`` counts audit events lost: the emitter (a sink that
        raised, a full queue) and each sink that drops by itself (a full Redis stream
        buffer). Exporters add them up once per object."""
        counters: list[Any] = [self.audit]
        counters += [
            sink for sink in self.audit.sinks if isinstance(getattr(sink, "dropped", None), int)
        ]
        return counters


@runtime_checkable
class MetricsExporter(Protocol):
    """What ``Authenticator(metrics=...)`` accepts: something that, given each authenticator's
    :class:`MetricsSource`, exports its counts; it may return a hook called once per counted
    request with ``(result, key id or None, key type, credential or None)`` (span attributes),
    or ``None``."""

    def attach(self, source: MetricsSource) -> ResultHook | None:
        """Start exporting ``source``."""
