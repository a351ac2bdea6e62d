"""Plans and usage: on a key's page, each budget its requests count against (its own limits,
its project's) with what is used of it now, and its credits; on Projects, each of the
viewer's projects with its shared budgets and its keys' credits.

Security model: a partner sees only its own projects (any other project id is answered like
an unknown one, 404); the figures are counts, never a key or a secret. Reading the counters
counts no request.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .._budget_usage import BudgetUsage, key_budget_usage, project_budget_usage
from .._durations import format_duration
from .._models import KeyRecord, RateLimit
from ._site import Site, viewer_of

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
    """``GET /projects``: the viewer's projects, their shared budgets and their keys."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.manager = site.manager

    async def projects(self, request: Request) -> Response:
        """``GET /projects`` (``?project=P`` for one)."""
        user = viewer_of(request)
        wanted = request.query_params.get("project") or None
        if wanted is not None and not user.manages(wanted):
            return self.site.error(request, 404, "No such project.")
        summaries = await run_in_threadpool(self._summaries, user.project_ids, wanted)
        return self.site.render(request, "projects.html", projects=summaries, project=wanted or "")

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
        return {"id": project_id, "budgets": _rows(usage), "key_rows": keys}


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
