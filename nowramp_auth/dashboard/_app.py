"""The dashboard's routes: sign-in, API keys (list, create, rotate, revoke), audit logs.

Security model: see :mod:`nowramp_auth.dashboard._security`. Key operations run only for a
signed-in session with a valid CSRF token; a new key appears once, in the response to the
form that created it (``Cache-Control: no-store``), never in a URL or a later page.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import secrets
import time
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

from .._accounts import MIN_PASSWORD_LENGTH, OPERATOR_ADMIN, Accounts, DashboardUser
from .._clock import utc_now
from .._durations import format_duration
from .._manager import KeyManager
from .._models import AUDIT_EVENT_TYPES, AuditEvent, KeyRecord, RateLimit
from ..stores._errors import StoreUnavailable
from ._chart import usage_chart
from ._csv import audit_csv_text
from ._headers import SecurityHeaders
from ._security import check_password, csrf_matches
from ._sessions import StoreSessions
from ._users import IdentityCsrf, Viewer

__all__ = ["create_dashboard"]

COOKIE = "nowramp_dashboard"
PAGE_SIZE = 50
SIGN_IN_LIMIT = RateLimit(5, timedelta(minutes=1))
"""Sign-in attempts per client address, counted before the password is checked."""
CSV_ROWS = 10_000
"""The most events one ``/audit.csv`` download holds (newest first)."""
PARTNER_AUDIT_WINDOW = 10_000
"""How many recent events a partner's audit page filters its own from."""
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
Identify = Callable[[Request], "DashboardUser | Awaitable[DashboardUser | None] | None"]


