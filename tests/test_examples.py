"""The example apps the README quotes work as written."""

from __future__ import annotations

import json

from starlette.testclient import TestClient


def test_fastapi_example():
    from examples import fastapi_app

    key = fastapi_app.manager.create(scopes=["quotes:read"], project_id="p1").secret
    client = TestClient(fastapi_app.app)
    assert client.get("/health").status_code == 200
    ok = client.get("/quotes/7?currency=EUR", headers={"X-API-Key": key})
    assert ok.status_code == 200 and ok.json()["currency"] == "EUR"
    assert client.get("/quotes/7").json()["error"]["code"] == "MISSING_API_KEY"
    assert client.get("/orders", headers={"X-API-Key": key}).status_code == 403
    assert "ApiKeyAuth" in client.get("/openapi.json").json()["components"]["securitySchemes"]


def test_flask_example():
    from examples import flask_app

    key = flask_app.manager.create(scopes=["quotes:read"]).secret
    client = flask_app.app.test_client()
    assert client.get("/health").status_code == 200
    ok = client.get("/quotes", headers={"X-API-Key": key})
    assert ok.status_code == 200 and json.loads(ok.data)["quotes"] == []
    refused = client.post("/orders", headers={"X-API-Key": key})
    assert refused.status_code == 403
    assert json.loads(refused.data)["error"]["code"] == "INSUFFICIENT_PERMISSIONS"
