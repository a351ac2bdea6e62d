"""Django REST framework classes: ``ApiKeyAuthentication`` and ``HasScopes``.

Example::

    from nowramp_auth.django.rest_framework import ApiKeyAuthentication, HasScopes

    class Orders(APIView):
        authentication_classes = [ApiKeyAuthentication]   # works without the middleware too
        permission_classes = [HasScopes]
        required_scopes = ["orders:read"]                 # or {"GET": [...], "POST": [...]};
        required_cost = 5       # optional: credits per accepted request (or {"POST": 5})
                                                          # a method missing from the dict is
                                                          # refused

Refusals are the standard JSON body and status, through DRF's exception handling.
``ApiKeyAuthentication`` checks the view's ``required_scopes`` together with the key, before
the one limiter call of a rate-limited key, so a request refused for scopes spends no quota.
With :class:`~nowramp_auth.django.ApiKeyMiddleware` installed it reuses the middleware's
answer (the key is checked once). ``RateLimit-*`` headers on successful answers come from the
middleware; without it, a ``429`` still carries ``Retry-After``.

Needs the ``drf`` extra (``pip install 'nowramp_auth[drf]'``).
"""

from __future__ import annotations

import functools
from typing import Any

from django.core.signals import setting_changed
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from .._authenticator import Authenticator
from .._context import request_var
from .._errors import AuthError, ErrorCode
from .._models import Principal
from .._route_scopes import Needs
from ._settings import configured_authenticator
from ._views import declared_cost, declared_scopes, public_error

__all__ = ["ApiKeyAuthentication", "ApiKeyRefused", "ApiKeyUser", "HasScopes"]


class ApiKeyRefused(exceptions.APIException):
    """A refusal as DRF's exception handling renders it: the standard body and status,
    ``WWW-Authenticate`` on 401 and ``Retry-After`` where the refusal has one."""

    def __init__(self, error: AuthError) -> None:
        self.error = error
        self.status_code = error.status_code
        super().__init__(detail=error.to_dict())
        headers = dict(error.headers())
        self.auth_header = headers.get("WWW-Authenticate")
        self.wait = error.retry_after


class ApiKeyUser:
    """``request.user`` of a request authenticated by an API key or a widget session: an
    authenticated user object wrapping the :class:`~nowramp_auth.Principal`."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.pk = self.id = self.username = principal.key_id

    def get_username(self) -> str:
        """The key id (what audit events name)."""
        return self.principal.key_id

    def has_perm(self, perm: str, obj: object = None) -> bool:
        """Django model permissions do not apply to API keys: scopes do."""
        return False

    def __str__(self) -> str:
        return f"{self.principal.kind}:{self.principal.key_id}"

    def __repr__(self) -> str:
        return f"ApiKeyUser({self.principal.key_id!r})"


@functools.cache
def _settings_authenticator() -> Authenticator:
    return configured_authenticator()


def _forget_authenticator(*, setting: str, **_: Any) -> None:
    if setting == "NOWRAMP_AUTH":
        _settings_authenticator.cache_clear()


setting_changed.connect(_forget_authenticator)


def _view_scopes(view: Any, method: str) -> frozenset[str]:
    if view is None or not any(
        isinstance(p, HasScopes) for p in getattr(view, "get_permissions", lambda: [])()
    ):
        return frozenset()
    scopes = declared_scopes(getattr(view, "required_scopes", None), method)
    cost = declared_cost(view, method)  # credits per accepted request (default 1)
    return Needs(scopes, cost) if cost != 1 else scopes


class ApiKeyAuthentication(BaseAuthentication):
    """DRF authentication by ``X-API-Key`` (or a widget session's ``Bearer ramp_sess_...``).

    Sets ``request.user`` to an :class:`ApiKeyUser` and ``request.auth`` to the
    :class:`~nowramp_auth.Principal`. A request without any such credential is left to the
    other authentication classes (``None``); a credential that fails is refused at once.
    The authenticator is ``authenticator`` on the class, else the one
    ``settings.NOWRAMP_AUTH["AUTHENTICATOR"]`` names.
    """

    authenticator: Authenticator | None = None

    def authenticate(self, request: Request) -> tuple[ApiKeyUser, Principal] | None:
        """The user and principal of ``request``, ``None`` when it carries no credential of
        ours, or :class:`ApiKeyRefused`."""
        django_request = request._request
        principal = getattr(django_request, "principal", None)
        if isinstance(principal, Principal):  # ApiKeyMiddleware has checked it
            return ApiKeyUser(principal), principal
        meta = request.META
        api_key = meta.get("HTTP_X_API_KEY")
        authorization = meta.get("HTTP_AUTHORIZATION")
        ours = authorization is not None and authorization[:12].lower() == "bearer ramp_"
        if not api_key and not ours:
            return None
        auth = self.authenticator or _settings_authenticator()
        method = request.method or "GET"
        path = django_request.path_info
        view = (request.parser_context or {}).get("view")
        client_ip = auth.resolve_client_ip(
            meta.get("REMOTE_ADDR"),
            [meta["HTTP_X_FORWARDED_FOR"]] if "HTTP_X_FORWARDED_FOR" in meta else [],
        )
        try:
            principal = auth.authenticate_request(
                [api_key] if api_key is not None else [],
                [authorization] if ours and authorization is not None else [],
                client_ip=client_ip,
                required_scopes=_view_scopes(view, method),
                method=method,
                path=path,
            )
        except AuthError as error:
            raise ApiKeyRefused(public_error(error)) from None
        django_request.principal = principal  # type: ignore[attr-defined]
        return ApiKeyUser(principal), principal

    def authenticate_header(self, request: Request) -> str:
        """The ``WWW-Authenticate`` challenge of a 401."""
        return dict(AuthError(ErrorCode.MISSING_API_KEY).headers())["WWW-Authenticate"]


class HasScopes(BasePermission):
    """Allows a request whose principal holds every scope the view's ``required_scopes``
    asks of its method (a list for every method, or a dict per method: a method missing
    from the dict is refused, but ``HEAD`` needs ``GET``'s scopes and ``OPTIONS`` none). A CORS
    preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is allowed without a
    credential. Refusals are the standard ``MISSING_API_KEY`` (no
    credential) or ``INSUFFICIENT_PERMISSIONS`` answers (audited)."""

    __nowramp_checks_required_scopes__ = True  # see _views.CHECKS_DECLARED_SCOPES

    def has_permission(self, request: Request, view: Any) -> bool:
        """True, or :class:`ApiKeyRefused` (audited, and counted in metrics)."""
        principal = request.auth
        method = request.method or "GET"
        if method == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in request.META:
            return True  # a CORS preflight carries no credential by design
        if not isinstance(principal, Principal):  # no credential of ours
            error = AuthError(ErrorCode.MISSING_API_KEY)
        else:
            required = declared_scopes(getattr(view, "required_scopes", None), method)
            if required <= principal.scopes:
                return True
            error = public_error(
                AuthError(
                    ErrorCode.INSUFFICIENT_PERMISSIONS,
                    required_scopes=required,
                    key_id=principal.key_id,
                )
            )
        context = request_var.get()
        auth = context[1] if context is not None else ApiKeyAuthentication.authenticator
        auth = auth or _settings_authenticator()
        auth.audit_refusal(
            error,
            client_ip=request.META.get("REMOTE_ADDR"),
            method=method,
            path=request._request.path_info,
        )
        raise ApiKeyRefused(error)
