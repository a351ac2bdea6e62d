"""The ``X-API-Key`` security scheme as FastAPI declares it (imports FastAPI: only modules
that run with FastAPI import this one, lazily where a Starlette app must not pay for it)."""

from __future__ import annotations

from fastapi.security import APIKeyHeader

__all__ = ["api_key_header"]

api_key_header = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKeyAuth",
    description="A NowRamp API key: ramp_live_... or ramp_test_...",
    auto_error=False,
)
"""The OpenAPI security scheme (the middleware does the checking)."""
