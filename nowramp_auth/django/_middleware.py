"""``ApiKeyMiddleware`` for Django's ``MIDDLEWARE`` setting, sync and async capable.

Configured by ``settings.NOWRAMP_AUTH``::

    NOWRAMP_AUTH = {
        "AUTHENTICATOR": "myproject.auth.authenticator",  # dotted path to an Authenticator
        "PUBLIC_PATHS": ["/health"],                      # exact, or a prefix ending in "*"
        "WIDGET_SESSIONS_PATH": "/widget/sessions",       # None turns the endpoint off
    }

Under WSGI Django the middleware runs synchronously; under ASGI Django it runs on the event
loop, with the async store calls (no thread hop). The view is resolved before the key is
checked, so the scopes its guards recorded (``require_scopes``, DRF ``HasScopes``) are
checked before the one limiter call of a rate-limited key: a request refused for scopes
spends no quota and gets its 403 before any 429.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from .._client_ip import IPAddress
from .._context import RequestContext, request_var
from .._errors import AuthError
from .._fast_path import LimitedKey
from .._guards import middleware_options
from .._http import (
    MAX_WIDGET_BODY,
    create_widget_session,
    create_widget_session_async,
    response_headers,
    session_created,
)
from .._models import Principal
from .._route_scopes import RouteScopeCache
from ._settings import configured_authenticator, django_settings
from ._views import refusal, route_scopes

__all__ = ["ApiKeyMiddleware"]

GetResponse = Callable[[HttpRequest], Any]


class _Plan(NamedTuple):
    """What a request needs (see ``ApiKeyMiddleware._plan``)."""

    step: Literal["widget", "public", "authenticate"]
    path: str
    method: str
    accepted: Principal | LimitedKey | None = None
    credentials: tuple[list[str], list[str]] = ([], [])
    call: Mapping[str, Any] = MappingProxyType({})  # the authenticator call's keywords


class ApiKeyMiddleware:
    """API-key authentication for every Django request (see the module docstring).

    Sets ``request.principal`` (a :class:`~nowramp_auth.Principal`) and
    :func:`~nowramp_auth.current_principal` for the view; refuses with the standard JSON
    answer; serves ``POST`` on the widget sessions path itself.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        config = django_settings()
        self.get_response = get_response
        self.authenticator = configured_authenticator()
        self.widget_sessions_path: str | None = config.get(
            "WIDGET_SESSIONS_PATH", "/widget/sessions"
        )
        self.public_paths = middleware_options(
            self.authenticator, config.get("PUBLIC_PATHS", ()), self.widget_sessions_path
        )
        self._route_scopes: RouteScopeCache[HttpRequest] = RouteScopeCache(
            route_scopes, _urlconf_of
        )
        self._trusting = bool(self.authenticator.trusted_proxies)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        plan = self._plan(request)
        if plan.step == "widget":
            return self._widget_session(request, plan.path)
        if plan.step == "public":
            return self.get_response(request)
        auth = self.authenticator
        try:
            if isinstance(plan.accepted, LimitedKey):
                principal = auth.charge(plan.accepted, **plan.call)
            elif plan.accepted is not None:
                principal = plan.accepted
            else:
                principal = auth.authenticate_request(*plan.credentials, **plan.call)
        except AuthError as error:
            return refusal(error)
        return self._serve(request, principal, plan)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        # The twin of __call__, awaiting the store.
        plan = self._plan(request)
        if plan.step == "widget":
            return await self._widget_session_async(request, plan.path)
        if plan.step == "public":
            response: HttpResponse = await self.get_response(request)
            return response
        auth = self.authenticator
        try:
            if isinstance(plan.accepted, LimitedKey):
                principal = await auth.charge_async(plan.accepted, **plan.call)
            elif plan.accepted is not None:
                principal = plan.accepted
            else:
                principal = await auth.authenticate_request_async(*plan.credentials, **plan.call)
        except AuthError as error:
            return refusal(error)
        return await self._serve_async(request, principal, plan)

    def _plan(self, request: HttpRequest) -> _Plan:
        # Everything decided without I/O, for both twins: the widget endpoint, a public path,
        # a key the fast path accepts (or a limited key to charge), or the general flow with
        # the request's credentials. The view's scopes are resolved first (commit point).
        path = request.path_info
        method = request.method or "GET"
        if path == self.widget_sessions_path and method == "POST":
            return _Plan("widget", path, method)
        if path in self.public_paths or (
            method == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in request.META
        ):  # public, or a CORS preflight (no credential by design)
            return _Plan("public", path, method)
        meta = request.META
        scopes = self._scopes(request, method, path)
        call: dict[str, Any] = {"required_scopes": scopes, "method": method, "path": path}
        accepted = self._fast(meta, scopes)
        if accepted is not None:
            call["client_ip"] = meta.get("REMOTE_ADDR")
            return _Plan("authenticate", path, method, accepted, call=call)
        api_keys, authorizations, call["client_ip"] = self._credentials(meta)
        return _Plan("authenticate", path, method, None, (api_keys, authorizations), call)

    def _credentials(self, meta: dict[str, Any]) -> tuple[list[str], list[str], IPAddress | None]:
        # The raw X-API-Key and Authorization values, and the client address.
        client_ip = self.authenticator.resolve_client_ip(
            meta.get("REMOTE_ADDR"), _values(meta.get("HTTP_X_FORWARDED_FOR"))
        )
        return (
            _values(meta.get("HTTP_X_API_KEY")),
            _values(meta.get("HTTP_AUTHORIZATION")),
            client_ip,
        )

    def _enter(
        self, request: HttpRequest, principal: Principal, plan: _Plan
    ) -> Token[RequestContext | None]:
        # The principal for the view: on the request and in current_principal().
        request.principal = principal  # type: ignore[attr-defined]
        context = (principal, self.authenticator, plan.call["client_ip"], plan.method, plan.path)
        return request_var.set(context)

    def _scopes(self, request: HttpRequest, method: str, path: str) -> frozenset[str]:
        if getattr(request, "urlconf", None) is not None:  # set per request: not cached
            return route_scopes(request)[0]
        return self._route_scopes.lookup(method, path, request)

    def _fast(self, meta: dict[str, Any], scopes: frozenset[str]) -> Principal | LimitedKey | None:
        # A sole X-API-Key already verified in full (see nowramp_auth._fast_path), when no
        # forwarding header can change the client address.
        api_key = meta.get("HTTP_X_API_KEY")
        if not api_key or "," in api_key:
            return None
        if self._trusting and "HTTP_X_FORWARDED_FOR" in meta:
            return None
        try:
            raw = api_key.encode("latin-1")
        except UnicodeEncodeError:
            return None
        accepted = self.authenticator.accept_verified(raw, meta.get("REMOTE_ADDR"), scopes)
        return accepted if isinstance(accepted, (Principal, LimitedKey)) else None

    def _serve(self, request: HttpRequest, principal: Principal, plan: _Plan) -> HttpResponse:
        token = self._enter(request, principal, plan)
        try:
            response: HttpResponse = self.get_response(request)
        finally:
            request_var.reset(token)
        return _with_headers(response, principal)

    async def _serve_async(
        self, request: HttpRequest, principal: Principal, plan: _Plan
    ) -> HttpResponse:
        token = self._enter(request, principal, plan)
        try:
            response: HttpResponse = await self.get_response(request)
        finally:
            request_var.reset(token)
        return _with_headers(response, principal)

    def _session_inputs(self, request: HttpRequest) -> tuple[list[str], Any, bytes | None]:
        meta = request.META
        ip = self.authenticator.resolve_client_ip(
            meta.get("REMOTE_ADDR"), _values(meta.get("HTTP_X_FORWARDED_FOR"))
        )
        body = request.read(MAX_WIDGET_BODY + 1)
        return _values(meta.get("HTTP_X_API_KEY")), ip, body

    def _widget_session(self, request: HttpRequest, path: str) -> HttpResponse:
        api_keys, ip, body = self._session_inputs(request)
        try:
            issued = create_widget_session(
                self.authenticator, api_keys, body or b"", client_ip=ip, path=path
            )
        except AuthError as error:
            return refusal(error)
        return _created(*session_created(issued))

    async def _widget_session_async(self, request: HttpRequest, path: str) -> HttpResponse:
        api_keys, ip, body = self._session_inputs(request)
        try:
            issued = await create_widget_session_async(
                self.authenticator, api_keys, body or b"", client_ip=ip, path=path
            )
        except AuthError as error:
            return refusal(error)
        return _created(*session_created(issued))


def _created(status: int, headers: Sequence[tuple[str, str]], body: bytes) -> HttpResponse:
    response = HttpResponse(body, status=status)
    for name, value in headers:
        response[name] = value
    return response


def _with_headers(response: HttpResponse, principal: Principal) -> HttpResponse:
    for name, value in response_headers(principal):
        response[name] = value
    return response


def _values(value: str | None) -> list[str]:
    # WSGI and ASGI Django join repeated fields with ",": the authenticator refuses those.
    return [] if value is None else [value]


def _urlconf_of(request: HttpRequest) -> str:
    # Which urlconf resolves the request (a middleware may set one per request or host).
    return repr(getattr(request, "urlconf", None))
