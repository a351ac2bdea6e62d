"""The commit point of rate limits: which scopes the route of a request will require.

Only a request that passes every other check may use quota, route guards included. Guards
(``require_scopes`` of both adapters, FastAPI's ``scopes(...)`` dependency) record their
scopes on what they guard; before the one limiter call of a rate-limited key, the adapter
resolves the request's route with the framework's own router and checks those scopes, so a
request refused for scopes gets its 403 and spends nothing. Checks written inside a handler,
or Starlette's own ``@requires``, are not visible here: they run after the charge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

__all__ = [
    "EMPTY",
    "SCOPES_ATTRIBUTE",
    "RouteScopeCache",
    "record_scopes",
    "recorded_scopes",
    "starlette_route_scopes",
]

SCOPES_ATTRIBUTE = "__nowramp_scopes__"
EMPTY: frozenset[str] = frozenset()
_MAX_ROUTES = 4096
R = TypeVar("R")


class RouteScopeCache(Generic[R]):
    """The scopes per ``(method, path)``, resolved once by ``resolve(request)`` (a router
    lookup) and bounded. Hot paths read :attr:`known` directly and call :meth:`lookup` on a
    miss."""

    __slots__ = ("_resolve", "known")

    def __init__(self, resolve: Callable[[R], frozenset[str]]) -> None:
        self._resolve = resolve
        self.known: dict[tuple[str, str], frozenset[str]] = {}

    def lookup(self, method: str, path: str, request: R) -> frozenset[str]:
        """The scopes the route of ``request`` requires."""
        scopes = self.known.get((method, path))
        if scopes is None:
            scopes = self._resolve(request)
            if len(self.known) >= _MAX_ROUTES:
                self.known.clear()
            self.known[(method, path)] = scopes
        return scopes


def record_scopes(target: Any, scopes: frozenset[str]) -> None:
    """Note on a guarded endpoint or dependency the scopes it requires."""
    setattr(target, SCOPES_ATTRIBUTE, scopes)


def recorded_scopes(target: Any) -> frozenset[str]:
    """The scopes recorded on ``target`` (none when it records none)."""
    scopes = getattr(target, SCOPES_ATTRIBUTE, None)
    return scopes if isinstance(scopes, frozenset) else EMPTY


def starlette_route_scopes(scope: Mapping[str, Any]) -> frozenset[str]:
    """The scopes the route of an ASGI request requires, found with the app's own router
    (``scope["app"]``, set by Starlette and FastAPI); none when it cannot be resolved."""
    router = getattr(scope.get("app"), "router", None)
    try:
        return _in_routes(getattr(router, "routes", ()), scope)
    except Exception:  # a router that cannot answer: the guards still run downstream
        return EMPTY


def _in_routes(routes: Iterable[Any], scope: Mapping[str, Any]) -> frozenset[str]:
    from starlette.routing import Match, Mount

    for route in routes:
        match, child = route.matches(scope)
        if match is not Match.FULL:
            continue
        if isinstance(route, Mount):
            inner: Iterable[Any] | None = getattr(route.app, "routes", None)
            if inner is None:
                inner = getattr(getattr(route.app, "router", None), "routes", ())
            return _in_routes(inner or (), {**scope, **child})
        return _endpoint_scopes(child.get("endpoint"), scope, getattr(route, "dependant", None))
    return EMPTY


def _endpoint_scopes(endpoint: Any, scope: Mapping[str, Any], dependant: Any) -> frozenset[str]:
    needed = set(recorded_scopes(endpoint))
    if isinstance(endpoint, type):  # an HTTPEndpoint: the method's own guard
        method = scope.get("method", "GET").lower()
        needed |= recorded_scopes(getattr(endpoint, "head" if method == "head" else method, None))
    pending = list(getattr(dependant, "dependencies", ()))  # FastAPI's Depends(...) tree
    while pending:
        dependency = pending.pop()
        needed |= recorded_scopes(getattr(dependency, "call", None))
        pending.extend(getattr(dependency, "dependencies", ()))
    return frozenset(needed)


def flask_route_scopes(wsgi_app: Any, environ: Mapping[str, Any]) -> frozenset[str]:
    """The scopes the view of a WSGI request requires, when ``wsgi_app`` is a Flask app's
    ``wsgi_app`` (its ``url_map`` finds the view); none otherwise."""
    flask_app = getattr(wsgi_app, "__self__", None)
    url_map = getattr(flask_app, "url_map", None)
    views = getattr(flask_app, "view_functions", None)
    if url_map is None or views is None:
        return EMPTY
    try:
        endpoint, _ = url_map.bind_to_environ(environ).match()
    except Exception:  # 404, 405, a redirect: no view runs
        return EMPTY
    return recorded_scopes(views.get(endpoint))
