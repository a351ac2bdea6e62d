"""Sign-in and sign-out pages (the built-in accounts and the ``admin_password`` operator).

Security model: the sign-in form carries a CSRF token bound to a cookie set with the form
(double submit; HttpOnly, SameSite=Strict), so a cross-site form cannot sign a victim's
browser in as someone else (login CSRF): a ``POST`` without a matching pair signs nobody in.
Every attempt passes the throttle (:mod:`._throttle`) before any password is checked. A
session is a random cookie naming a record in the key store (:mod:`._sessions`).
"""

from __future__ import annotations

import re
import secrets

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .._accounts import OPERATOR_ADMIN, DashboardUser
from ..stores._errors import StoreUnavailable
from ._security import check_password, csrf_matches
from ._site import COOKIE, SAFE_METHODS, Site, csrf_refusal, harden
from ._throttle import SignInThrottle

__all__ = ["LOGIN_COOKIE", "SignInPages"]

LOGIN_COOKIE = "nowramp_dashboard_login"
"""The cookie half of the sign-in form's CSRF token (double submit)."""
_LOOKS_LIKE_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


class SignInPages:
    """``/login`` (``GET`` the form, ``POST`` sign in) and ``/logout``."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.throttle = SignInThrottle(site.store)

    async def login(self, request: Request) -> Response:
        """The sign-in form, or a sign-in attempt."""
        site = self.site
        nonce = request.state.nonce = secrets.token_urlsafe(12)
        if request.method in SAFE_METHODS:
            return harden(self._form(request), nonce)
        form = await request.form()
        cookie = request.cookies.get(LOGIN_COOKIE)
        if not cookie or not csrf_matches(cookie, form.get("csrf_token")):
            return harden(csrf_refusal(), nonce)
        username, password = form.get("username"), form.get("password")
        try:
            signed_in = await run_in_threadpool(self._attempt, request, username, password)
        except StoreUnavailable:  # the throttle, accounts and sessions live in the key store
            return harden(site.unreachable(request), nonce)
        if isinstance(signed_in, Response):
            return harden(signed_in, nonce)
        response = RedirectResponse(site.base(request) + "/keys", 303)
        max_age = int(site.session_max_age.total_seconds())
        site.set_cookie(request, response, COOKIE, signed_in, max_age)
        return harden(response, nonce)

    def _form(self, request: Request, status: int = 200, error: str | None = None) -> Response:
        # The form, with its CSRF token; the cookie half is kept while it looks like ours.
        token = request.cookies.get(LOGIN_COOKIE)
        fresh = not token or not _LOOKS_LIKE_TOKEN.fullmatch(token)
        if fresh:
            token = secrets.token_urlsafe(32)
        response = self.site.render(request, "login.html", status, error=error, csrf_token=token)
        if fresh and token is not None:
            self.site.set_cookie(request, response, LOGIN_COOKIE, token)
        return response

    def _attempt(self, request: Request, username: object, password: object) -> str | Response:
        """One throttled sign-in: the new session's cookie value, or the page to answer."""
        address = self.site.client_address(request)
        ticket = self.throttle.admit(address)  # counted before any password is checked
        if ticket is None:
            return self._form(request, 429, "Too many attempts. Wait a minute.")
        account = str(username or OPERATOR_ADMIN.id)[:200]
        wait = self.throttle.wait(account)
        if wait > 0:  # no password checked: the slot goes back
            self.throttle.release(address, ticket)
            seconds = max(1, round(wait))
            message = f"Too many failed sign-ins for this account. Try again in {seconds} s."
            return self._form(request, 429, message)
        signed_in = self._check(username, password)
        if signed_in is None:
            self.throttle.failed(account)
            return self._form(request, 401, "Wrong username or password.")
        self.throttle.release(address, ticket)  # only failures count
        self.throttle.succeeded(account)
        _, cookie = self.site.sessions.start(*signed_in)
        return cookie

    def _check(self, username: object, password: object) -> tuple[DashboardUser, str] | None:
        site = self.site
        if username in (None, "", OPERATOR_ADMIN.id):  # the operator shortcut
            ok = (
                site.admin_password is not None
                and isinstance(password, str)
                and check_password(site.admin_password, password)
            )
            return (OPERATOR_ADMIN, "") if ok else None
        if site.accounts is None:  # pragma: no cover - password mode always has accounts
            return None
        return site.accounts.sign_in(username, password)

    async def logout(self, request: Request) -> Response:
        """Sign out (a page: ``POST`` with the session's CSRF token)."""
        await run_in_threadpool(self.site.sessions.end, request.cookies.get(COOKIE))
        base = self.site.base(request)
        response = RedirectResponse(base + "/login", 303)
        response.delete_cookie(COOKIE, path=base or "/")
        return response
