"""``create_dashboard``: the dashboard's routes, composed from its page modules.

Pages: sign-in (:mod:`._signin_pages`), API keys (:mod:`._key_pages`), audit logs
(:mod:`._audit_pages`); what they share (viewer, CSRF check, rendering, headers) is
:mod:`._site`. Security model: see those modules; in short, only a ``POST`` with a valid CSRF
token changes anything, on every route, in both sign-in modes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .._accounts import MIN_PASSWORD_LENGTH
from .._manager import KeyManager
from ._audit_pages import AuditPages
from ._headers import SecurityHeaders
from ._key_pages import KeyPages
from ._signin_pages import SignInPages
from ._site import AuditReader, Identify, Site
from ._usage_pages import ProjectPages

__all__ = ["create_dashboard"]


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
    trusted_proxies: Iterable[str] = (),
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
        secure_cookies: mark cookies ``Secure`` (default: when the request came over https,
            directly or as a trusted proxy's ``X-Forwarded-Proto`` says).
        trusted_proxies: CIDRs of proxies in front of the dashboard, as given to the
            :class:`~nowramp_auth.Authenticator`: the sign-in throttle counts per client
            address resolved through them (IPv6 by /64), and their ``X-Forwarded-Proto``
            decides ``Secure`` cookies.
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
    if isinstance(trusted_proxies, str):
        raise TypeError("trusted_proxies must be a list of CIDRs, not one string")
    site = Site(
        manager,
        audit=audit,
        identify=identify,
        admin_password=admin_password,
        secret_key=secret_key.encode() if isinstance(secret_key, str) else secret_key,
        session_idle=session_idle,
        session_max_age=session_max_age,
        secure_cookies=secure_cookies,
        trusted_proxies=list(trusted_proxies),
    )
    keys, audit_pages, projects = KeyPages(site), AuditPages(site), ProjectPages(site)

    async def home(request: Request) -> Response:
        return RedirectResponse(site.base(request) + "/keys", 303)

    routes = [Route("/", home)]
    if identify is None:  # the host app signs users in and out in identify= mode
        sign_in = SignInPages(site)
        routes += [
            Route("/login", sign_in.login, methods=["GET", "POST"]),
            Route("/logout", site.page(sign_in.logout), methods=["POST"]),
        ]
    routes += [
        Route("/keys", site.page(keys.keys)),
        Route("/keys", site.page(keys.create), methods=["POST"]),
        Route("/keys/{key_id}", site.page(keys.key_page)),
        Route("/keys/{key_id}/rotate", site.page(keys.rotate), methods=["GET", "POST"]),
        Route("/keys/{key_id}/revoke", site.page(keys.revoke), methods=["GET", "POST"]),
        Route("/keys/{key_id}/credits", site.page(projects.add_credits), methods=["POST"]),
        Route("/projects", site.page(projects.projects)),
        Route("/projects/limits", site.page(projects.set_limits), methods=["POST"]),
        Route("/audit", site.page(audit_pages.page)),
        Route("/audit.csv", site.page(audit_pages.csv)),
    ]
    # Answers no page renders (404, 405, redirects) get the same headers as pages.
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])
