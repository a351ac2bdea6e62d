"""What every dashboard page shares: who is signed in, the CSRF check, rendering, headers.

Security model: only a ``POST`` with a valid CSRF token changes anything. :meth:`Site.page`
wraps every page: it finds the viewer (a session in the key store, or the host app's
``identify=``), refuses any method but ``GET``/``HEAD`` whose form lacks the viewer's token
(before the handler runs), and sets ``Cache-Control: no-store``, a nonce-based CSP and
``X-Frame-Options`` on every answer. Handlers act only on ``POST`` (see the page modules);
``HEAD`` is answered as ``GET``. The client address and the request's scheme are resolved
with ``trusted_proxies`` exactly as the middleware resolves them, so cookies are ``Secure``
behind a TLS-terminating proxy too.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from .._accounts import OPERATOR_ADMIN, Accounts, DashboardUser
from .._client_ip import IPAddress, parse_ip, parse_networks, resolve_client_ip
from .._manager import KeyManager
from .._models import AuditEvent, KeyRecord
from ..stores._errors import StoreUnavailable
from ._security import csrf_matches
from ._sessions import StoreSessions
from ._users import IdentityCsrf, Viewer

__all__ = [
    "COOKIE",
    "SAFE_METHODS",
    "AuditReader",
    "Handler",
    "Identify",
    "Site",
    "csrf_refusal",
    "get_key",
    "harden",
    "show_once",
    "viewer_of",
]

COOKIE = "nowramp_dashboard"
SAFE_METHODS = frozenset({"GET", "HEAD"})
"""Methods that never change anything, on any route."""
_TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

Handler = Callable[[Request], Awaitable[Response]]
Identify = Callable[[Request], "DashboardUser | Awaitable[DashboardUser | None] | None"]


class AuditReader(Protocol):
    """What the audit page needs: ``MemoryAuditLog`` and ``RedisStreamAuditLog`` both have it.
    ``project_ids`` narrows the read to those projects' events (a partner's page), read from
    a per-project index so its cost does not grow with other projects' events."""

    def read(
        self,
        *,
        key_id: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        project_ids: Iterable[str] | None = None,
    ) -> list[AuditEvent]:
        """Events newest first."""


