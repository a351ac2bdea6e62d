"""What both adapters share: public paths, the widget endpoint's body and answer, and the
headers of successful responses. Framework-free.

Security model: a widget-session body that is not the right JSON shape is
``INVALID_REQUEST``; the error detail names the field, never its value.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import AuthError, ErrorCode
from ._models import IssuedSession, Principal

if TYPE_CHECKING:
    from ._authenticator import Authenticator

__all__ = [
    "MAX_WIDGET_BODY",
    "PublicPaths",
    "SessionRequest",
    "create_widget_session",
    "create_widget_session_async",
    "json_body",
    "parse_session_request",
    "response_headers",
]

MAX_WIDGET_BODY = 16 * 1024


class PublicPaths:
    """Paths served without authentication: exact entries, or prefixes ending in ``*``."""

    def __init__(self, paths: Iterable[str]) -> None:
        if isinstance(paths, str):
            raise TypeError("public_paths must be a list of paths, not one string")
        exact: set[str] = set()
        prefixes: list[str] = []
        for path in paths:
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"public path must be a string starting with '/': {path!r}")
            if path.endswith("*"):
                prefixes.append(path[:-1])
            else:
                exact.add(path)
        self.exact = frozenset(exact)
        self.prefixes = tuple(prefixes)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and (path in self.exact or path.startswith(self.prefixes))


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """A validated widget-session request body."""

    project_id: str
    customer_id: str | None
    scopes: tuple[str, ...] | None


def _bad(detail: str) -> AuthError:
    return AuthError(ErrorCode.INVALID_REQUEST, detail=detail)


def _short_string(value: object, limit: int = 128) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and value.isprintable()


def parse_session_request(body: bytes) -> SessionRequest:
    """Parse ``{"project_id": str, "customer_id"?: str, "scopes"?: [str]}``; else
    ``AuthError(INVALID_REQUEST)``."""
    if len(body) > MAX_WIDGET_BODY:
        raise _bad("The body is too large.")
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise _bad("The body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise _bad("The body must be a JSON object.")
    project_id = data.get("project_id")
    if not _short_string(project_id):
        raise _bad("project_id must be a non-empty string of at most 128 characters.")
    customer_id = data.get("customer_id")
    if customer_id is not None and not _short_string(customer_id):
        raise _bad("customer_id must be a non-empty string of at most 128 characters.")
    scopes = data.get("scopes")
    if scopes is not None:
        if not isinstance(scopes, list) or len(scopes) > 64:
            raise _bad("scopes must be a list of at most 64 strings.")
        if not all(_short_string(s) for s in scopes):
            raise _bad("scopes must be a list of non-empty strings.")
    return SessionRequest(
        str(project_id), customer_id, tuple(scopes) if scopes is not None else None
    )


def create_widget_session(
    auth: Authenticator, api_keys: Sequence[str], body: bytes, *, client_ip: Any, path: str
) -> IssuedSession:
    """The widget endpoint's decision: validate the body, then create the session.

    Only an authenticated caller learns what is wrong with its body: a bad body from a caller
    whose key fails is answered with the key's refusal."""
    try:
        request = parse_session_request(body)
    except AuthError as error:
        principal = auth.authenticate_request(
            api_keys, client_ip=client_ip, method="POST", path=path
        )
        auth._refused_after_acceptance(principal, error)
        raise
    return auth.create_session(
        api_keys,
        project_id=request.project_id,
        customer_id=request.customer_id,
        scopes=request.scopes,
        client_ip=client_ip,
        method="POST",
        path=path,
    )


async def create_widget_session_async(
    auth: Authenticator, api_keys: Sequence[str], body: bytes, *, client_ip: Any, path: str
) -> IssuedSession:
    """Async twin of :func:`create_widget_session`."""
    try:
        request = parse_session_request(body)
    except AuthError as error:
        principal = await auth.authenticate_request_async(
            api_keys, client_ip=client_ip, method="POST", path=path
        )
        auth._refused_after_acceptance(principal, error)
        raise
    return await auth.create_session_async(
        api_keys,
        project_id=request.project_id,
        customer_id=request.customer_id,
        scopes=request.scopes,
        client_ip=client_ip,
        method="POST",
        path=path,
    )


def json_body(data: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(data, separators=(",", ":")).encode()


def session_created(issued: IssuedSession) -> tuple[int, list[tuple[str, str]], bytes]:
    """The widget endpoint's 201 answer: (status, headers, body)."""
    headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
    return 201, headers, json_body(issued.to_dict())


def response_headers(principal: Principal) -> list[tuple[str, str]]:
    """Headers to add to a successful response (``RateLimit-*`` for limited keys)."""
    return principal.rate_limit.headers() if principal.rate_limit is not None else []
