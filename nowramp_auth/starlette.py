"""Starlette / FastAPI adapter: a pure ASGI middleware and the ``require_scopes`` decorator.

Security model: every HTTP and WebSocket request is authenticated unless its path is listed in
``public_paths``; a WebSocket is refused before it is accepted. The middleware only translates
between ASGI and the core (:class:`~nowramp_auth.Authenticator`); every decision is made there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar, cast

from starlette.authentication import AuthCredentials
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._asgi_io import read_body, read_headers, refuse, refuse_downstream, send_http
from ._authenticator import Authenticator
from ._client_ip import IPAddress
from ._context import request_var
from ._errors import AuthError
from ._guards import middleware_options, required_scopes, scope_guard
from ._http import create_widget_session_async, session_created
from ._models import Principal
from ._openapi import OPENAPI_PARAM, declare_api_key_security
from ._route_scopes import Resolved, RouteScopeCache, asgi_host, starlette_route_scopes

__all__ = ["ApiKeyMiddleware", "ScopeCredentials", "require_scopes"]

F = TypeVar("F", bound=Callable[..., Any])


class ScopeCredentials(AuthCredentials):
    """Starlette's ``AuthCredentials`` (so ``@requires`` works), read-only: one object serves
    every request of a key version, so no handler can change another request's scopes."""

    def __init__(self, scopes: Iterable[str]) -> None:
        object.__setattr__(self, "_scopes", tuple(sorted(scopes)))

    @property
    def scopes(self) -> tuple[str, ...]:  # type: ignore[override]
        """The scopes the request holds (a tuple: immutable)."""
        scopes: tuple[str, ...] = self.__dict__["_scopes"]
        return scopes

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("ScopeCredentials is read-only")

    def __repr__(self) -> str:
        return f"ScopeCredentials({list(self.scopes)!r})"


