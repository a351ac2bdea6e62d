"""The request being served: ``current_principal()`` and route-level scope checks.

Both adapters set a request context in a :class:`contextvars.ContextVar` for the duration of
the downstream call, so it follows asyncio tasks and the worker threads Starlette runs sync
endpoints in, and never leaks between concurrent requests. Route decorators read it to check
scopes and to audit their refusals through the request's authenticator.

The context is a plain tuple (built on every request, so it must cost next to nothing):
``(principal, authenticator, client address, method, path)``; the client address may be the
peer's text, parsed only if a refusal is audited.
"""

from __future__ import annotations

from collections.abc import Collection
from contextvars import ContextVar
from typing import Protocol

from ._client_ip import IPAddress
from ._errors import AuthError, ErrorCode
from ._models import Principal


class RefusalAuditor(Protocol):
    """What the request context needs of its authenticator: auditing a refusal decided
    outside it (a route's guard). :class:`~nowramp_auth.Authenticator` is one."""

    def audit_refusal(
        self,
        error: AuthError,
        *,
        client_ip: IPAddress | str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Record ``auth.failed`` for ``error`` (and count it, with metrics)."""


__all__ = [
    "RefusalAuditor",
    "RequestContext",
    "check_scopes",
    "current_principal",
    "refuse_scopes",
    "request_var",
]

RequestContext = tuple[Principal, RefusalAuditor, IPAddress | str | None, str | None, str | None]
"""``(principal, authenticator, client address, method, path)`` of the current request."""

request_var: ContextVar[RequestContext | None] = ContextVar("nowramp_auth_request", default=None)


def current_principal() -> Principal | None:
    """The authenticated :class:`Principal` of the current request, or ``None`` outside one."""
    context = request_var.get()
    return context[0] if context is not None else None


def check_scopes(required: Collection[str]) -> AuthError | None:
    """The refusal for the current request if it lacks any of ``required`` (audited), else
    ``None``. Outside an authenticated request: ``MISSING_API_KEY`` (fail closed)."""
    context = request_var.get()
    if context is not None and context[0].scopes.issuperset(required):
        return None
    return refuse_scopes(required)


def refuse_scopes(required: Collection[str]) -> AuthError:
    """The (audited) refusal of the current request for lacking ``required``:
    ``INSUFFICIENT_PERMISSIONS``, or ``MISSING_API_KEY`` outside an authenticated request."""
    context = request_var.get()
    if context is None:
        return AuthError(ErrorCode.MISSING_API_KEY)
    principal, authenticator, client_ip, method, path = context
    error = AuthError(
        ErrorCode.INSUFFICIENT_PERMISSIONS,
        required_scopes=required,
        key_id=principal.key_id,
        project_id=principal.project_id,
        verified=True,
    )
    authenticator.audit_refusal(error, client_ip=client_ip, method=method, path=path)
    return error
