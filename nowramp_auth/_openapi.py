"""Make ``require_scopes`` routes show the ``X-API-Key`` scheme in FastAPI's OpenAPI.

FastAPI builds its docs from an endpoint's signature. The decorator adds one hidden
keyword-only ``Security(APIKeyHeader)`` parameter (which the guard drops before calling the
endpoint); Starlette ignores signatures, so this is harmless there. Without FastAPI
installed, nothing happens.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["OPENAPI_PARAM", "declare_api_key_security"]

OPENAPI_PARAM = "nowramp_api_key"


def declare_api_key_security(wrapper: Callable[..., Any], endpoint: Callable[..., Any]) -> None:
    """Give ``wrapper`` the signature of ``endpoint`` plus the hidden security parameter."""
    try:
        from fastapi import Security

        from .fastapi import api_key_header
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