def create_dashboard(
    manager: KeyManager,
    *,
    audit: AuditReader | None = None,
    identify: Identify | None = None,
    admin_password: str | None = None,
    secret_key: str | bytes | None = None,
    session_idle: timedelta = timedelta(minutes=30),
    session_max_age: timedelta = timedelta(hours=12),
    secure_cookies: bool | None = None,
) -> Starlette:
    """The dashboard as an ASGI app to mount (e.g. at ``/dashboard``).

    Sign-in is one of two modes, fixed here:

    - ``identify=``: the host app signs users in. A callable (sync or async) taking the
      Starlette ``Request`` and returning a :class:`DashboardUser`, or ``None`` (answered
      401). No sign-in form; ``admin_password`` is refused.
    - otherwise a sign-in form (``username``, ``password``) for the built-in accounts kept
      in the key store (``nowramp-auth accounts ...``, argon2id hashes) and, when
      ``admin_password=`` is given (at least 12 characters), the operator (``admin``).
      Sessions live in the key store, so every instance serves every user.

    Partners (``DashboardUser.project_ids`` a set) see, create, rotate, revoke and audit only
    keys of their projects; a URL or form naming another key answers 404 like an unknown
    id, and changes nothing. Operators (``project_ids=None``) see every project.

    Parameters:
        manager: the :class:`~nowramp_auth.KeyManager` of the keys to manage.
        audit: where the Audit Logs page reads events (a ``MemoryAuditLog`` or
            ``RedisStreamAuditLog``); without it the page says none are configured.
        identify: who is signed in, as the host app knows it (see above).
        admin_password: the operator's sign-in password (at least 12 characters).
        secret_key: in ``identify=`` mode, keys the CSRF tokens' user binding (the same on
            every instance; optional).
        session_idle: a session ends after this long without a request (default 30 min).
        session_max_age: a session ends this long after sign-in (default 12 hours).
        secure_cookies: mark cookies ``Secure`` (default: when the request came over https).
    """
    if identify is not None and admin_password is not None:
        raise ValueError("give identify= or admin_password=, not both")
    if admin_password is not None and (
        not isinstance(admin_password, str) or len(admin_password) < MIN_PASSWORD_LENGTH
    ):
        raise ValueError(f"admin_password must be at least {MIN_PASSWORD_LENGTH} characters")
    if identify is not None and not callable(identify):
        raise TypeError("identify must be a callable taking the request")
    if audit is not None and not callable(getattr(audit, "read", None)):
        raise TypeError("audit must have a read(key_id=, type=, limit=) method")
    key_bytes = secret_key.encode() if isinstance(secret_key, str) else secret_key
    csrf = IdentityCsrf(key_bytes)
    store: Any = manager.store
    accounts = Accounts(store) if identify is None else None
    sessions = StoreSessions(
        store, idle=session_idle.total_seconds(), absolute=session_max_age.total_seconds()
    )

    def cookie_secure(request: Request) -> bool:
        return request.url.scheme == "https" if secure_cookies is None else secure_cookies

    async def who(request: Request) -> tuple[Viewer | None, str | None]:
        """The viewer, and a new CSRF cookie value to set (identify mode)."""
        if identify is None:
            cookie = request.cookies.get(COOKIE)
            session = await run_in_threadpool(sessions.find, cookie)
            if session is None:
                return None, None
            if session.user.id != OPERATOR_ADMIN.id and accounts is not None:
                # A disabled or removed account is signed out at its next request.
                account = await run_in_threadpool(accounts.enabled, session.user.id)
                if not account:
                    await run_in_threadpool(sessions.end, cookie)
                    return None, None
            return Viewer(session.user, session.csrf_token, signs_out=True), None
        if inspect.iscoroutinefunction(identify):
            user = await identify(request)
        else:
            user = await run_in_threadpool(identify, request)
            if inspect.isawaitable(user):
                user = await user
        if user is None:
            return None, None
        if not isinstance(user, DashboardUser):
            raise TypeError("identify must return a DashboardUser or None")
        token, fresh = csrf.token_for(user, request.cookies.get(IdentityCsrf.cookie))
        return Viewer(user, token, signs_out=False), token if fresh else None

    def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
        viewer = getattr(request.state, "viewer", None)
        context.update(
            base=request.scope.get("root_path", ""),
            session=viewer,
            nonce=request.state.nonce,
        )
        response = _TEMPLATES.TemplateResponse(request, template, context, status_code=status)
        return response

    def signed_in(handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            request.state.nonce = secrets.token_urlsafe(12)
            nonce = request.state.nonce
            try:
                viewer, new_cookie = await who(request)
            except StoreUnavailable:  # sessions and accounts live in the key store
                return _harden(unreachable(request), nonce)
            if viewer is None:
                if identify is not None:
                    refusal = render(request, "error.html", 401, message="Not signed in.")
                    return _harden(refusal, nonce)
                login = request.scope.get("root_path", "") + "/login"
                return _harden(RedirectResponse(login, 303), nonce)
            request.state.viewer = viewer
            if request.method == "POST":
                form = await request.form()
                presented = form.get("csrf_token")
                if identify is None:
                    ok = csrf_matches(viewer.csrf_token, presented)
                else:
                    ok = csrf.check(
                        viewer.user, request.cookies.get(IdentityCsrf.cookie), presented
                    )
                if not ok:
                    refusal = Response(
                        "Invalid or missing CSRF token.", 403, media_type="text/plain"
                    )
                    return _harden(refusal, nonce)
            try:
                response = await handler(request)
            except StoreUnavailable:
                response = unreachable(request)
            if new_cookie is not None:
                response.set_cookie(
                    IdentityCsrf.cookie,
                    new_cookie,
                    path=request.scope.get("root_path", "") or "/",
                    httponly=True,
                    samesite="strict",
                    secure=cookie_secure(request),
                )
            return _harden(response, request.state.nonce)

        return guarded

    def unreachable(request: Request) -> Response:
        message = "The key store is unreachable. Try again shortly."
        return render(request, "error.html", 503, message=message)

    def viewer_of(request: Request) -> DashboardUser:
        viewer: Viewer = request.state.viewer
        return viewer.user

    async def login(request: Request) -> Response:
        request.state.nonce = secrets.token_urlsafe(12)
        base = request.scope.get("root_path", "")
        if request.method == "GET":
            return _harden(render(request, "login.html"), request.state.nonce)
        client = request.client.host if request.client else "unknown"
        form = await request.form()
        # Counted in the key store before the password is checked, in one atomic step with
        # the check of the allowance: however many requests arrive at once, on however many
        # instances, at most 5 a minute are checked per client address.
        try:
            if not await run_in_threadpool(sign_in_allowed, client):
                return _harden(
                    render(request, "login.html", 429, error="Too many attempts. Wait a minute."),
                    request.state.nonce,
                )
            user = await run_in_threadpool(sign_in, form.get("username"), form.get("password"))
            if user is None:
                return _harden(
                    render(request, "login.html", 401, error="Wrong username or password."),
                    request.state.nonce,
                )
            _, cookie = await run_in_threadpool(sessions.start, user)
        except StoreUnavailable:  # the throttle, accounts and sessions live in the key store
            return _harden(unreachable(request), request.state.nonce)
        response = RedirectResponse(base + "/keys", 303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(session_max_age.total_seconds()),
            path=base or "/",
            httponly=True,
            samesite="strict",
            secure=cookie_secure(request),
        )
        return _harden(response, request.state.nonce)

    def sign_in_allowed(client: str) -> bool:
        lineage = "signin_" + hashlib.sha256(client.encode()).hexdigest()[:24]
        return bool(store.hit_rate_limit(lineage, SIGN_IN_LIMIT, utc_now()).allowed)

    def sign_in(username: object, password: object) -> DashboardUser | None:
        if username in (None, "", OPERATOR_ADMIN.id):  # the operator shortcut
            ok = (
                admin_password is not None
                and isinstance(password, str)
                and check_password(admin_password, password)
            )
            return OPERATOR_ADMIN if ok else None
        assert accounts is not None  # password mode
        return accounts.verify(username, password)

    @signed_in
    async def logout(request: Request) -> Response:
        await run_in_threadpool(sessions.end, request.cookies.get(COOKIE))
        base = request.scope.get("root_path", "")
        response = RedirectResponse(base + "/login", 303)
        response.delete_cookie(COOKIE, path=base or "/")
        return response

    async def home(request: Request) -> Response:
        return RedirectResponse(request.scope.get("root_path", "") + "/keys", 303)

    def keys_page(request: Request, status: int = 200, **extra: Any) -> Response:
        user = viewer_of(request)
        project = request.query_params.get("project") or None
        records = [r for r in manager.list(project_id=project) if user.manages(r.project_id)]
        now = utc_now()
        rows = [_row(r, now) for r in sorted(records, key=lambda r: r.created_at, reverse=True)]
        return render(
            request,
            "keys.html",
            status,
            rows=rows,
            project=project or "",
            scopes=sorted(manager.scopes.scopes),
            projects=sorted(user.project_ids) if user.project_ids is not None else None,
            expiry_choices=EXPIRY_CHOICES,
            **extra,
        )

    @signed_in
    async def keys(request: Request) -> Response:
        return await run_in_threadpool(keys_page, request)

    @signed_in
    async def create(request: Request) -> Response:
        user = viewer_of(request)
        form = await request.form()
        project_id = str(form.get("project_id", "")).strip() or None
        if project_id is None and user.project_ids is not None and len(user.project_ids) == 1:
            project_id = next(iter(user.project_ids))  # a partner's only project
        if not user.manages(project_id):
            return await run_in_threadpool(
                keys_page, request, 400, error="You can create keys only in your own projects."
            )
        choice = str(form.get("expires_in_days", ""))
        if choice not in EXPIRY_CHOICES:
            return await run_in_threadpool(
                keys_page, request, 400, error="Choose an expiry from the list."
            )
        try:
            days = EXPIRY_CHOICES[choice]
            issued = await run_in_threadpool(
                manager.acting_as(user.id).create,
                scopes=[str(s) for s in form.getlist("scopes")],
                key_type="live" if form.get("key_type") == "live" else "test",
                name=str(form.get("name", "")).strip(),
                project_id=project_id,
                allowed_ips=[c for c in re.split(r"[\s,]+", str(form.get("allowed_ips", ""))) if c],
                expires_at=utc_now() + timedelta(days=days) if days else None,
            )
        except (ValueError, TypeError) as error:
            return await run_in_threadpool(keys_page, request, 400, error=str(error))
        return _show_once(
            render(request, "key_created.html", issued=issued, title="Your new API key")
        )

    async def visible(request: Request) -> KeyRecord | None:
        # A key outside the user's projects is answered exactly like an unknown id.
        record = await run_in_threadpool(_get, manager, request.path_params["key_id"])
        if record is None or not viewer_of(request).manages(record.project_id):
            return None
        return record

    @signed_in
    async def key_page(request: Request) -> Response:
        record = await visible(request)
        if record is None:
            return render(request, "error.html", 404, message="No such key.")
        history_of = getattr(store, "usage_history", None)
        chart = None
        if history_of is not None:
            history = await run_in_threadpool(history_of, record.id)
            chart = usage_chart(history, int(time.time() // 3600))
        return render(request, "key.html", key=_row(record, utc_now()), chart=chart)

    async def _confirm(request: Request, action: str) -> Response:
        record = await visible(request)
        if record is None:
            return render(request, "error.html", 404, message="No such key.")
        return render(request, "confirm.html", action=action, key=_row(record, utc_now()))

    @signed_in
    async def rotate(request: Request) -> Response:
        if request.method == "GET":
            return await _confirm(request, "rotate")
        key_id = request.path_params["key_id"]
        if await visible(request) is None:
            return render(request, "error.html", 404, message="No such key.")
        try:
            issued = await run_in_threadpool(
                manager.acting_as(viewer_of(request).id).rotate, key_id
            )
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
        if await visible(request) is None:
            return render(request, "error.html", 404, message="No such key.")
        try:
            await run_in_threadpool(
                manager.acting_as(viewer_of(request).id).revoke, request.path_params["key_id"]
            )
        except KeyError:
            return render(request, "error.html", 404, message="No such key.")
        return RedirectResponse(request.scope.get("root_path", "") + "/keys", 303)

    async def visible_events(request: Request, wanted: int) -> list[AuditEvent]:
        # The filter's events the user may see, newest first (at most ``wanted``).
        params = request.query_params
        key_id = params.get("key") or None
        event_type = params.get("type") if params.get("type") in EVENT_TYPES else None
        user = viewer_of(request)
        if audit is None:
            return []
        # A partner sees only its projects' events: read further back, then filter.
        limit = wanted if user.is_operator else min(wanted * 20, PARTNER_AUDIT_WINDOW)
        events = await run_in_threadpool(audit.read, key_id=key_id, type=event_type, limit=limit)
        return [e for e in events if user.manages(e.project_id)][:wanted]

    @signed_in
    async def audit_csv(request: Request) -> Response:
        events = await visible_events(request, CSV_ROWS)
        response = Response(audit_csv_text(events), media_type="text/csv; charset=utf-8")
        response.headers["Content-Disposition"] = 'attachment; filename="audit.csv"'
        return response

    @signed_in
    async def audit_page(request: Request) -> Response:
        params = request.query_params
        key_id = params.get("key") or None
        event_type = params.get("type") if params.get("type") in EVENT_TYPES else None
        try:
            page = max(1, min(int(params.get("page", "1")), 1000))
        except ValueError:
            page = 1
        events = await visible_events(request, page * PAGE_SIZE + 1)
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

    routes = [Route("/", home)]
    if identify is None:  # the host app signs users in and out in identify= mode
        routes += [
            Route("/login", login, methods=["GET", "POST"]),
            Route("/logout", logout, methods=["POST"]),
        ]
    routes += [
        Route("/keys", keys),
        Route("/keys", create, methods=["POST"]),
        Route("/keys/{key_id}", key_page),
        Route("/keys/{key_id}/rotate", rotate, methods=["GET", "POST"]),
        Route("/keys/{key_id}/revoke", revoke, methods=["GET", "POST"]),
        Route("/audit", audit_page),
        Route("/audit.csv", audit_csv),
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
