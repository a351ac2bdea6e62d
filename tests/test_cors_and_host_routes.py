"""CORS preflights pass through unauthenticated in every adapter (so CORS middleware works
in either order), route scopes follow Starlette ``Host`` routing (and a scope refusal on one
host spends no quota on another), and DRF's per-method scopes treat HEAD as GET and OPTIONS
as needing none."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import django
import pytest
from django.test import Client
from flask import Flask
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Host, Route, Router
from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

from nowramp_auth import RateLimit
from nowramp_auth import starlette as asgi_adapter
from nowramp_auth import wsgi as wsgi_adapter
from nowramp_auth.testing import auth_kit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_site.settings")
django.setup()

from tests.django_site import auth as site  # noqa: E402  (needs configured settings)

ORIGIN = "https://widget.example"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


@asgi_adapter.require_scopes("quotes:read")
async def quotes(request: Request) -> JSONResponse:
    return JSONResponse({"quotes": []})


@pytest.mark.parametrize("cors_outside", [False, True], ids=["cors-inside", "cors-outside"])
def test_starlette_preflights_pass_in_either_order(cors_outside: bool):
    kit = auth_kit()
    app = Starlette(routes=[Route("/quotes", quotes, methods=["GET", "POST"])])
    cors = {"allow_origins": [ORIGIN], "allow_methods": ["*"], "allow_headers": ["*"]}
    if cors_outside:
        app.add_middleware(asgi_adapter.ApiKeyMiddleware, authenticator=kit.authenticator)
        app.add_middleware(CORSMiddleware, **cors)
    else:  # the common order: CORS added first, so ours runs first
        app.add_middleware(CORSMiddleware, **cors)
        app.add_middleware(asgi_adapter.ApiKeyMiddleware, authenticator=kit.authenticator)
    client = TestClient(app)
    answer = client.options("/quotes", headers=PREFLIGHT)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    # Not a preflight: an OPTIONS without the CORS header still needs a credential, and so
    # does the real request that follows a preflight.
    assert client.options("/quotes").status_code == 401
    assert client.post("/quotes", headers={"Origin": ORIGIN}).status_code == 401
    key = kit.key("quotes:read")
    assert client.get("/quotes", headers={"X-API-Key": key.secret}).status_code == 200


def test_wsgi_preflights_pass():
    kit = auth_kit()
    app = Flask(__name__)

    @app.route("/quotes", methods=["GET", "POST"])
    @wsgi_adapter.require_scopes("quotes:read")
    def flask_quotes() -> dict[str, list[str]]:
        return {"quotes": []}

    app.wsgi_app = wsgi_adapter.ApiKeyMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, authenticator=kit.authenticator
    )
    client = WerkzeugClient(app)
    assert client.options("/quotes", headers=PREFLIGHT).status_code == 200
    assert client.options("/quotes").status_code == 401
    assert client.post("/quotes").status_code == 401


def test_django_preflights_pass():
    client = Client()
    preflight = client.options("/drf/orders", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert client.options("/drf/orders").status_code == 401


def test_drf_head_needs_gets_scopes_and_options_none():
    client = Client()
    reader = site.manager.create(scopes=["orders:read"])
    writer = site.manager.create(scopes=["orders:write"])
    assert client.head("/drf/orders", headers={"X-API-Key": reader.secret}).status_code == 200
    refused = client.head("/drf/orders", headers={"X-API-Key": writer.secret})
    assert refused.status_code == 403
    described = client.options("/drf/orders", headers={"X-API-Key": writer.secret})
    assert described.status_code == 200 and json.loads(described.content)["name"]
    # DELETE is not in the dict: still refused.
    assert client.delete("/drf/orders", headers={"X-API-Key": reader.secret}).status_code == 403


@asgi_adapter.require_scopes("orders:read")
async def list_orders(request: Request) -> JSONResponse:
    return JSONResponse({"orders": [], "host": "api"})


@asgi_adapter.require_scopes("orders:write")
async def write_orders(request: Request) -> JSONResponse:
    return JSONResponse({"orders": "written"})


@pytest.mark.parametrize("plain_first", [True, False], ids=["plain-first", "host-first"])
def test_route_scopes_follow_host_routing_and_spend_no_quota(plain_first: bool):
    kit = auth_kit()
    app = Starlette(
        routes=[
            Host("api.example", app=Router(routes=[Route("/orders", list_orders)])),
            Route("/orders", write_orders),
        ]
    )
    app.add_middleware(asgi_adapter.ApiKeyMiddleware, authenticator=kit.authenticator)
    reader = kit.key("orders:read", rate_limit=RateLimit(3, timedelta(hours=1)))
    client = TestClient(app)
    headers = {"X-API-Key": reader.secret}
    api = {**headers, "Host": "api.example"}
    answers: list[tuple[str, int]] = []
    if plain_first:
        answers += [("plain", client.get("/orders", headers=headers).status_code) for _ in range(3)]
    answers += [("api", client.get("/orders", headers=api).status_code) for _ in range(3)]
    answers += [("plain", client.get("/orders", headers=headers).status_code) for _ in range(2)]
    answers += [("api", client.get("/orders", headers=api).status_code)]
    expected = [("plain", 403)] * 3 if plain_first else []
    expected += [("api", 200)] * 3 + [("plain", 403)] * 2 + [("api", 429)]
    assert answers == expected
    assert kit.manager.get(reader.key.id).request_count == 3
