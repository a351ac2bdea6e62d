"""WSGI adapter (Flask, Django, any werkzeug app): a middleware and ``require_scopes``.

Security model: every request is authenticated unless its path is listed in ``public_paths``.
WSGI servers join repeated header fields with a comma, so a comma in ``X-API-Key`` is refused
(the core treats it as several keys). The middleware only translates between WSGI and the
core (:class:`~nowramp_auth.Authenticator`); every decision is made there.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from werkzeug.wrappers import Request, Response

from ._authenticator import Authenticator
from ._context import RequestContext, check_scopes, request_var
from ._errors import AuthError
from ._http import MAX_WIDGET_BODY, PublicPaths, parse_session_request, session_created
from ._scopes import check_scope_name

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
        if not isinstance(authenticator, Authenticator):
            raise TypeError("authenticator must be a nowramp_auth.Authenticator")
        if widget_sessions_path is not None and not str(widget_sessions_path).startswith("/"):
            raise ValueError(f"widget_sessions_path must start with '/': {widget_sessions_path!r}")
        self.app = app
        self.authenticator = authenticator
        self.public_paths = PublicPaths(public_paths)
        self.widget_sessions_path = widget_sessions_path

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # The hot path reads the environ directly (a werkzeug Request per call costs more
        # than the whole authentication); werkzeug builds every response.
        path = _path(environ)
        method = environ.get("REQUEST_METHOD", "GET")
        if path == self.widget_sessions_path and method == "POST":
            return self._widget_session(Request(environ))(environ, start_response)
        if path in self.public_paths:
            return self.app(environ, start_response)
        auth = self.authenticator
        forwarded = environ.get("HTTP_X_FORWARDED_FOR")
        client_ip = auth.resolve_client_ip(environ.get("REMOTE_ADDR"), _values(forwarded))
        try:
            principal = auth.authenticate_request(
                _values(environ.get("HTTP_X_API_KEY")),
                _values(environ.get("HTTP_AUTHORIZATION")),
                client_ip=client_ip,
                method=method,
                path=path,
            )
        except AuthError as error:
            return _error_response(error)(environ, start_response)
        environ[PRINCIPAL_ENVIRON_KEY] = principal
        extra = principal.rate_limit.headers() if principal.rate_limit is not None else []

        def start_with_headers(status: str, response_headers: Any, exc_info: Any = None) -> Any:
            return start_response(status, [*response_headers, *extra], exc_info)

        token = request_var.set(RequestContext(principal, auth, client_ip, method, path))
        try:
            return self.app(environ, start_with_headers if extra else start_response)
        finally:
            request_var.reset(token)

    def _widget_session(self, request: Request) -> Response:
        auth = self.authenticator
        ip = auth.resolve_client_ip(request.remote_addr, request.headers.getlist("X-Forwarded-For"))
        api_keys = request.headers.getlist("X-API-Key")
        where: dict[str, Any] = {"client_ip": ip, "method": "POST", "path": request.path}
        try:
            body = request.stream.read(MAX_WIDGET_BODY + 1)
            try:
                body_request = parse_session_request(body)
            except AuthError:
                # Only an authenticated caller learns what is wrong with its body.
                auth.authenticate_request(api_keys, **where)
                raise
            issued = auth.create_session(
                api_keys,
                project_id=body_request.project_id,
                customer_id=body_request.customer_id,
                scopes=body_request.scopes,
                **where,
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
    try:
        return raw.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return raw


def _error_response(error: AuthError) -> Response:
    return Response(error.body(), error.status_code, error.headers())


def require_scopes(*scopes: str) -> Callable[[F], F]:
    """Require every one of ``scopes`` on a Flask (or werkzeug) view, sync or async.

    A refusal is the standard ``INSUFFICIENT_PERMISSIONS`` JSON response (audited).

    Example::

        @app.get("/quotes")
        @require_scopes("quotes:read")
        def quotes(): ...
    """
    if not scopes:
        raise ValueError("require_scopes needs at least one scope")
    required = frozenset(check_scope_name(s) for s in scopes)

    def decorator(view: F) -> F:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                error = check_scopes(required)
                if error is not None:
                    return _error_response(error)
                return await view(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            error = check_scopes(required)
            if error is not None:
                return _error_response(error)
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorator
