"""Plans and usage: on a key's page, each budget its requests count against (its own limits,
its project's) with what is used of it now, and its credits; on Projects, each of the
viewer's projects with its shared budgets and its keys' credits.

Security model: a partner sees only its own projects (any other project id is answered like
an unknown one, 404); the figures are counts, never a key or a secret. Reading the counters
counts no request. Only an operator sets budgets or adds credits (a partner would raise its
own plan): ``POST`` only, CSRF-checked by :meth:`Site.page`, audited with the operator as
actor.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .._budget_usage import BudgetUsage, key_budget_usage, project_budget_usage
from .._durations import format_duration, parse_rate_limit
from .._models import KeyRecord, RateLimit
from ._site import Site, get_key, viewer_of

__all__ = ["ProjectPages", "key_plan"]

_KINDS = {"key": "this key", "project": "project (shared)"}


def key_plan(site: Site, record: KeyRecord) -> dict[str, Any]:
    """What a key's page shows of its plan: ``budgets`` (rows; ``None`` when the store
    cannot read its counters) and ``credits`` (``None`` for a key without credits)."""
    usage = key_budget_usage(site.store, record, site.manager.clock())
    credits = None
    if record.credits is not None:
        refill = record.credits.refill
        credits = {
            "remaining": f"{record.credits_remaining or 0:,}",
            "refill": (
                f"topped up to {refill.amount:,} every {format_duration(refill.every)}"
                if refill is not None
                else "no refill"
            ),
        }
    return {"budgets": _rows(usage), "credits": credits}


class ProjectPages:
    """``GET /projects``: the viewer's projects, their shared budgets and their keys; an
    operator's forms to set a project's budgets and add credits to a key."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.manager = site.manager

    async def projects(self, request: Request) -> Response:
        """``GET /projects`` (``?project=P`` for one)."""
        user = viewer_of(request)
        wanted = request.query_params.get("project") or None
        if wanted is not None and not user.manages(wanted):
            return self.site.error(request, 404, "No such project.")
        return await run_in_threadpool(self._page, request, wanted)

    def _page(
        self, request: Request, wanted: str | None, status: int = 200, **extra: Any
    ) -> Response:
        user = viewer_of(request)
        summaries = self._summaries(user.project_ids, wanted)
        return self.site.render(
            request,
            "projects.html",
            status,
            projects=summaries,
            project=wanted or "",
            operator=user.project_ids is None,
            **extra,
        )

    async def set_limits(self, request: Request) -> Response:
        """``POST /projects/limits`` (operators): set a project's budgets from
        ``[NAME=]N/WINDOW`` items (as the CLI takes them); none clears them."""
        user = viewer_of(request)
        if user.project_ids is not None:  # a partner may not raise its own plan
            return self.site.error(request, 403, "Only an operator can set a project's budgets.")
        form = await request.form()
        project_id = str(form.get("project_id", "")).strip()
        # One budget per line (a name may hold spaces).
        items = [line.strip() for line in str(form.get("limits", "")).splitlines()]
        items = [item for item in items if item]
        try:
            limits = [parse_rate_limit(item) for item in items]
            set_limits = self.manager.acting_as(user.id).set_project_limits
            await run_in_threadpool(set_limits, project_id, limits)
        except (ValueError, TypeError) as error:
            return await run_in_threadpool(self._page, request, None, 400, error=str(error))
        target = f"{self.site.base(request)}/projects?project={quote(project_id, safe='')}"
        return RedirectResponse(target, 303)

    async def add_credits(self, request: Request) -> Response:
        """``POST /keys/{id}/credits`` (operators): add credits to a key with credits."""
        user = viewer_of(request)
        record = await run_in_threadpool(get_key, self.manager, request.path_params["key_id"])
        if record is None or not user.manages(record.project_id):
            return self.site.error(request, 404, "No such key.")
        if user.project_ids is not None:
            return self.site.error(request, 403, "Only an operator can add credits.")
        form = await request.form()
        text = str(form.get("count", "")).strip()
        if not text.isdigit() or not 1 <= int(text) <= 10**12:
            return self.site.error(request, 400, "Give a whole number of credits, at least 1.")
        add = self.manager.acting_as(user.id).add_credits
        try:
            await run_in_threadpool(add, record.id, int(text))
        except ValueError as error:  # a key without credits
            return self.site.error(request, 400, str(error))
        return RedirectResponse(f"{self.site.base(request)}/keys/{record.id}", 303)

    def _summaries(
        self, project_ids: frozenset[str] | None, wanted: str | None
    ) -> list[dict[str, Any]]:
        if wanted is not None:
            ids = [wanted]
        elif project_ids is not None:
            ids = sorted(project_ids)
        else:  # an operator: every project some key belongs to
            ids = sorted({r.project_id for r in self.manager.list() if r.project_id is not None})
        return [self._summary(project_id) for project_id in ids]

    def _summary(self, project_id: str) -> dict[str, Any]:
        now = self.manager.clock()
        limits = self.manager.get_project_limits(project_id)
        usage = project_budget_usage(self.site.store, project_id, limits, now)
        keys = []
        for record in self.manager.list(project_id=project_id):
            status = record.status(now)
            if status in ("revoked", "expired"):
                continue
            left = record.credits_remaining
            keys.append(
                {
                    "id": record.id,
                    "name": record.name or "—",
                    "status": status,
                    "limits": ", ".join(_limit_text(limit) for limit in record.rate_limits) or "—",
                    "credits": f"{left:,}" if left is not None else "—",
                }
            )
        limits_text = "\n".join(
            f"{limit.name}={limit.requests}/{_window_text(limit)}"
            if limit.name
            else f"{limit.requests}/{_window_text(limit)}"
            for limit in limits
        )
        return {
            "id": project_id,
            "budgets": _rows(usage),
            "key_rows": keys,
            "limits_text": limits_text,
        }


def _rows(usage: list[BudgetUsage] | None) -> list[dict[str, Any]] | None:
    if usage is None:
        return None
    return [
        {
            "kind": _KINDS[budget.kind],
            "name": budget.limit.name or "—",
            "limit": _limit_text(budget.limit),
            "used": f"{budget.used:,}",
            "remaining": f"{budget.remaining:,}",
            "percent": budget.percent,
            "requests": budget.limit.requests,
            "count": min(budget.used, budget.limit.requests),
        }
        for budget in usage
    ]


def _limit_text(limit: RateLimit) -> str:
    return f"{limit.requests:,} per {format_duration(limit.window)}"


def _window_text(limit: RateLimit) -> str:
    # A window as the form (and the CLI) reads it back, exactly.
    ms = limit.window_ms
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
