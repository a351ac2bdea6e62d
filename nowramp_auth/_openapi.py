"""OpenAPI for FastAPI: the ``X-API-Key`` scheme on guarded routes, and the refusals of
every protected operation (``document_auth``).

Make ``require_scopes`` routes show the ``X-API-Key`` scheme in FastAPI's OpenAPI.

FastAPI builds its docs from an endpoint's signature. The decorator adds one hidden
keyword-only ``Security(APIKeyHeader)`` parameter (which the guard drops before calling the
endpoint); Starlette ignores signatures, so this is harmless there. Only a process that has
imported FastAPI gets it: a Starlette app never imports FastAPI (and pydantic) through us,
even where FastAPI is installed. Importing them would add about 0.15 s to start-up and some
24,000 long-lived objects that every full run of the garbage collector scans again (about
10 ms more per full collection, seen as tail latency under load). A FastAPI app has imported
FastAPI before its path operations are decorated (they are registered on its app or router);
an endpoint decorated before anything imported FastAPI simply keeps its own signature, so
only that operation's docs lack the scheme.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

__all__ = [
    "ERROR_SCHEMA",
    "OPENAPI_PARAM",
    "SCHEME",
    "declare_api_key_security",
    "document_refusals",
    "error_response_schema",
]

OPENAPI_PARAM = "nowramp_api_key"


def declare_api_key_security(wrapper: Callable[..., Any], endpoint: Callable[..., Any]) -> None:
    """Give ``wrapper`` the signature of ``endpoint`` plus the hidden security parameter,
    when FastAPI is in use (imported) in this process."""
    if "fastapi" not in sys.modules:  # a Starlette app: never import FastAPI for it
        return
    try:
        from fastapi import Security

        from ._fastapi_scheme import api_key_header
    except ImportError:  # FastAPI not installed: nothing to declare
        return
    try:
        signature = inspect.signature(endpoint, eval_str=True)
    except (NameError, TypeError, ValueError):
        signature = inspect.signature(endpoint)
    params = list(signature.parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    extra = inspect.Parameter(
        OPENAPI_PARAM,
        inspect.Parameter.KEYWORD_ONLY,
        default=Security(api_key_header),
        annotation=str | None,
    )
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*params, extra]
    )


# -- documenting refusals (nowramp_auth.fastapi.document_auth) ---------------------------------
SCHEME = "ApiKeyAuth"
ERROR_SCHEMA = "ErrorResponse"
_REF = {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def error_response_schema() -> dict[str, Any]:
    """The JSON schema of every refusal body."""
    from ._errors import ErrorCode

    return {
        "title": ERROR_SCHEMA,
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "solution"],
                "properties": {
                    "code": {"type": "string", "enum": [code.value for code in ErrorCode]},
                    "message": {"type": "string"},
                    "solution": {"type": "string"},
                    "detail": {"type": "string"},
                    "required_scopes": {"type": "array", "items": {"type": "string"}},
                    "retry_after": {"type": "integer", "minimum": 1},
                },
            }
        },
    }


def _header(description: str, kind: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": kind}}


def _refusals() -> dict[str, dict[str, Any]]:
    content = {"application/json": {"schema": _REF}}
    retry = _header("Seconds to wait before retrying", "integer")
    return {
        "401": {
            "description": "No credential, or an invalid, expired or revoked key or session "
            "(MISSING_API_KEY, INVALID_API_KEY, API_KEY_EXPIRED, INVALID_SESSION_TOKEN, "
            "SESSION_EXPIRED)",
            "headers": {"WWW-Authenticate": _header("The authentication challenge")},
            "content": content,
        },
        "403": {
            "description": "A required scope is missing, or the client address is outside the "
            "key's allowlist (INSUFFICIENT_PERMISSIONS, IP_NOT_ALLOWED)",
            "content": content,
        },
        "429": {
            "description": "A rate limit or budget of the key is used up (RATE_LIMITED), or its "
            "credits are (CREDITS_EXHAUSTED)",
            "headers": {
                "Retry-After": retry,
                "X-Credits-Remaining": _header("Credits left (keys with credits)", "integer"),
                "RateLimit-Limit": _header("Requests allowed per window", "integer"),
                "RateLimit-Remaining": _header("Requests left in the window", "integer"),
                "RateLimit-Reset": _header("Seconds until the full quota is back", "integer"),
            },
            "content": content,
        },
        "503": {
            "description": "The key store cannot be reached (AUTH_UNAVAILABLE)",
            "headers": {"Retry-After": retry},
            "content": content,
        },
    }


def document_refusals(schema: dict[str, Any], is_public: Callable[[str], bool]) -> None:
    """Add the API-key scheme and the 401/403/429/503 answers to every operation of
    ``schema`` whose path is not public (in place; idempotent)."""
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})[ERROR_SCHEMA] = error_response_schema()
    components.setdefault("securitySchemes", {})[SCHEME] = {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "A NowRamp API key: ramp_live_... or ramp_test_...",
    }
    for path, item in schema.get("paths", {}).items():
        if is_public(path):
            continue
        for method, operation in item.items():
            if method not in _HTTP_METHODS or not isinstance(operation, dict):
                continue
            security = operation.setdefault("security", [])
            if {SCHEME: []} not in security:
                security.append({SCHEME: []})
            responses = operation.setdefault("responses", {})
            for status, answer in _refusals().items():
                responses.setdefault(status, answer)
