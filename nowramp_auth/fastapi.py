"""FastAPI extras: the ``X-API-Key`` security scheme and a dependency form of scope checks.

Use with :class:`nowramp_auth.starlette.ApiKeyMiddleware` (which authenticates the request).
Both ``@require_scopes`` and ``Depends(scopes(...))`` make ``/openapi.json`` show the API-key
scheme, so Swagger's "Authorize" button works.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import FastAPI, Security

from ._context import check_scopes, current_principal
from ._errors import AuthError, ErrorCode
from ._fastapi_scheme import api_key_header
from ._guards import required_scopes
from ._http import PublicPaths
from ._models import Principal
from ._openapi import document_refusals
from ._route_scopes import record_scopes

__all__ = ["api_key_header", "document_auth", "scopes"]


def scopes(*required: str, cost: int = 1) -> Callable[..., Awaitable[Principal]]:
    """A dependency that requires every one of ``required`` and returns the principal.
    ``cost``: the credits one accepted request spends from a key with credits (default 1).

    Example::

        @app.get("/orders")
        async def orders(principal: Principal = Depends(scopes("orders:read"))): ...
    """
    needed = required_scopes(required, cost)

    async def dependency(_api_key: str | None = Security(api_key_header)) -> Principal:
        error = check_scopes(needed)
        if error is not None:
            raise error  # rendered by ApiKeyMiddleware as the standard JSON
        principal = current_principal()
        if principal is None:  # pragma: no cover - check_scopes refuses first
            raise AuthError(ErrorCode.MISSING_API_KEY)
        return principal

    record_scopes(dependency, needed)  # checked before a rate-limited key is charged
    return dependency


def document_auth(app: FastAPI, *, public_paths: Iterable[str] = ()) -> None:
    """Make ``app``'s OpenAPI document say what the middleware does: every operation outside
    ``public_paths`` (the same list the middleware is given) declares the ``ApiKeyAuth``
    scheme and answers 401, 403, 429 and 503 with an ``ErrorResponse`` body (``error.code``
    an enum of the codes, ``message``, ``solution``, optional ``required_scopes``). Public
    paths document none of them.

    Example::

        app.add_middleware(ApiKeyMiddleware, authenticator=auth, public_paths=PUBLIC)
        document_auth(app, public_paths=PUBLIC)
    """
    public = PublicPaths(public_paths)
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()  # FastAPI builds it once and keeps it
        document_refusals(schema, public.__contains__)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
