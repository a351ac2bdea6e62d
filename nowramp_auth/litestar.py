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
read-only credentials.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from ._context import check_scopes
from ._guards import required_scopes
from ._models import Principal
from ._route_scopes import EMPTY, Resolved, record_scopes, recorded_scopes
from .starlette import ApiKeyMiddleware as _StarletteMiddleware

__all__ = ["ApiKeyMiddleware", "litestar_route_scopes", "scopes_guard"]

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
    needed: set[str] = set()
    for guard in handler.resolve_guards():
        needed |= recorded_scopes(getattr(guard, "func", guard))  # sync guards come wrapped
    return frozenset(needed), False


def scopes_guard(*scopes: str) -> Guard:
    """A Litestar guard requiring every one of ``scopes``. With :class:`ApiKeyMiddleware`
    the middleware has already refused a request without them (standard JSON, audited, no
    quota spent); alone, it raises Litestar's 401/403."""
    required = required_scopes(scopes)

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
