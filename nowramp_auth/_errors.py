"""The one error family: :class:`ErrorCode`, :class:`AuthError` and the catalogue of statuses,
messages and solutions that both adapters render from.

Security model: an error never carries the presented credential. Messages come from the fixed
catalogue below; ``detail`` strings are written by this package, never copied from input.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._models import RateLimitStatus

__all__ = ["CATALOGUE", "AuthError", "ErrorCode", "ErrorInfo"]


class ErrorCode(str, enum.Enum):
    """Machine-readable reason for a refusal (the ``error.code`` field of the JSON body)."""

    MISSING_API_KEY = "MISSING_API_KEY"
    INVALID_API_KEY = "INVALID_API_KEY"
    API_KEY_EXPIRED = "API_KEY_EXPIRED"
    INSUFFICIENT_PERMISSIONS = "INSUFFICIENT_PERMISSIONS"
    IP_NOT_ALLOWED = "IP_NOT_ALLOWED"
    INVALID_SESSION_TOKEN = "INVALID_SESSION_TOKEN"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    INVALID_REQUEST = "INVALID_REQUEST"
    RATE_LIMITED = "RATE_LIMITED"
    CREDITS_EXHAUSTED = "CREDITS_EXHAUSTED"
    AUTH_UNAVAILABLE = "AUTH_UNAVAILABLE"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """HTTP status, message and solution for one :class:`ErrorCode`."""

    status_code: int
    message: str
    solution: str


_API_KEY_CHALLENGE = 'ApiKey realm="api", header="X-API-Key"'
_SESSION_CHALLENGE = 'Bearer realm="widget", error="invalid_token"'

CATALOGUE: dict[ErrorCode, ErrorInfo] = {
    ErrorCode.MISSING_API_KEY: ErrorInfo(
        401, "No API key was provided.", "Add the X-API-Key header to the request."
    ),
    ErrorCode.INVALID_API_KEY: ErrorInfo(401, "The API key is invalid.", "Check the key value."),
    ErrorCode.API_KEY_EXPIRED: ErrorInfo(401, "The API key has expired.", "Create a new key."),
    ErrorCode.INSUFFICIENT_PERMISSIONS: ErrorInfo(
        403,
        "The credential lacks a permission this request needs.",
        "Add the required permission to the key.",
    ),
    ErrorCode.IP_NOT_ALLOWED: ErrorInfo(
        403,
        "Requests from this address are not allowed for this key.",
        "Call from an allowlisted address or update the key's IP allowlist.",
    ),
    ErrorCode.INVALID_SESSION_TOKEN: ErrorInfo(
        401, "The widget session token is invalid.", "Create a new widget session."
    ),
    ErrorCode.SESSION_EXPIRED: ErrorInfo(
        401, "The widget session has expired.", "Create a new widget session."
    ),
    ErrorCode.INVALID_REQUEST: ErrorInfo(
        400, "The request body is invalid.", "Fix the request body."
    ),
    ErrorCode.RATE_LIMITED: ErrorInfo(
        429, "Too many requests for this key.", "Retry after the Retry-After seconds."
    ),
    ErrorCode.CREDITS_EXHAUSTED: ErrorInfo(
        429,
        "This key has no credits left.",
        "Add credits to the key, or wait for its refill (Retry-After, when it has one).",
    ),
    ErrorCode.AUTH_UNAVAILABLE: ErrorInfo(
        503, "Authentication is temporarily unavailable.", "Retry later."
    ),
}

_SESSION_CODES = frozenset({ErrorCode.INVALID_SESSION_TOKEN, ErrorCode.SESSION_EXPIRED})


class AuthError(Exception):
    """A refusal. ``code`` says why; ``status_code`` and ``to_dict()`` give the HTTP answer.

    Parameters:
        code: the :class:`ErrorCode`.
        detail: an optional extra sentence written by this package (never input echoed back).
        required_scopes: for ``INSUFFICIENT_PERMISSIONS``, the scopes the request needed.
        retry_after: for ``RATE_LIMITED`` and ``AUTH_UNAVAILABLE``, whole seconds to wait.
        key_id: the public key id when the key parsed (for audit; not rendered).
        project_id: the key's project once the key's digest matched (for audit; not
            rendered).
        verified: the request presented the key's (or session's) secret: the refusal is
            counted in the key's history (not rendered).
        rate_limit: for ``RATE_LIMITED``, the limit's state (rendered as ``RateLimit-*``).
        key_type: ``"live"`` or ``"test"`` when the credential showed its key's type (for
            metrics; not rendered).
        credential: ``"api_key"`` or ``"session"``: what the request presented (for metrics
            and tracing; not rendered).
    """

    key_type: str | None = None
    credential: str | None = None

    def __init__(
        self,
        code: ErrorCode,
        *,
        detail: str | None = None,
        required_scopes: Iterable[str] | None = None,
        retry_after: int | None = None,
        key_id: str | None = None,
        rate_limit: RateLimitStatus | None = None,
        project_id: str | None = None,
        verified: bool = False,
        key_type: str | None = None,
        credential: str | None = None,
    ) -> None:
        # Refusals are on the hot path of every bad request: keep construction cheap.
        self.code = code if type(code) is ErrorCode else ErrorCode(code)
        self.detail = detail
        self.required_scopes = tuple(sorted(required_scopes)) if required_scopes else ()
        self.retry_after = retry_after
        self.key_id = key_id
        self.rate_limit = rate_limit
        self.project_id = project_id
        self.verified = verified
        if key_type is not None:  # else the class's None: one attribute fewer to set
            self.key_type = key_type
        if credential is not None:
            self.credential = credential
        self.args = (self.code,)  # a str Enum: its value, without the Enum descriptor

    @property
    def status_code(self) -> int:
        """The HTTP status of this refusal."""
        return CATALOGUE[self.code].status_code

    @property
    def message(self) -> str:
        """What went wrong, for people."""
        return CATALOGUE[self.code].message

    @property
    def solution(self) -> str:
        """What to do about it."""
        return CATALOGUE[self.code].solution

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"

    def __repr__(self) -> str:
        return f"AuthError({self.code.value})"

    def to_dict(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"code", "message", "solution", ...}}``."""
        error: dict[str, Any] = {
            "code": self.code.value,
            "message": self.message,
            "solution": self.solution,
        }
        if self.detail:
            error["detail"] = self.detail
        if self.required_scopes:
            error["required_scopes"] = list(self.required_scopes)
        if self.retry_after is not None:
            error["retry_after"] = self.retry_after
        return {"error": error}

    @property
    def plain(self) -> bool:
        """True when the answer is the code's standard one (no detail, scopes, retry time or
        limit state): then body and headers come ready-made from the catalogue."""
        return not (
            self.detail or self.required_scopes or self.retry_after is not None or self.rate_limit
        )

    def body(self) -> bytes:
        """The JSON body as bytes."""
        if self.plain:
            return _PLAIN_BODIES[self.code]
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    def headers(self) -> list[tuple[str, str]]:
        """Response headers: content type, ``WWW-Authenticate`` on 401, ``Retry-After``."""
        if self.plain:
            return list(_PLAIN_HEADERS[self.code])
        return self._headers()

    def _headers(self) -> list[tuple[str, str]]:
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        if self.status_code == 401:
            challenge = _SESSION_CHALLENGE if self.code in _SESSION_CODES else _API_KEY_CHALLENGE
            headers.append(("WWW-Authenticate", challenge))
        if self.retry_after is not None:
            headers.append(("Retry-After", str(self.retry_after)))
        if self.rate_limit is not None:
            headers.extend(self.rate_limit.headers())
        return headers


# Refusals are answered on every bad request: the standard answer of each code is rendered
# once, here.
_PLAIN_BODIES = {
    code: json.dumps(AuthError(code).to_dict(), separators=(",", ":")).encode()
    for code in ErrorCode
}
_PLAIN_HEADERS = {code: tuple(AuthError(code)._headers()) for code in ErrorCode}