class ApiKeyMiddleware:
    """Authenticate every HTTP and WebSocket request with an API key or widget session.

    Parameters:
        app: the ASGI app to protect.
        authenticator: the :class:`~nowramp_auth.Authenticator`.
        public_paths: exact paths, or prefixes ending in ``*``, served without a credential.
        widget_sessions_path: where ``POST`` creates widget sessions (``None``: off).

    Sets ``scope["user"]`` (the :class:`~nowramp_auth.Principal`), ``scope["auth"]``
    (:class:`ScopeCredentials`, a read-only Starlette ``AuthCredentials``) and
    :func:`~nowramp_auth.current_principal`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator,
        public_paths: Iterable[str] = (),
        widget_sessions_path: str | None = "/widget/sessions",
    ) -> None:
        self.public_paths = middleware_options(authenticator, public_paths, widget_sessions_path)
        self.app = app
        self.authenticator = authenticator
        self.widget_sessions_path = widget_sessions_path
        # What the hot path needs, computed once: paths it leaves to the general path, the
        # forwarding header that matters only behind trusted proxies, the fast path itself.
        general = set(self.public_paths.exact)
        if widget_sessions_path is not None:
            general.add(widget_sessions_path)
        self._general_paths = frozenset(general)
        self._general_prefixes = self.public_paths.prefixes
        # Behind trusted proxies X-Forwarded-For can change the client, so its presence sends
        # a request to the general path; otherwise it is ignored.
        self._trusting = bool(authenticator.trusted_proxies)
        self._accept = authenticator.accept_verified
        self._scopes_cache: dict[frozenset[str], ScopeCredentials] = {}
        self._route_scopes: RouteScopeCache[Scope] = RouteScopeCache(
            self._route_resolver(app), asgi_host
        )
        self._known_routes = self._route_scopes.known  # the same dict, one lookup closer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The hot path: an HTTP request carrying one X-API-Key that the authenticator has
        # verified before. Per request it may: scan the headers once, call the
        # authenticator's fast path (budget in nowramp_auth._fast_path), store two values
        # in the scope, set and reset one context variable. Everything built from the key
        # (principal, credentials) was built once per record version. Anything else goes
        # to the general path below, which handles every case.
        if scope["type"] == "http":
            path = scope["path"]
            if path not in self._general_paths and not (
                self._general_prefixes and path.startswith(self._general_prefixes)
            ):
                api_key = None
                for name, value in scope["headers"]:
                    if name == b"x-api-key":
                        if api_key is not None:  # several: the general path refuses
                            api_key = None
                            break
                        api_key = value
                if api_key and not (self._trusting and self._forwarded(scope)):
                    # One non-empty X-API-Key, and no forwarding header that could change
                    # the client (read only when proxies are trusted).
                    client = scope.get("client")  # optional in ASGI
                    peer = client[0] if client else None
                    method = scope["method"]
                    # The route's recorded scopes too, so a scope refusal is not counted.
                    route = self._known_routes.get((method, path))
                    if route is None:
                        route = self._route_scopes.lookup(method, path, scope)
                    accept = self._accept  # called as a local (see VerifiedKeys.accept)
                    principal = accept(api_key, peer, route)
                    if isinstance(principal, Principal):
                        scope["user"] = principal
                        try:
                            scope["auth"] = self._scopes_cache[principal.scopes]
                        except KeyError:  # a scope set not seen yet
                            scope["auth"] = self._scope_credentials(principal.scopes)
                        token = request_var.set((principal, self.authenticator, peer, method, path))
                        app = self.app
                        try:
                            await app(scope, receive, send)
                        except AuthError as error:  # from a route dependency downstream
                            await refuse_downstream(scope, send, error)
                        finally:
                            request_var.reset(token)
                        return
                    if principal is None:  # not seen before: made up, or verify in full
                        await self._verify(scope, receive, send, api_key, peer, method, path, route)
                        return
                    # A LimitedKey: one limiter call, then served as the general path does
                    # (awaited here, not through _answer: one coroutine fewer per request).
                    try:
                        principal = await self.authenticator.charge_async(
                            principal,
                            client_ip=peer,
                            required_scopes=route,
                            method=method,
                            path=path,
                        )
                    except AuthError as error:
                        await refuse(scope, send, error)
                        return
                    await self._serve(scope, receive, send, principal, peer, method, path)
                    return
        await self._general(scope, receive, send)

    @staticmethod
    def _route_resolver(app: ASGIApp) -> Callable[[Scope], Resolved]:
        # How the scopes of a request's route are found: Starlette's router (scope["app"]).
        # Adapters of other ASGI frameworks (Litestar, Quart) give their own.
        return starlette_route_scopes

    @staticmethod
    def _forwarded(scope: Scope) -> bool:
        # Behind trusted proxies, X-Forwarded-For can change the client: the general path.
        return any(name == b"x-forwarded-for" for name, _ in scope["headers"])

    def _scope_credentials(self, scopes: frozenset[str]) -> ScopeCredentials:
        # One read-only credentials object per scope set (a frozenset caches its hash, and a
        # record version's principals share one scopes object, so the hot path's lookup is
        # a hash read and an identity compare).
        credentials = self._scopes_cache.get(scopes)
        if credentials is None:
            credentials = ScopeCredentials(scopes)
            if len(self._scopes_cache) >= 4096:
                self._scopes_cache.clear()
            self._scopes_cache[scopes] = credentials
        return credentials

    async def _general(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope.get("method", "GET") if scope["type"] == "http" else "WEBSOCKET"
        if path == self.widget_sessions_path and method == "POST":
            await self._widget_session(scope, receive, send)
            return
        if path in self.public_paths or (method == "OPTIONS" and _preflight(scope)):
            # Public, or a CORS preflight (no credential by design): served as it is.
            try:
                await self.app(scope, receive, send)
            except AuthError as error:  # a route dependency needs a credential here after all
                await refuse_downstream(scope, send, error)
            return
        api_keys, authorizations, forwarded = read_headers(scope)
        client = scope.get("client")
        client_ip = self.authenticator.resolve_client_ip(client[0] if client else None, forwarded)
        try:
            principal = await self.authenticator.authenticate_request_async(
                api_keys,
                authorizations,
                client_ip=client_ip,
                required_scopes=self._route_scopes.lookup(method, path, scope),
                method=method,
                path=path,
            )
        except AuthError as error:
            await refuse(scope, send, error)
            return
        await self._serve(scope, receive, send, principal, client_ip, method, path)

    async def _verify(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        api_key: bytes,
        peer: str | None,
        method: str,
        path: str,
        route: frozenset[str],
    ) -> None:
        # A sole X-API-Key the fast path does not know: refused at once when it does not
        # parse, else the key flow in full (the route's scopes first: the commit point).
        auth = self.authenticator
        parsed = auth.parse_presented(api_key, peer, method, path)
        if isinstance(parsed, AuthError):
            await refuse(scope, send, parsed)
            return
        verified = auth.authenticate_parsed_async(
            api_key.decode("latin-1"),
            parsed,
            client_ip=peer,
            required_scopes=route,
            method=method,
            path=path,
        )
        await self._answer(scope, receive, send, verified, peer, method, path)

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        pending: Awaitable[Principal],
        peer: str | None,
        method: str,
        path: str,
    ) -> None:
        # The fast path's two awaited outcomes (a key verified in full, a rate-limited key
        # charged): the refusal, or the request served with the principal.
        try:
            principal = await pending
        except AuthError as error:
            await refuse(scope, send, error)
            return
        await self._serve(scope, receive, send, principal, peer, method, path)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        principal: Principal,
        client_ip: IPAddress | str | None,
        method: str,
        path: str,
    ) -> None:
        # An authenticated request of the general path: rate-limit headers on the response,
        # and a downstream refusal rendered unless the response has started.
        scope["user"] = principal
        scope["auth"] = self._scope_credentials(principal.scopes)
        token = request_var.set((principal, self.authenticator, client_ip, method, path))
        extra = principal.rate_limit.raw_headers() if principal.rate_limit is not None else []
        started = False

        def send_wrapper(message: Message) -> Awaitable[None]:
            # A plain function returning send's awaitable: no coroutine of its own per message,
            # and once the response has started, one test per message.
            nonlocal started
            if not started:
                kind = message["type"]
                if kind == "http.response.start":
                    started = True
                    if extra:
                        message["headers"] = [*message.get("headers", ()), *extra]
                elif kind == "websocket.accept":
                    started = True
            return send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except AuthError as error:  # raised by a route dependency downstream
            if started:
                raise
            await refuse(scope, send, error)
        finally:
            request_var.reset(token)

    async def _widget_session(self, scope: Scope, receive: Receive, send: Send) -> None:
        api_keys, _, forwarded = read_headers(scope)
        client = scope.get("client")
        auth = self.authenticator
        ip = auth.resolve_client_ip(client[0] if client else None, forwarded)
        try:
            body = await read_body(receive)
            issued = await create_widget_session_async(
                auth, api_keys, body, client_ip=ip, path=scope["path"]
            )
        except AuthError as error:
            await refuse(scope, send, error)
            return
        status, headers, payload = session_created(issued)
        await send_http(send, status, headers, payload)


def _preflight(scope: Scope) -> bool:
    # A CORS preflight: OPTIONS naming the method it asks about.
    return any(name == b"access-control-request-method" for name, _ in scope["headers"])


def _error_response(error: AuthError) -> Response:
    return Response(error.body(), error.status_code, headers=dict(error.headers()))


def require_scopes(*scopes: str, cost: int = 1) -> Callable[[F], F]:
    """Require every one of ``scopes`` on a Starlette endpoint or FastAPI path operation.
    ``cost``: the credits one accepted request of the route spends from a key with credits
    (default 1), charged at the same commit point.

    Works on ``async def`` and plain ``def`` endpoints and ``HTTPEndpoint`` methods, keeps the
    signature FastAPI inspects, and adds the ``X-API-Key`` security scheme to FastAPI's OpenAPI.
    A refusal is the standard ``INSUFFICIENT_PERMISSIONS`` JSON (audited).

    Example::

        @app.get("/quotes")
        @require_scopes("quotes:read")
        async def quotes(): ...
    """
    required = required_scopes(scopes, cost)

    def decorator(endpoint: F) -> F:
        wrapper = scope_guard(
            endpoint, required, _error_response, drop_kwarg=OPENAPI_PARAM, plain_call=True
        )
        declare_api_key_security(wrapper, endpoint)
        return cast(F, wrapper)

    return decorator
