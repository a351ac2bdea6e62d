"""FastAPI: signatures FastAPI inspects survive `require_scopes`, 422s still happen, sync and
async path operations, the dependency form, and the OpenAPI security scheme."""

from __future__ import annotations

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from nowramp_auth import Principal
from nowramp_auth.fastapi import scopes
from nowramp_auth.starlette import ApiKeyMiddleware, require_scopes
from nowramp_auth.testing import AuthKit, auth_kit


class Order(BaseModel):
    amount: int
    currency: str


@pytest.fixture
def kit() -> AuthKit:
    return auth_kit()


@pytest.fixture
def client(kit: AuthKit) -> TestClient:
    app = FastAPI()

    @app.get("/quotes/{quote_id}")
    @require_scopes("quotes:read")
    async def get_quote(quote_id: int, currency: str = "USD") -> dict[str, object]:
        return {"quote_id": quote_id, "currency": currency}

    @app.post("/orders", status_code=201)
    @require_scopes("orders:write")
    def create_order(order: Order) -> dict[str, object]:  # sync: runs in the threadpool
        return {"amount": order.amount, "currency": order.currency}

    @app.get("/customers")
    async def customers(principal: Principal = Depends(scopes("customers:read"))) -> dict:
        return {"key_id": principal.key_id}

    @app.get("/wallets")
    def wallets(principal: Principal = Depends(scopes("wallets:read"))) -> dict:
        return {"key_id": principal.key_id}

    app.add_middleware(
        ApiKeyMiddleware, authenticator=kit.authenticator, public_paths=["/openapi.json", "/docs*"]
    )
    return TestClient(app)


def test_path_and_query_parameters_survive(client: TestClient, kit: AuthKit):
    secret = kit.key("quotes:read").secret
    response = client.get("/quotes/42?currency=EUR", headers={"X-API-Key": secret})
    assert response.status_code == 200
    assert response.json() == {"quote_id": 42, "currency": "EUR"}


def test_validation_errors_are_still_422(client: TestClient, kit: AuthKit):
    secret = kit.key("quotes:read", "orders:write").secret
    assert client.get("/quotes/not-a-number", headers={"X-API-Key": secret}).status_code == 422
    bad = client.post("/orders", json={"amount": "lots"}, headers={"X-API-Key": secret})
    assert bad.status_code == 422


def test_sync_body_endpoint(client: TestClient, kit: AuthKit):
    secret = kit.key("orders:write").secret
    response = client.post(
        "/orders", json={"amount": 5, "currency": "EUR"}, headers={"X-API-Key": secret}
    )
    assert response.status_code == 201
    assert response.json() == {"amount": 5, "currency": "EUR"}


def test_decorator_refusal(client: TestClient, kit: AuthKit):
    secret = kit.key("quotes:read").secret
    response = client.post(
        "/orders", json={"amount": 5, "currency": "EUR"}, headers={"X-API-Key": secret}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "INSUFFICIENT_PERMISSIONS"


@pytest.mark.parametrize("path", ["/customers", "/wallets"])
def test_dependency_form(client: TestClient, kit: AuthKit, path: str):
    allowed = kit.key("customers:read", "wallets:read")
    assert client.get(path, headers={"X-API-Key": allowed.secret}).json() == {
        "key_id": allowed.key.id
    }
    denied = client.get(path, headers={"X-API-Key": kit.key("quotes:read").secret})
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "INSUFFICIENT_PERMISSIONS"


def test_openapi_declares_the_api_key_scheme(client: TestClient):
    spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ApiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "A NowRamp API key: ramp_live_... or ramp_test_...",
    }
    for path, method in [("/quotes/{quote_id}", "get"), ("/orders", "post"), ("/customers", "get")]:
        assert spec["paths"][path][method]["security"] == [{"ApiKeyAuth": []}]
    params = [p["name"] for p in spec["paths"]["/quotes/{quote_id}"]["get"]["parameters"]]
    assert params == ["quote_id", "currency"]  # our hidden parameter is not a query param
