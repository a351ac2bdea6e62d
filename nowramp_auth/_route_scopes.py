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
    "Needs",
    "Resolved",
    "RouteScopeCache",
    "asgi_host",
    "combined",
    "cost_of",
    "flask_route_scopes",
    "record_scopes",
    "recorded_scopes",
    "starlette_route_scopes",
    "wsgi_host",
]

SCOPES_ATTRIBUTE = "__nowramp_scopes__"
EMPTY: frozenset[str] = frozenset()
_MAX_ROUTES = 4096
R = TypeVar("R")


Resolved = tuple[frozenset[str], bool]
"""A route's scopes, and whether the answer varies with more than (method, path): the
``Host`` header (Starlette ``Host`` routes, werkzeug host matching) or a per-request
urlconf (Django)."""


class RouteScopeCache(Generic[R]):
    """The scopes per ``(method, path)``, resolved once by ``resolve(request)`` (a router
    lookup) and bounded. Hot paths read :attr:`known` directly and call :meth:`lookup` on a
    miss.

    An answer that depended on the request's host (or urlconf) is never put in :attr:`known`:
    it is kept per ``(method, variant_of(request), path)`` instead, so one host's route
    cannot lend its scopes to another host's request of the same path."""

    __slots__ = ("_resolve", "_variant_of", "known", "varying")

    def __init__(self, resolve: Callable[[R], Resolved], variant_of: Callable[[R], str]) -> None:
        self._resolve = resolve
        self._variant_of = variant_of
        self.known: dict[tuple[str, str], frozenset[str]] = {}
        self.varying: dict[tuple[str, str, str], frozenset[str]] = {}

    def lookup(self, method: str, path: str, request: R) -> frozenset[str]:
        """The scopes the route of ``request`` requires."""
        scopes = self.known.get((method, path))
        if scopes is not None:
            return scopes
        if self.varying:
            variant = (method, self._variant_of(request), path)
            scopes = self.varying.get(variant)
            if scopes is not None:
                return scopes
        scopes, varies = self._resolve(request)
        if varies:
            table: dict[Any, frozenset[str]] = self.varying
            key: Any = (method, self._variant_of(request), path)
        else:
            table, key = self.known, (method, path)
        if len(table) >= _MAX_ROUTES:
            table.clear()
        table[key] = scopes
        return scopes


class Needs(frozenset[str]):
    """The scopes a route requires, and what one of its requests costs in credits (``cost``,
    given to a scope guard: ``require_scopes("quotes:write", cost=5)``). A frozenset, so
    every scope check reads it as the scopes."""

    __slots__ = ("cost",)
    cost: int

    def __new__(cls, scopes: Iterable[str] = (), cost: int = 1) -> Needs:
        needs = super().__new__(cls, scopes)
        needs.cost = cost
        return needs


def cost_of(required: Iterable[str]) -> int:
    """The credits a request of a route with these needs costs (1 unless declared)."""
    cost: int = getattr(required, "cost", 1)
    return cost


def combined(parts: Iterable[frozenset[str]]) -> frozenset[str]:
    """Every scope of ``parts`` (the guards of one route); the highest cost any declares."""
    parts = list(parts)
    scopes = frozenset().union(*parts)
    cost = max((cost_of(part) for part in parts), default=1)
    return Needs(scopes, cost) if cost != 1 else scopes


def record_scopes(target: Any, scopes: frozenset[str]) -> None:
    """Note on a guarded endpoint or dependency the scopes it requires."""
    setattr(target, SCOPES_ATTRIBUTE, scopes)


def recorded_scopes(target: Any) -> frozenset[str]:
    """The scopes recorded on ``target`` (none when it records none)."""
    scopes = getattr(target, SCOPES_ATTRIBUTE, None)
    return scopes if isinstance(scopes, frozenset) else EMPTY


def starlette_route_scopes(scope: Mapping[str, Any]) -> Resolved:
    """The scopes the route of an ASGI request requires, found with the app's own router
    (``scope["app"]``, set by Starlette and FastAPI); none when it cannot be resolved. The
    answer varies by host when a ``Host`` route was consulted before the match."""
    router = getattr(scope.get("app"), "router", None)
    seen_host: list[bool] = []
    try:
        scopes = _in_routes(getattr(router, "routes", ()), scope, seen_host)
    except Exception:  # a router that cannot answer: the guards still run downstream
        return EMPTY, True
    return scopes, bool(seen_host)


def asgi_host(scope: Mapping[str, Any]) -> str:
    """The ``Host`` header of an ASGI request ("" when absent)."""
    for name, value in scope.get("headers", ()):
        if name == b"host":
            return str(value.decode("latin-1"))
    return ""


def _in_routes(
    routes: Iterable[Any], scope: Mapping[str, Any], seen_host: list[bool]
) -> frozenset[str]:
    from starlette.routing import Host, Match, Mount

    for route in routes:
        if isinstance(route, Host):
            seen_host.append(True)
        match, child = route.matches(scope)
        if match is not Match.FULL:
            continue
        if isinstance(route, Mount | Host):
            inner: Iterable[Any] | None = getattr(route.app, "routes", None)
            if inner is None:
                inner = getattr(getattr(route.app, "router", None), "routes", ())
            return _in_routes(inner or (), {**scope, **child}, seen_host)
        return _endpoint_scopes(child.get("endpoint"), scope, getattr(route, "dependant", None))
    return EMPTY


def _endpoint_scopes(endpoint: Any, scope: Mapping[str, Any], dependant: Any) -> frozenset[str]:
    needed = [recorded_scopes(endpoint)]
    if isinstance(endpoint, type):  # an HTTPEndpoint: the method's own guard
        method = scope.get("method", "GET").lower()
        attribute = "head" if method == "head" else method
        needed.append(recorded_scopes(getattr(endpoint, attribute, None)))
    pending = list(getattr(dependant, "dependencies", ()))  # FastAPI's Depends(...) tree
    while pending:
        dependency = pending.pop()
        needed.append(recorded_scopes(getattr(dependency, "call", None)))
        pending.extend(getattr(dependency, "dependencies", ()))
    return combined(needed)


def flask_route_scopes(wsgi_app: Any, environ: Mapping[str, Any]) -> Resolved:
    """The scopes the view of a WSGI request requires, when ``wsgi_app`` is a Flask app's
    ``wsgi_app`` (its ``url_map`` finds the view); none otherwise. The answer varies by host
    when the map matches hosts or subdomains."""
    flask_app = getattr(wsgi_app, "__self__", None)
    url_map = getattr(flask_app, "url_map", None)
    views = getattr(flask_app, "view_functions", None)
    if url_map is None or views is None:
        return EMPTY, False
    varies = bool(getattr(url_map, "host_matching", False)) or bool(
        getattr(flask_app, "subdomain_matching", False)
    )
    try:
        endpoint, _ = url_map.bind_to_environ(environ).match()
    except Exception:  # 404, 405, a redirect: no view runs
        return EMPTY, varies
    return recorded_scopes(views.get(endpoint)), varies


def wsgi_host(environ: Mapping[str, Any]) -> str:
    """The host a WSGI request names (``HTTP_HOST``, else ``SERVER_NAME``)."""
    return str(environ.get("HTTP_HOST") or environ.get("SERVER_NAME") or "")
