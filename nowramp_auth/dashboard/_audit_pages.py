"""Settings > Audit Logs: the page (newest first, by key and type) and its CSV download.

Security model: a partner sees only its projects' events. They are read from the audit
sink's per-project index (``project_ids=``), so no number of other projects' events (a flood
of unauthenticated refusals included) can push a partner's events out of its page, and a page
costs the same however many events others have. Cells of the CSV cannot start a formula
(:mod:`._csv`).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .._models import AUDIT_EVENT_TYPES, AuditEvent
from ._csv import audit_csv_text
from ._site import Site, get_key, viewer_of

__all__ = ["CSV_ROWS", "PAGE_SIZE", "AuditPages"]

PAGE_SIZE = 50
CSV_ROWS = 10_000
"""The most events one ``/audit.csv`` download holds (newest first)."""
EVENT_TYPES = list(AUDIT_EVENT_TYPES)


class AuditPages:
    """The Audit Logs pages of one dashboard."""

    def __init__(self, site: Site) -> None:
        self.site = site

    async def _events(self, request: Request, wanted: int) -> list[AuditEvent]:
        # The filter's events the user may see, newest first (at most ``wanted``).
        audit = self.site.audit
        if audit is None:
            return []
        params = request.query_params
        key_id = params.get("key") or None
        event_type = params.get("type") if params.get("type") in EVENT_TYPES else None
        user = viewer_of(request)
        projects = user.project_ids
        if key_id is not None:
            # One key's events: read from its project's index, so an unknown or foreign id
            # costs a lookup, not a scan of every event.
            record = await run_in_threadpool(get_key, self.site.manager, key_id)
            if record is not None and record.project_id is not None:
                projects = frozenset({record.project_id})
            if record is None and projects is not None:
                return []
        if projects is None:
            return await run_in_threadpool(
                lambda: audit.read(key_id=key_id, type=event_type, limit=wanted)
            )
        events = await run_in_threadpool(
            lambda: audit.read(key_id=key_id, type=event_type, limit=wanted, project_ids=projects)
        )
        return [e for e in events if user.manages(e.project_id)][:wanted]

    async def csv(self, request: Request) -> Response:
        """``GET /audit.csv``: the current filter as CSV."""
        events = await self._events(request, CSV_ROWS)
        response = Response(audit_csv_text(events), media_type="text/csv; charset=utf-8")
        response.headers["Content-Disposition"] = 'attachment; filename="audit.csv"'
        return response

    async def page(self, request: Request) -> Response:
        """``GET /audit``: one page of events, newest first."""
        params = request.query_params
        key_id = params.get("key") or None
        event_type = params.get("type") if params.get("type") in EVENT_TYPES else None
        try:
            page = max(1, min(int(params.get("page", "1")), 1000))
        except ValueError:
            page = 1
        events = await self._events(request, page * PAGE_SIZE + 1)
        return self.site.render(
            request,
            "audit.html",
            events=events[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
            key=key_id or "",
            type=event_type or "",
            types=EVENT_TYPES,
            page=page,
            has_next=len(events) > page * PAGE_SIZE,
            configured=self.site.audit is not None,
        )
