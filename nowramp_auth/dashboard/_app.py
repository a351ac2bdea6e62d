"""The dashboard's routes: sign-in, API keys (list, create, rotate, revoke), audit logs.

Security model: see :mod:`nowramp_auth.dashboard._security`. Key operations run only for a
signed-in session with a valid CSRF token; a new key appears once, in the response to the
form that created it (``Cache-Control: no-store``), never in a URL or a later page.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from .._clock import utc_now
from .._durations import format_duration
from .._manager import KeyManager
from .._models import AUDIT_EVENT_TYPES, AuditEvent, KeyRecord
from ..stores._errors import StoreUnavailable
from ._headers import SecurityHeaders
from ._security import MIN_PASSWORD_LENGTH, AdminSessions, LoginThrottle, check_password

__all__ = ["create_dashboard"]

COOKIE = "nowramp_dashboard"
PAGE_SIZE = 50
EXPIRY_CHOICES = {"": None, "30": 30, "90": 90, "180": 180, "365": 365}
EVENT_TYPES = list(AUDIT_EVENT_TYPES)
_TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


class AuditReader(Protocol):
    """What the audit page needs: ``MemoryAuditLog`` and ``RedisStreamAuditLog`` both have it."""

    def read(
        self,
        *,
        key_id: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Events newest first."""


Handler = Callable[[Request], Awaitable[Response]]


ADMIN_ACTOR = "admin"
"""``AuditEvent.actor`` of changes made by the signed-in operator."""


