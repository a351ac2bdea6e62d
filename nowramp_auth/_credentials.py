"""Which credential a request carries, from its raw header values (pure).

Security model: header values are untrusted. Several ``X-API-Key`` fields, or one value with a
comma (how WSGI servers join repeated fields), are refused rather than guessed at. Nothing is
stripped, so a key with stray whitespace is simply invalid. Keys in the query string are never
read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

from ._errors import AuthError, ErrorCode

__all__ = ["Credential", "read_credential"]

_MAX_HEADER = 512
_BEARER = "bearer "


class Credential(NamedTuple):
    """What a request presented: an API key or a widget session token (``repr`` hides it)."""

    kind: Literal["api_key", "session"]
    value: str

    def __repr__(self) -> str:
        return f"Credential(kind={self.kind!r})"


def read_credential(api_keys: Sequence[str], authorizations: Sequence[str]) -> Credential:
    """Decide which credential a request carries, from its raw header values.

    A non-empty ``X-API-Key`` decides; else ``Authorization: Bearer`` is a session token;
    else ``MISSING_API_KEY``.
    """
    if len(api_keys) > 1:
        raise AuthError(ErrorCode.INVALID_API_KEY)
    if api_keys and api_keys[0] != "":
        value = api_keys[0]
        if "," in value or len(value) > _MAX_HEADER:
            raise AuthError(ErrorCode.INVALID_API_KEY)
        return Credential("api_key", value)
    bearers = [v for v in authorizations if v[: len(_BEARER)].lower() == _BEARER]
    if not bearers:
        raise AuthError(ErrorCode.MISSING_API_KEY)
    token = bearers[0][len(_BEARER) :]
    if len(bearers) > 1 or len(authorizations) > 1 or "," in token or len(token) > _MAX_HEADER:
        raise AuthError(ErrorCode.INVALID_SESSION_TOKEN)
    return Credential("session", token)
