"""Litestar adapter: the ASGI middleware (as Litestar's ``DefineMiddleware`` takes it) and
``scopes_guard`` for handlers, controllers and routers.

Example::

    from litestar import Litestar, get
    from litestar.middleware import DefineMiddleware
    from nowramp_auth.litestar import ApiKeyMiddleware, scopes_guard

    @get("/quotes", guards=[scopes_guard("quotes:read")])
    async def quotes() -> dict[str, list[str]]: ...

    app = Litestar([quotes], middleware=[DefineMiddleware(ApiKeyMiddleware, authenticator=auth)])

Security model: the middleware is :class:`nowramp_auth.starlette.ApiKeyMiddleware` (every
decision is the core's); Litestar routes a request before its middleware runs, so the
middleware reads the scopes the handler's guards recorded (handler, controller, router and
app guards alike) and checks them with the key, before the one limiter call of a
rate-limited key: a request refused for scopes gets the standard 403 JSON and spends no
quota. ``request.user`` is the :class:`~nowramp_auth.Principal`, ``request.auth`` its
read-only credentials. Litestar answers a path with no route (404) before any middleware
runs, so the widget-session endpoint needs a route of its own: add
:func:`widget_sessions_route` to the app's handlers (the middleware answers its ``POST``).
:func:`document_auth` puts the ``X-API-Key`` scheme and the
401/403/429/503 refusals into the app's OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import ASGIRouteHandler, asgi
from litestar.handlers.base import BaseRouteHandler
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from ._context import check_scopes
from ._guards import required_scopes
from ._http import PublicPaths
from ._models import Principal
from ._openapi import document_refusals
from ._route_scopes import EMPTY, Resolved, combined, record_scopes, recorded_scopes
from .starlette import ApiKeyMiddleware as _StarletteMiddleware

__all__ = [
    "ApiKeyMiddleware",
    "document_auth",
    "litestar_route_scopes",
    "scopes_guard",
    "widget_sessions_route",
]

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


class ApiKeyMiddleware(_StarletteMiddleware):
    """Authenticate every HTTP and WebSocket request of a Litestar app (see the module
    docstring); the parameters are :class:`nowramp_auth.starlette.ApiKeyMiddleware`'s."""

    @staticmethod
    def _route_resolver(app: Any) -> Callable[[Any], Resolved]:
        return litestar_route_scopes


def litestar_route_scopes(scope: Mapping[str, Any]) -> Resolved:
    """The scopes the guards of a Litestar request's handler require (the handler is in the
    scope: Litestar routes before its middleware runs)."""
    handler = scope.get("route_handler")
    if handler is None:
        return EMPTY, False
    guards = handler.resolve_guards()  # sync guards come wrapped: their .func is the guard
    return combined(recorded_scopes(getattr(guard, "func", guard)) for guard in guards), False


def scopes_guard(*scopes: str, cost: int = 1) -> Guard:
    """A Litestar guard requiring every one of ``scopes``. With :class:`ApiKeyMiddleware`
    the middleware has already refused a request without them (standard JSON, audited, no
    quota spent); alone, it raises Litestar's 401/403.
    ``cost``: the credits one accepted request of the route spends from a key with credits
    (default 1), charged at the same commit point.
    """
    required = required_scopes(scopes, cost)

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        # A coroutine function: Litestar calls it on the event loop (a plain function would
        # be run on a worker thread for every request).
        principal = connection.scope.get("user")
        if isinstance(principal, Principal) and required <= principal.scopes:
            return
        error = check_scopes(required)
        if error is None:  # pragma: no cover - the principal above would have passed
            return
        if not isinstance(principal, Principal):
            raise NotAuthorizedException(detail=error.message)
        raise PermissionDeniedException(detail=error.message)

    record_scopes(guard, required)
    return guard


def document_auth(app: Litestar, *, public_paths: Iterable[str] | None = None) -> None:
    """Make ``app``'s OpenAPI document say what the middleware does: every operation outside
    the public paths declares the ``ApiKeyAuth`` scheme (``X-API-Key`` header) and answers
    401, 403, 429 and 503 with an ``ErrorResponse`` body (``error.code`` an enum of the
    codes, ``message``, ``solution``, optional ``required_scopes``), as
    :func:`nowramp_auth.fastapi.document_auth` does for FastAPI. ``public_paths`` defaults to
    the list given to the app's :class:`ApiKeyMiddleware`. Call it once the routes are
    registered.

    Example::

        app = Litestar(handlers, middleware=[DefineMiddleware(ApiKeyMiddleware, ...)])
        document_auth(app)

    Raises:
        ValueError: the app has no OpenAPI document (``openapi_config=None``).
    """
    from litestar._openapi.plugin import OpenAPIPlugin  # where Litestar 2 keeps the document

    if app.openapi_config is None:
        raise ValueError("the app has no OpenAPI document (openapi_config is None)")
    if public_paths is None:
        public_paths = _middleware_public_paths(app)
    public = PublicPaths(public_paths)
    # Litestar builds the JSON document once and serves that same dict from then on (every
    # render plugin included): documenting it in place documents every view of it.
    schema = app.plugins.get(OpenAPIPlugin).provide_openapi_schema()
    document_refusals(schema, public.__contains__)


def _middleware_public_paths(app: Litestar) -> list[str]:
    for entry in app.middleware:
        middleware = getattr(entry, "middleware", entry)
        if isinstance(middleware, type) and issubclass(middleware, _StarletteMiddleware):
            return list(getattr(entry, "kwargs", {}).get("public_paths", ()))
    return []


def widget_sessions_route(path: str = "/widget/sessions") -> ASGIRouteHandler:
    """A route for the widget-session endpoint at ``path`` (the middleware's
    ``widget_sessions_path``): Litestar only runs middleware for a path it can route, and the
    middleware answers ``POST`` there itself. Other methods get 405.

    Example::

        app = Litestar([quotes, widget_sessions_route()], middleware=[...])
    """

    async def widget_sessions(scope: Scope, receive: Receive, send: Send) -> None:
        # Reached only by a method other than POST (the middleware answers POST).
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 405,
            "headers": [(b"allow", b"POST"), (b"content-type", b"text/plain; charset=utf-8")],
        }
        body: HTTPResponseBodyEvent = {
            "type": "http.response.body",
            "body": b"Method Not Allowed",
            "more_body": False,
        }
        await send(start)
        await send(body)

    # copy_scope=False: it reads nothing from the scope, so there is nothing to copy.
    route = asgi(path, is_mount=False, copy_scope=False, name="nowramp_widget_sessions")
    return route(widget_sessions)
