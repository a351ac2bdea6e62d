"""Quart adapter: the ASGI middleware around ``app.asgi_app`` and ``require_scopes`` for Quart
views (async or sync).

Example::

    from quart import Quart
    from nowramp_auth.quart import ApiKeyMiddleware, require_scopes

    app = Quart(__name__)

    @app.get("/quotes")
    @require_scopes("quotes:read")
    async def quotes(): ...

    app.asgi_app = ApiKeyMiddleware(app.asgi_app, authenticator=auth, public_paths=["/health"])

Security model: the middleware is :class:`nowramp_auth.starlette.ApiKeyMiddleware`. It finds
the view of a request with the Quart app's own ``url_map`` and checks the scopes its
``require_scopes`` recorded with the key, before the one limiter call of a rate-limited key:
a request refused for scopes gets the standard 403 JSON and spends no quota. The principal is
:func:`~nowramp_auth.current_principal` (and ``scope["user"]``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from quart import Response

from ._errors import AuthError
from ._guards import required_scopes, scope_guard
from ._route_scopes import EMPTY, Resolved, recorded_scopes
from .starlette import ApiKeyMiddleware as _StarletteMiddleware

__all__ = ["ApiKeyMiddleware", "quart_route_scopes", "require_scopes"]

F = TypeVar("F", bound=Callable[..., Any])


class ApiKeyMiddleware(_StarletteMiddleware):
    """Authenticate every HTTP and WebSocket request of a Quart app: wrap ``app.asgi_app``
    (the parameters are :class:`nowramp_auth.starlette.ApiKeyMiddleware`'s)."""

    @staticmethod
    def _route_resolver(app: Any) -> Callable[[Any], Resolved]:
        return functools.partial(quart_route_scopes, app)


def quart_route_scopes(asgi_app: Any, scope: Mapping[str, Any]) -> Resolved:
    """The scopes the view of an ASGI request requires, when ``asgi_app`` is a Quart app's
    ``asgi_app`` (its ``url_map`` finds the view); none otherwise."""
    quart_app = getattr(asgi_app, "__self__", None)
    url_map = getattr(quart_app, "url_map", None)
    views = getattr(quart_app, "view_functions", None)
    if url_map is None or views is None:
        return EMPTY, False
    host = ""
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = value.decode("latin-1")
    varies = bool(getattr(url_map, "host_matching", False))
    try:
        adapter = url_map.bind(
            host,
            script_name=scope.get("root_path") or None,
            url_scheme=scope.get("scheme", "http"),
            default_method=scope.get("method", "GET"),
        )
        endpoint, _ = adapter.match(scope["path"], scope.get("method", "GET"))
    except Exception:  # 404, 405, a redirect: no view runs
        return EMPTY, varies
    return recorded_scopes(views.get(endpoint)), varies


def _error_response(error: AuthError) -> Response:
    return Response(error.body(), error.status_code, headers=dict(error.headers()))


def require_scopes(*scopes: str, cost: int = 1) -> Callable[[F], F]:
    """Require every one of ``scopes`` on a Quart view (``async def`` or plain ``def``).
    A refusal is the standard ``INSUFFICIENT_PERMISSIONS`` JSON (audited).
    ``cost``: the credits one accepted request of the route spends from a key with credits
    (default 1), charged at the same commit point.

    Example::

        @app.get("/quotes")
        @require_scopes("quotes:read")
        async def quotes(): ...
    """
    required = required_scopes(scopes, cost)

    def decorator(view: F) -> F:
        return cast(F, scope_guard(view, required, _error_response))

    return decorator