def create_dashboard(
    manager: KeyManager,
    *,
    admin_password: str,
    audit: AuditReader | None = None,
    secret_key: str | bytes | None = None,
    session_max_age: timedelta = timedelta(hours=8),
    secure_cookies: bool | None = None,
) -> Starlette:
    """The dashboard as an ASGI app to mount (e.g. at ``/dashboard``).

    Parameters:
        manager: the :class:`~nowramp_auth.KeyManager` of the keys to manage.
        admin_password: the sign-in password (at least 12 characters; no default).
        audit: where the Audit Logs page reads events (a ``MemoryAuditLog`` or
            ``RedisStreamAuditLog``); without it the page says none are configured.
        secret_key: signs session cookies (default: random per process, so restarts sign
            everyone out).
        session_max_age: how long a sign-in lasts (default 8 hours).
        secure_cookies: mark the cookie ``Secure`` (default: when the request came over https).
    """
    if not isinstance(admin_password, str) or len(admin_password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"admin_password must be at least {MIN_PASSWORD_LENGTH} characters")
    if audit is not None and not callable(getattr(audit, "read", None)):
        raise TypeError("audit must have a read(key_id=, type=, limit=) method")
    sessions = AdminSessions(secret_key or secrets.token_bytes(32), session_max_age.total_seconds())
    throttle = LoginThrottle()
    acting = manager.acting_as(ADMIN_ACTOR)  # every change names who made it

    def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
        session = sessions.find(request.cookies.get(COOKIE))
        context.update(
            base=request.scope.get("root_path", ""), session=session, nonce=request.state.nonce
        )
        response = _TEMPLATES.TemplateResponse(request, template, context, status_code=status)
        return response

    def signed_in(handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            request.state.nonce = secrets.token_urlsafe(12)
            session = sessions.find(request.cookies.get(COOKIE))
            nonce = request.state.nonce
            if session is None:
                login = request.scope.get("root_path", "") + "/login"
                return _harden(RedirectResponse(login, 303), nonce)
            if request.method == "POST":
                form = await request.form()
                if not AdminSessions.csrf_ok(session, form.get("csrf_token")):
                    refusal = Response(
                        "Invalid or missing CSRF token.", 403, media_type="text/plain"
                    )
                    return _harden(refusal, nonce)
            try:
                response = await handler(request)
            except StoreUnavailable:
                response = render(
                    request,
                    "error.html",
                    503,
                    message="The key store is unreachable. Try again shortly.",
                )
            return _harden(response, request.state.nonce)

        return guarded

    async def login(request: Request) -> Response:
        request.state.nonce = secrets.token_urlsafe(12)
        base = request.scope.get("root_path", "")
        if request.method == "GET":
            return _harden(render(request, "login.html"), request.state.nonce)
        client = request.client.host if request.client else "unknown"
        form = await request.form()
        # Counted before the password is checked, in one step with the check of the
        # allowance: however many requests arrive at once, at most 5 a minute are checked.
        if not throttle.attempt(client):
            return _harden(
                render(request, "login.html", 429, error="Too many attempts. Wait a minute."),
                request.state.nonce,
            )
        password = form.get("password")
        if not isinstance(password, str) or not check_password(admin_password, password):
            return _harden(
                render(request, "login.html", 401, error="Wrong password."), request.state.nonce
            )
        throttle.succeeded(client)
        _, cookie = sessions.start()
        response = RedirectResponse(base + "/keys", 303)
        secure = request.url.scheme == "https" if secure_cookies is None else secure_cookies
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(session_max_age.total_seconds()),
            path=base or "/",
            httponly=True,
            samesite="strict",
            secure=secure,
        )
        return _harden(response, request.state.nonce)

    @signed_in
    async def logout(request: Request) -> Response:
        session = sessions.find(request.cookies.get(COOKIE))
        if session is not None:
            sessions.end(session)
        base = request.scope.get("root_path", "")
        response = RedirectResponse(base + "/login", 303)
        response.delete_cookie(COOKIE, path=base or "/")
        return response

    async def home(request: Request) -> Response:
        return RedirectResponse(request.scope.get("root_path", "") + "/keys", 303)

    def keys_page(request: Request, status: int = 200, **extra: Any) -> Response:
        project = request.query_params.get("project") or None
        records = manager.list(project_id=project)
        now = utc_now()
        rows = [_row(r, now) for r in sorted(records, key=lambda r: r.created_at, reverse=True)]
        return render(
            request,
            "keys.html",
            status,
            rows=rows,
            project=project or "",
            scopes=sorted(manager.scopes.scopes),
            expiry_choices=EXPIRY_CHOICES,
            **extra,
        )

    @signed_in
    async def keys(request: Request) -> Response:
        return await run_in_threadpool(keys_page, request)

    @signed_in
    async def create(request: Request) -> Response:
        form = await request.form()
        try:
            days = EXPIRY_CHOICES.get(str(form.get("expires_in_days", "")))
            issued = await run_in_threadpool(
                acting.create,
                scopes=[str(s) for s in form.getlist("scopes")],
                key_type="live" if form.get("key_type") == "live" else "test",
                name=str(form.get("name", "")).strip(),
                project_id=str(form.get("project_id", "")).strip() or None,
                allowed_ips=[c for c in re.split(r"[\s,]+", str(form.get("allowed_ips", ""))) if c],
                expires_at=utc_now() + timedelta(days=days) if days else None,
            )
        except (ValueError, TypeError) as error:
            return await run_in_threadpool(keys_page, request, 400, error=str(error))
        return _show_once(
            render(request, "key_created.html", issued=issued, title="Your new API key")
        )

    async def _confirm(request: Request, action: str) -> Response:
        record = await run_in_threadpool(_get, manager, request.path_params["key_id"])
        if record is None:
            return render(request, "error.html", 404, message="No such key.")
        return render(request, "confirm.html", action=action, key=_row(record, utc_now()))

    @signed_in
    async def rotate(request: Request) -> Response:
        if request.method == "GET":
            return await _confirm(request, "rotate")
        key_id = request.path_params["key_id"]
        try:
            issued = await run_in_threadpool(acting.rotate, key_id)
            old = await run_in_threadpool(manager.get, key_id)
        except KeyError:
            return render(request, "error.html", 404, message="No such key.")
        except ValueError as error:
            return render(request, "error.html", 409, message=str(error))
        grace_end = old.expires_at
        return _show_once(
            render(
                request,
                "key_created.html",
                issued=issued,
                title="Your rotated API key",
                old=old,
                grace_end=grace_end,
                grace_left=format_duration(grace_end - utc_now()) if grace_end else None,
            )
        )

    @signed_in
    async def revoke(request: Request) -> Response:
        if request.method == "GET":
            return await _confirm(request, "revoke")
        try:
            await run_in_threadpool(acting.revoke, request.path_params["key_id"])
        except KeyError:
            return render(request, "error.html", 404, message="No such key.")
        return RedirectResponse(request.scope.get("root_path", "") + "/keys", 303)

    @signed_in
    async def audit_page(request: Request) -> Response:
        params = request.query_params
        key_id = params.get("key") or None
        event_type = params.get("type") if params.get("type") in EVENT_TYPES else None
        try:
            page = max(1, min(int(params.get("page", "1")), 1000))
        except ValueError:
            page = 1
        events: list[AuditEvent] = []
        if audit is not None:
            events = await run_in_threadpool(
                audit.read, key_id=key_id, type=event_type, limit=page * PAGE_SIZE + 1
            )
        shown = events[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        return render(
            request,
            "audit.html",
            events=shown,
            key=key_id or "",
            type=event_type or "",
            types=EVENT_TYPES,
            page=page,
            has_next=len(events) > page * PAGE_SIZE,
            configured=audit is not None,
        )

    routes = [
        Route("/", home),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/keys", keys),
        Route("/keys", create, methods=["POST"]),
        Route("/keys/{key_id}/rotate", rotate, methods=["GET", "POST"]),
        Route("/keys/{key_id}/revoke", revoke, methods=["GET", "POST"]),
        Route("/audit", audit_page),
    ]
    # Answers no page renders (404, 405, redirects) get the same headers as pages.
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])


def _get(manager: KeyManager, key_id: str) -> KeyRecord | None:
    try:
        return manager.get(key_id)
    except KeyError:
        return None


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


def _harden(response: Response, nonce: str) -> Response:
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _show_once(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
