"""WSGI adapter (Flask, Django, any werkzeug app): a middleware and ``require_scopes``.

Security model: every request is authenticated unless its path is listed in ``public_paths``.
WSGI servers join repeated header fields with a comma, so a comma in ``X-API-Key`` is refused
(the core treats it as several keys). The middleware only translates between WSGI and the
core (:class:`~nowramp_auth.Authenticator`); every decision is made there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from werkzeug.wrappers import Request, Response

from ._authenticator import Authenticator
from ._client_ip import IPAddress
from ._context import request_var
from ._errors import AuthError
from ._fast_path import LimitedKey
from ._guards import middleware_options, required_scopes, scope_guard
from ._http import MAX_WIDGET_BODY, create_widget_session, session_created
from ._models import Principal
from ._route_scopes import RouteScopeCache, flask_route_scopes, wsgi_host

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["PRINCIPAL_ENVIRON_KEY", "ApiKeyMiddleware", "require_scopes"]

F = TypeVar("F", bound=Callable[..., Any])
PRINCIPAL_ENVIRON_KEY = "nowramp_auth.principal"


class ApiKeyMiddleware:
    """Authenticate every WSGI request with an API key or widget session.

    Parameters:
        app: the WSGI app to protect (e.g. ``flask_app.wsgi_app``).
        authenticator: the :class:`~nowramp_auth.Authenticator`.
        public_paths: exact paths, or prefixes ending in ``*``, served without a credential.
        widget_sessions_path: where ``POST`` creates widget sessions (``None``: off).

    Puts the principal in ``environ["nowramp_auth.principal"]`` and
    :func:`~nowramp_auth.current_principal`.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        authenticator: Authenticator,
        public_paths: Iterable[str] = (),
        widget_sessions_path: str | None = "/widget/sessions",
    ) -> None:
        self.public_paths = middleware_options(authenticator, public_paths, widget_sessions_path)
        self.app = app
        self.authenticator = authenticator
        self.widget_sessions_path = widget_sessions_path
        # What the hot path needs, computed once (see __call__).
        general = set(self.public_paths.exact)
        if widget_sessions_path is not None:
            general.add(widget_sessions_path)
        self._general_paths = frozenset(general)
        self._general_prefixes = self.public_paths.prefixes
        self._trusting = bool(authenticator.trusted_proxies)
        self._accept = authenticator.accept_verified
        self._route_scopes: RouteScopeCache[WSGIEnvironment] = RouteScopeCache(
            functools.partial(flask_route_scopes, app), wsgi_host
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # The hot path: a request carrying one X-API-Key that the authenticator has verified
        # before (a comma means several joined fields: the general path refuses). Per
        # request it may: read four environ entries, call the authenticator's fast path
        # (budget in nowramp_auth._fast_path), store the principal, set and reset one
        # context variable. Anything else goes to the general path below.
        api_key = environ.get("HTTP_X_API_KEY")
        if api_key and (self._trusting is False or "HTTP_X_FORWARDED_FOR" not in environ):
            path = environ.get("PATH_INFO") or "/"
            if not path.isascii():
                path = _path(environ)
            if path not in self._general_paths and not (
                self._general_prefixes and path.startswith(self._general_prefixes)
            ):
                peer = environ.get("REMOTE_ADDR")
                method = environ.get("REQUEST_METHOD", "GET")
                # The view's recorded scopes too, so a scope refusal is not counted.
                route = self._route_scopes.known.get((method, path))
                if route is None:
                    route = self._route_scopes.lookup(method, path, environ)
                try:
                    raw = api_key.encode("latin-1")
                except UnicodeEncodeError:  # not a PEP 3333 string: the general path decides
                    return self._general(environ, start_response)
                accept = self._accept  # called as a local (see VerifiedKeys.accept)
                principal = accept(raw, peer, route)
                if isinstance(principal, Principal):
                    environ[PRINCIPAL_ENVIRON_KEY] = principal
                    token = request_var.set((principal, self.authenticator, peer, method, path))
                    app = self.app
                    try:
                        return app(environ, start_response)
                    finally:
                        request_var.reset(token)
                if principal is not None:  # a LimitedKey: one limiter call first
                    return self._limited(
                        environ, start_response, principal, peer, method, path, route
                    )
                if "," not in api_key:
                    # Not seen before: a made-up key, or one no record matches, is refused
                    # here (see Authenticator.parse_presented); the rest takes the general path.
                    screened = self.authenticator.parse_presented(raw, peer, method, path)
                    if isinstance(screened, AuthError):
                        return _error_response(screened)(environ, start_response)
        return self._general(environ, start_response)

    def _general(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # Every case: public paths, widget sessions, bearer tokens, forwarding headers,
        # refusals, rate limits. A werkzeug Request per call would cost more than the whole
        # authentication, so the environ is read directly; werkzeug builds every response.
        path = _path(environ)
        method = environ.get("REQUEST_METHOD", "GET")
        if path == self.widget_sessions_path and method == "POST":
            return self._widget_session(Request(environ))(environ, start_response)
        if path in self.public_paths or (
            method == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ
        ):  # public, or a CORS preflight (no credential by design)
            return self.app(environ, start_response)
        auth = self.authenticator
        forwarded = environ.get("HTTP_X_FORWARDED_FOR")
        client_ip = auth.resolve_client_ip(environ.get("REMOTE_ADDR"), _values(forwarded))
        try:
            principal = auth.authenticate_request(
                _values(environ.get("HTTP_X_API_KEY")),
                _values(environ.get("HTTP_AUTHORIZATION")),
                client_ip=client_ip,
                required_scopes=self._route_scopes.lookup(method, path, environ),
                method=method,
                path=path,
            )
        except AuthError as error:
            return _error_response(error)(environ, start_response)
        return self._serve(environ, start_response, principal, client_ip, method, path)

    def _limited(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        key: LimitedKey,
        peer: str | None,
        method: str,
        path: str,
        route: frozenset[str],
    ) -> Iterable[bytes]:
        try:
            principal = self.authenticator.charge(
                key,
                client_ip=peer,
                required_scopes=route,
                method=method,
                path=path,
            )
        except AuthError as error:
            return _error_response(error)(environ, start_response)
        return self._serve(environ, start_response, principal, peer, method, path)

    def _serve(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        principal: Principal,
        client_ip: IPAddress | str | None,
        method: str,
        path: str,
    ) -> Iterable[bytes]:
        # An authenticated request of the general path: rate-limit headers on the response.
        auth = self.authenticator
        environ[PRINCIPAL_ENVIRON_KEY] = principal
        extra = principal.rate_limit.headers() if principal.rate_limit is not None else []

        def start_with_headers(status: str, response_headers: Any, exc_info: Any = None) -> Any:
            return start_response(status, [*response_headers, *extra], exc_info)

        token = request_var.set((principal, auth, client_ip, method, path))
        try:
            return self.app(environ, start_with_headers if extra else start_response)
        finally:
            request_var.reset(token)

    def _widget_session(self, request: Request) -> Response:
        auth = self.authenticator
        ip = auth.resolve_client_ip(request.remote_addr, request.headers.getlist("X-Forwarded-For"))
        try:
            body = request.stream.read(MAX_WIDGET_BODY + 1)
            issued = create_widget_session(
                auth, request.headers.getlist("X-API-Key"), body, client_ip=ip, path=request.path
            )
        except AuthError as error:
            return _error_response(error)
        status, headers, payload = session_created(issued)
        return Response(payload, status, headers)


def _values(value: str | None) -> list[str]:
    return [] if value is None else [value]


def _path(environ: WSGIEnvironment) -> str:
    # PEP 3333 carries the raw path as latin-1; undo that as werkzeug does.
    raw: str = environ.get("PATH_INFO", "") or "/"
    if raw.isascii():
        return raw
    try:
        return raw.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return raw


def _error_response(error: AuthError) -> Response:
    return Response(error.body(), error.status_code, error.headers())


def require_scopes(*scopes: str, cost: int = 1) -> Callable[[F], F]:
    """Require every one of ``scopes`` on a Flask (or werkzeug) view, sync or async.
    ``cost``: the credits one accepted request of the route spends from a key with credits
    (default 1), charged at the same commit point.

    A refusal is the standard ``INSUFFICIENT_PERMISSIONS`` JSON response (audited).

    Example::

        @app.get("/quotes")
        @require_scopes("quotes:read")
        def quotes(): ...
    """
    required = required_scopes(scopes, cost)

    def decorator(view: F) -> F:
        return cast(F, scope_guard(view, required, _error_response))

    return decorator
