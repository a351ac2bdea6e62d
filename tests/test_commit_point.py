"""Only a request that passes every other check uses quota, route guards included: for a
rate-limited key the adapters resolve the route and check the scopes its guards recorded
before the one limiter call, so a scope refusal gets its 403 before any 429 and spends
nothing (the commit point: see "Rate limits" in the README)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from nowramp_auth import Principal, RateLimit
from nowramp_auth.fastapi import scopes
from nowramp_auth.starlette import ApiKeyMiddleware, require_scopes
from nowramp_auth.testing import auth_kit
from tests.harness import CALLERS

LIMIT = RateLimit(3, timedelta(hours=1))


@pytest.mark.parametrize("adapter", sorted(CALLERS))
@pytest.mark.parametrize("refused_first", [True, False], ids=["refused-first", "accepted-first"])
def test_scope_refusals_spend_no_quota(adapter: str, refused_first: bool):
    kit = auth_kit()
    issued = kit.key("quotes:read", rate_limit=LIMIT)
    call = CALLERS[adapter](kit.authenticator)
    headers = [("X-API-Key", issued.secret)]
    answers = []
    if not refused_first:
        answers.append(call("GET", "/quotes", headers).status)
    for _ in range(4):  # the first of these may take the general path, the rest the fast one
        refused = call("POST", "/orders", headers)
        assert (refused.status, refused.code) == (403, "INSUFFICIENT_PERMISSIONS")
        assert "ratelimit-remaining" not in refused.headers
    answers += [call("GET", "/quotes", headers).status for _ in range(4 if refused_first else 3)]
    assert answers == [200, 200, 200, 429]
    assert kit.manager.get(issued.key.id).request_count == 3


def test_fastapi_dependency_and_decorator_are_the_commit_point():
    kit = auth_kit()
    issued = kit.key("quotes:read", rate_limit=LIMIT)
    app = FastAPI()

    @app.get("/orders")
    async def orders(principal: Principal = Depends(scopes("orders:read"))) -> dict[str, str]:
        return {"key": principal.key_id}

    @app.post("/orders")
    @require_scopes("orders:write")
    async def create_order() -> dict[str, bool]:
        return {"created": True}

    @app.get("/quotes")
    async def quotes(principal: Principal = Depends(scopes("quotes:read"))) -> dict[str, str]:
        return {"key": principal.key_id}

    app.add_middleware(ApiKeyMiddleware, authenticator=kit.authenticator)
    client = TestClient(app)
    headers = {"X-API-Key": issued.secret}
    for _ in range(3):
        assert client.get("/orders", headers=headers).status_code == 403
        assert client.post("/orders", headers=headers).status_code == 403
    statuses = [client.get("/quotes", headers=headers).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_a_scope_dependency_on_a_public_path_answers_the_standard_401():
    kit = auth_kit()
    app = FastAPI()

    @app.get("/health")
    async def health(principal: Principal = Depends(scopes("quotes:read"))) -> dict[str, str]:
        return {"key": principal.key_id}

    app.add_middleware(ApiKeyMiddleware, authenticator=kit.authenticator, public_paths=["/health"])
    answer = TestClient(app, raise_server_exceptions=False).get("/health")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "MISSING_API_KEY"


@pytest.mark.parametrize("adapter", sorted(CALLERS))
def test_scope_refusals_are_not_counted_as_usage(adapter: str):
    kit = auth_kit()
    issued = kit.key("quotes:read")  # no rate limit: only usage is at stake
    call = CALLERS[adapter](kit.authenticator)
    headers = [("X-API-Key", issued.secret)]
    for _ in range(3):
        assert call("GET", "/quotes", headers).status == 200
        assert call("POST", "/orders", headers).code == "INSUFFICIENT_PERMISSIONS"
    assert kit.manager.get(issued.key.id).request_count == 3
