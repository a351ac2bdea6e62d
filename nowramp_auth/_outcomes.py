"""What becomes of every request the authenticator answers: audit events, metrics counts and
the refusal counts of a key's usage history.

Every refused request passes :meth:`Outcomes.failed` once and every accepted one
:meth:`Outcomes.accepted` once, whichever flow (key, session, charge) decided it. Security
model: events carry key ids, codes and request metadata, never a secret; metrics are plain
integer counts (see :mod:`nowramp_auth._request_counts`), and nothing here is read when metrics
are off (no clock call, no attribute set on a refusal).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from time import perf_counter
from typing import Any

from ._audit import AuditEmitter
from ._client_ip import IPAddress, ip_text
from ._clock import Clock, require_aware, utc_now
from ._context import request_var
from ._errors import AuthError
from ._models import AuditEvent, Principal
from ._request_counts import RequestCounts

__all__ = ["Outcomes"]


class Outcomes:
    """The audit and metrics bookkeeping of one authenticator."""

    def __init__(
        self,
        *,
        audit: AuditEmitter,
        clock: Clock,
        now_seconds: Callable[[], float],
        counts: RequestCounts | None,
        count_refusal: Callable[[str, str, datetime], None] | None,
        audit_successes: bool,
    ) -> None:
        self.audit = audit
        self.clock = clock
        self.now_seconds = now_seconds
        self.counts = counts
        self._count_refusal = count_refusal
        self._audit_successes = audit_successes

    def now(self) -> datetime:
        """The clock's time (checked aware when injected)."""
        if self.clock is utc_now:
            return datetime.now(UTC)
        return require_aware(self.clock(), "clock()")

    def started(self) -> float:
        """When a request's authentication began, for metrics (no clock read when off)."""
        return perf_counter() if self.counts is not None else 0.0

    def note(self, error: AuthError, key_type: str | None, credential: str | None = None) -> None:
        """What the request presented, on its refusal, for metrics: only when they are on (an
        attribute more on every refusal would cost it about 0.1 µs otherwise)."""
        if self.counts is not None:
            error.key_type = key_type
            if credential is not None:
                error.credential = credential

    def emit(self, type_: str, *, client_ip: IPAddress | None = None, **fields: Any) -> None:
        """One audit event (when any sink listens)."""
        if self.audit:
            self.audit.emit(AuditEvent(type_, self.now(), client_ip=ip_text(client_ip), **fields))

    def accepted(
        self,
        value: tuple[Any, ...],
        ip: IPAddress | None,
        method: str | None,
        path: str | None,
        started: float,
    ) -> None:
        """The end of every accepted flow: counted (metrics), audited when asked."""
        if self.counts is not None:
            self.counts.accepted(value[0] if type(value[0]) is Principal else value[1], started)
        if self._audit_successes:
            principal = value[0]  # a created session (IssuedSession first) is session.created
            if isinstance(principal, Principal):
                self.emit(
                    "auth.succeeded",
                    key_id=principal.key_id,
                    client_ip=ip,
                    method=method,
                    path=path,
                    session_id=principal.session_id,
                    project_id=principal.project_id,
                )

    def failed(
        self,
        error: AuthError,
        ip: IPAddress | str | None,
        method: str | None,
        path: str | None,
        started: float | None,
    ) -> None:
        """Every refused request ends here once: counted with its time when metrics are on
        (``started`` is None when it was counted already), and audited: ``auth.failed`` as
        raw fields, no event object unless a sink needs one (``AuditEmitter.emit_failure``)."""
        if started is not None and self.counts is not None:
            self.counts.refused(error, started)
        if error.verified and error.key_id is not None and self._count_refusal is not None:
            self._count_refusal(error.key_id, error.code.value, self.now())
        if self.audit:
            self.audit.emit_failure(
                self.now_seconds(),
                error.key_id,
                error.code.value,
                ip_text(ip),
                method,
                path,
                error.project_id,
            )

    def refused_outside(
        self,
        owner: object,
        error: AuthError,
        ip: IPAddress | None,
        method: str | None,
        path: str | None,
    ) -> None:
        """A refusal decided outside the flows (a route's guard): audited, and with metrics,
        a request ``owner`` (the authenticator) accepted counts with this refusal instead."""
        started: float | None = None  # counted already, unless below
        if self.counts is not None:
            context = request_var.get()
            if context is not None and context[1] is owner:
                self.counts.recount(context[0], error)  # counted (and timed) when accepted
            else:
                started = perf_counter()  # a request not counted yet: counted now
        self.failed(error, ip, method, path, started)

    def recount(self, principal: Principal, error: AuthError) -> None:
        """A request accepted (and counted) that is refused after all: it counts with that
        refusal instead (metrics only)."""
        if self.counts is not None:
            self.counts.recount(principal, error)
