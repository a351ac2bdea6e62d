"""Settings > API Keys: the list, Create New Key, a key's page, Rotate and Revoke.

Security model: a key outside the viewer's projects is answered exactly like an unknown id
(404) and nothing changes. Rotate and revoke act only on ``POST`` (the CSRF token was
checked by :meth:`Site.page`); ``GET`` and ``HEAD`` show the confirmation page. A new key
appears once, in the answer to the form that made it (``Cache-Control: no-store``).
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .._clock import utc_now
from .._durations import format_duration
from .._models import KeyRecord
from ._chart import usage_chart
from ._site import Site, get_key, show_once, viewer_of
from ._usage_pages import key_plan

__all__ = ["EXPIRY_CHOICES", "KeyPages"]

EXPIRY_CHOICES = {"": None, "30": 30, "90": 90, "180": 180, "365": 365}


class KeyPages:
    """The API Keys pages of one dashboard."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.manager = site.manager

    def _records(self, request: Request) -> tuple[list[KeyRecord], str | None]:
        # A partner's keys are listed project by project (the store's per-project index),
        # never by loading every tenant's keys.
        user = viewer_of(request)
        project = request.query_params.get("project") or None
        if user.project_ids is None:
            return self.manager.list(project_id=project), project
        wanted = [project] if project is not None else sorted(user.project_ids)
        return [
            r for p in wanted if user.manages(p) for r in self.manager.list(project_id=p)
        ], project

    def _list_page(self, request: Request, status: int = 200, **extra: Any) -> Response:
        user = viewer_of(request)
        records, project = self._records(request)
        now = utc_now()
        rows = [_row(r, now) for r in sorted(records, key=lambda r: r.created_at, reverse=True)]
        return self.site.render(
            request,
            "keys.html",
            status,
            rows=rows,
            project=project or "",
            scopes=sorted(self.manager.scopes.scopes),
            projects=sorted(user.project_ids) if user.project_ids is not None else None,
            expiry_choices=EXPIRY_CHOICES,
            **extra,
        )

    async def keys(self, request: Request) -> Response:
        """``GET /keys``."""
        return await run_in_threadpool(self._list_page, request)

    async def create(self, request: Request) -> Response:
        """``POST /keys``: Create New Key."""
        user = viewer_of(request)
        form = await request.form()
        project_id = str(form.get("project_id", "")).strip() or None
        if project_id is None and user.project_ids is not None and len(user.project_ids) == 1:
            project_id = next(iter(user.project_ids))  # a partner's only project
        if not user.manages(project_id):
            error = "You can create keys only in your own projects."
            return await run_in_threadpool(self._list_page, request, 400, error=error)
        choice = str(form.get("expires_in_days", ""))
        if choice not in EXPIRY_CHOICES:
            error = "Choose an expiry from the list."
            return await run_in_threadpool(self._list_page, request, 400, error=error)
        days = EXPIRY_CHOICES[choice]
        try:
            issued = await run_in_threadpool(
                self.manager.acting_as(user.id).create,
                scopes=[str(s) for s in form.getlist("scopes")],
                key_type="live" if form.get("key_type") == "live" else "test",
                name=str(form.get("name", "")).strip(),
                project_id=project_id,
                allowed_ips=[c for c in re.split(r"[\s,]+", str(form.get("allowed_ips", ""))) if c],
                expires_at=utc_now() + timedelta(days=days) if days else None,
            )
        except (ValueError, TypeError) as error:
            return await run_in_threadpool(self._list_page, request, 400, error=str(error))
        page = self.site.render(
            request, "key_created.html", issued=issued, title="Your new API key"
        )
        return show_once(page)

    async def _visible(self, request: Request) -> KeyRecord | None:
        # A key outside the user's projects is answered exactly like an unknown id.
        record = await run_in_threadpool(get_key, self.manager, request.path_params["key_id"])
        if record is None or not viewer_of(request).manages(record.project_id):
            return None
        return record

    def _no_such_key(self, request: Request) -> Response:
        return self.site.error(request, 404, "No such key.")

    async def key_page(self, request: Request) -> Response:
        """``GET /keys/{id}``: the key and its usage chart."""
        record = await self._visible(request)
        if record is None:
            return self._no_such_key(request)
        history_of = getattr(self.site.store, "usage_history", None)
        chart = None
        if history_of is not None:
            history = await run_in_threadpool(history_of, record.id)
            chart = usage_chart(history, int(time.time() // 3600))
        leak = await run_in_threadpool(self._leak, record)
        plan = await run_in_threadpool(key_plan, self.site, record)
        key = _row(record, utc_now())
        return self.site.render(request, "key.html", key=key, chart=chart, leak=leak, plan=plan)

    def _leak(self, record: KeyRecord) -> dict[str, str] | None:
        # Where and when a key revoked for a leak was found (its key.leaked event).
        audit = self.site.audit
        if record.revoked_at is None or audit is None:
            return None
        projects = [record.project_id] if record.project_id is not None else None
        events = audit.read(key_id=record.id, type="key.leaked", limit=1, project_ids=projects)
        if not events:
            return None
        try:
            found = json.loads(events[0].detail or "{}")
        except ValueError:
            found = {}
        url = str(found.get("url") or "")
        return {
            "url": url if url.startswith(("https://", "http://")) else "",
            "source": str(found.get("source") or ""),
            "at": events[0].at.strftime("%Y-%m-%d %H:%M"),
            "actor": events[0].actor or "-",
        }

    async def _confirm(self, request: Request, action: str) -> Response:
        record = await self._visible(request)
        if record is None:
            return self._no_such_key(request)
        key = _row(record, utc_now())
        return self.site.render(request, "confirm.html", action=action, key=key)

    async def rotate(self, request: Request) -> Response:
        """``GET``/``HEAD``: the confirmation page; ``POST``: rotate and show the new key."""
        if request.method != "POST":
            return await self._confirm(request, "rotate")
        key_id = request.path_params["key_id"]
        if await self._visible(request) is None:
            return self._no_such_key(request)
        try:
            rotate = self.manager.acting_as(viewer_of(request).id).rotate
            issued = await run_in_threadpool(rotate, key_id)
            old = await run_in_threadpool(self.manager.get, key_id)
        except KeyError:
            return self._no_such_key(request)
        except ValueError as error:
            return self.site.error(request, 409, str(error))
        grace_end = old.expires_at
        page = self.site.render(
            request,
            "key_created.html",
            issued=issued,
            title="Your rotated API key",
            old=old,
            grace_end=grace_end,
            grace_left=format_duration(grace_end - utc_now()) if grace_end else None,
        )
        return show_once(page)

    async def revoke(self, request: Request) -> Response:
        """``GET``/``HEAD``: the confirmation page; ``POST``: revoke."""
        if request.method != "POST":
            return await self._confirm(request, "revoke")
        if await self._visible(request) is None:
            return self._no_such_key(request)
        revoke = self.manager.acting_as(viewer_of(request).id).revoke
        try:
            await run_in_threadpool(revoke, request.path_params["key_id"])
        except KeyError:
            return self._no_such_key(request)
        return RedirectResponse(self.site.base(request) + "/keys", 303)


def _row(record: KeyRecord, now: datetime) -> dict[str, Any]:
    def when(value: datetime | None) -> str:
        return value.strftime("%Y-%m-%d %H:%M") if value else "—"

    return {
        "id": record.id,
        "name": record.name or "—",
        "type": record.key_type,
        "hint": record.hint,
        "scopes": sorted(record.scopes),
        "project": record.project_id or "—",
        "created": when(record.created_at),
        "last_used": when(record.last_used_at),
        "expires": when(record.expires_at),
        "status": record.status(now),
        "allowed_ips": ", ".join(record.allowed_ips) or "any",
    }
