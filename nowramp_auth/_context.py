"""The request being served: ``current_principal()`` and route-level scope checks.

Both adapters set a :class:`RequestContext` in a :class:`contextvars.ContextVar` for the
duration of the downstream call, so it follows asyncio tasks and the worker threads Starlette
runs sync endpoints in, and never leaks between concurrent requests. Route decorators read it
to check scopes and to audit their refusals through the request's authenticator.
"""

from __future__ import annotations

from collections.abc import Collection
from contextvars import ContextVar
from typing import TYPE_CHECKING, NamedTuple

from ._client_ip import IPAddress
from ._errors import AuthError, ErrorCode
from ._models import Principal

if TYPE_CHECKING:
    from ._authenticator import Authenticator

__all__ = ["RequestContext", "check_scopes", "current_principal", "request_var"]


class RequestContext(NamedTuple):
    """The authenticated principal of a request, and what is needed to audit a refusal."""

    principal: Principal
    authenticator: Authenticator
    client_ip: IPAddress | None
    method: str | None
    path: str | None


request_var: ContextVar[RequestContext | None] = ContextVar("nowramp_auth_request", default=None)


def current_principal() -> Principal | None:
    """The authenticated :class:`Principal` of the current request, or ``None`` outside one."""
    context = request_var.get()
    return context.principal if context is not None else None


def check_scopes(required: Collection[str]) -> AuthError | None:
    """The refusal for the current request if it lacks any of ``required`` (audited), else
    ``None``. Outside an authenticated request: ``MISSING_API_KEY`` (fail closed)."""
    context = request_var.get()
    if context is None:
        return AuthError(ErrorCode.MISSING_API_KEY)
    principal = context.principal
    if principal.scopes.issuperset(required):
        return None
    error = AuthError(
        ErrorCode.INSUFFICIENT_PERMISSIONS,
        required_scopes=required,
        key_id=principal.key_id,
    )
    context.authenticator.audit_refusal(
        error, client_ip=context.client_ip, method=context.method, path=context.path
    )
    return error