class Site:
    """The state and helpers every page of one dashboard shares."""

    def __init__(
        self,
        manager: KeyManager,
        *,
        audit: AuditReader | None,
        identify: Identify | None,
        admin_password: str | None,
        secret_key: bytes | None,
        session_idle: timedelta,
        session_max_age: timedelta,
        secure_cookies: bool | None,
        trusted_proxies: Iterable[str],
    ) -> None:
        self.manager = manager
        self.audit = audit
        self.identify = identify
        self.admin_password = admin_password
        store: Any = manager.store
        self.store = store
        self.accounts = Accounts(store) if identify is None else None
        self.sessions = StoreSessions(
            store, idle=session_idle.total_seconds(), absolute=session_max_age.total_seconds()
        )
        self.session_max_age = session_max_age
        self.csrf = IdentityCsrf(secret_key)
        self.secure_cookies = secure_cookies
        self.trusted_proxies = parse_networks(trusted_proxies)

    # -- the request as seen through trusted proxies ------------------------------------------
    def _trusted_peer(self, request: Request) -> bool:
        peer = parse_ip(request.client.host if request.client else None)
        trusted = self.trusted_proxies
        return peer is not None and bool(trusted.masks) and peer in trusted

    def client_address(self, request: Request) -> IPAddress | None:
        """The client, resolved with ``trusted_proxies`` as the middleware resolves it."""
        forwarded = request.headers.getlist("x-forwarded-for")
        peer = request.client.host if request.client else None
        return resolve_client_ip(peer, forwarded, self.trusted_proxies)

    def cookie_secure(self, request: Request) -> bool:
        """Mark cookies ``Secure``: as configured, else when the request came over https
        (directly, or as a trusted proxy's ``X-Forwarded-Proto`` says)."""
        if self.secure_cookies is not None:
            return self.secure_cookies
        if request.url.scheme == "https":
            return True
        if not self._trusted_peer(request):
            return False
        protos = ",".join(request.headers.getlist("x-forwarded-proto")).split(",")
        return protos[-1].strip().lower() == "https"  # the nearest proxy's word

    # -- rendering ----------------------------------------------------------------------------
    @staticmethod
    def base(request: Request) -> str:
        """Where the dashboard is mounted (its URL prefix)."""
        root: str = request.scope.get("root_path", "")
        return root

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> Response:
        """A page from ``templates/``, with the viewer, the mount point and the CSP nonce."""
        context.update(
            base=self.base(request),
            session=getattr(request.state, "viewer", None),
            nonce=request.state.nonce,
        )
        return _TEMPLATES.TemplateResponse(request, template, context, status_code=status)

    def error(self, request: Request, status: int, message: str) -> Response:
        """The error page."""
        return self.render(request, "error.html", status, message=message)

    def unreachable(self, request: Request) -> Response:
        """The page for a key store that cannot be reached (503, never a 500)."""
        return self.error(request, 503, "The key store is unreachable. Try again shortly.")

    # -- who is signed in ---------------------------------------------------------------------
    async def who(self, request: Request) -> tuple[Viewer | None, str | None]:
        """The viewer, and a new CSRF cookie value to set (``identify=`` mode)."""
        if self.identify is None:
            return await run_in_threadpool(self._session_viewer, request.cookies.get(COOKIE)), None
        identify = self.identify
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
        token, fresh = self.csrf.token_for(user, request.cookies.get(IdentityCsrf.cookie))
        return Viewer(user, token, signs_out=False), token if fresh else None

    def _session_viewer(self, cookie: str | None) -> Viewer | None:
        session = self.sessions.find(cookie)
        if session is None:
            return None
        if session.user.id != OPERATOR_ADMIN.id and self.accounts is not None:
            # A disabled or removed account, or one whose password changed since this
            # session signed in, is signed out at its next request on any instance.
            epoch = self.accounts.session_epoch(session.user.id)
            if epoch is None or not csrf_matches(epoch, session.account_epoch):
                self.sessions.end(cookie)
                return None
        return Viewer(session.user, session.csrf_token, signs_out=True)

    def _token_ok(self, request: Request, viewer: Viewer, presented: object) -> bool:
        if self.identify is None:
            return csrf_matches(viewer.csrf_token, presented)
        return self.csrf.check(viewer.user, request.cookies.get(IdentityCsrf.cookie), presented)

    def page(self, handler: Handler) -> Handler:
        """Wrap a page: signed-in users only, the CSRF token checked on every method but
        ``GET``/``HEAD`` before ``handler`` runs, hardened headers on every answer."""

        async def guarded(request: Request) -> Response:
            nonce = request.state.nonce = secrets.token_urlsafe(12)
            try:
                viewer, new_cookie = await self.who(request)
            except StoreUnavailable:  # sessions and accounts live in the key store
                return harden(self.unreachable(request), nonce)
            if viewer is None:
                if self.identify is not None:
                    return harden(self.error(request, 401, "Not signed in."), nonce)
                return harden(RedirectResponse(self.base(request) + "/login", 303), nonce)
            request.state.viewer = viewer
            if request.method not in SAFE_METHODS:
                form = await request.form()
                if not self._token_ok(request, viewer, form.get("csrf_token")):
                    return harden(csrf_refusal(), nonce)
            try:
                response = await handler(request)
            except StoreUnavailable:
                response = self.unreachable(request)
            if new_cookie is not None:
                self.set_cookie(request, response, IdentityCsrf.cookie, new_cookie)
            return harden(response, nonce)

        return guarded

    def set_cookie(
        self,
        request: Request,
        response: Response,
        name: str,
        value: str,
        max_age: int | None = None,
    ) -> None:
        """Set a dashboard cookie: HttpOnly, SameSite=Strict, scoped to the mount point,
        ``Secure`` as :meth:`cookie_secure` decides."""
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=self.base(request) or "/",
            httponly=True,
            samesite="strict",
            secure=self.cookie_secure(request),
        )


def csrf_refusal() -> Response:
    """The answer to a state-changing request without a valid CSRF token (nothing changed)."""
    return Response("Invalid or missing CSRF token.", 403, media_type="text/plain")


def viewer_of(request: Request) -> DashboardUser:
    """The signed-in user of a page request (set by :meth:`Site.page`)."""
    viewer: Viewer = request.state.viewer
    return viewer.user


def harden(response: Response, nonce: str) -> Response:
    """The security headers of every page (a CSP allowing only this page's nonce)."""
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def show_once(response: Response) -> Response:
    """An answer holding a new secret: never cached anywhere."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def get_key(manager: Any, key_id: str) -> KeyRecord | None:
    """The key, or ``None`` when unknown."""
    try:
        record: KeyRecord = manager.get(key_id)
    except KeyError:
        return None
    return record
