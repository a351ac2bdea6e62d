"""Litestar and Quart: the scopes their guards and decorators declare are checked with the
key (a refusal is the standard 403 JSON and spends no quota), rate-limited keys get 429 with
the RateLimit-* headers, and both run under a real uvicorn server."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from litestar import Controller, Litestar, Request, get
from litestar.middleware import DefineMiddleware
from litestar.testing import TestClient as LitestarClient
from quart import Quart

from nowramp_auth import AuthError, ErrorCode, Principal, RateLimit, current_principal
from nowramp_auth import litestar as lit
from nowramp_auth import quart as qrt
from nowramp_auth.testing import AuthKit, auth_kit
from tests.servers import serve

pytestmark = pytest.mark.smoke  # also run against the installed wheel

LIMIT = RateLimit(3, timedelta(hours=1))


def litestar_app(kit: AuthKit) -> Litestar:
    @get("/quotes", guards=[lit.scopes_guard("quotes:read")])
    async def quotes() -> dict[str, str]:
        principal = current_principal()
        return {"key": principal.key_id if principal else ""}

    class Orders(Controller):
        path = "/orders"
        guards = [lit.scopes_guard("orders:read")]  # noqa: RUF012 (Litestar's idiom)

        @get("/")
        async def list_orders(self) -> dict[str, list[str]]:
            return {"orders": []}

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @get("/whoami", guards=[lit.scopes_guard("quotes:read")])
    async def whoami(request: Request[Any, Any, Any]) -> dict[str, object]:
        scopes = list(request.auth.scopes)
        return {"is_principal": isinstance(request.user, Principal), "scopes": scopes}

    middleware = DefineMiddleware(
        lit.ApiKeyMiddleware, authenticator=kit.authenticator, public_paths=["/health"]
    )
    handlers = [quotes, Orders, health, whoami, lit.widget_sessions_route()]
    return Litestar(handlers, middleware=[middleware])


def quart_app(kit: AuthKit) -> Quart:
    app = Quart(__name__)

    @app.get("/quotes")
    @qrt.require_scopes("quotes:read")
    async def quotes() -> dict[str, str]:
        principal = current_principal()
        return {"key": principal.key_id if principal else ""}

    @app.get("/orders")
    @qrt.require_scopes("orders:read")
    def orders() -> dict[str, list[str]]:  # a sync view
        return {"orders": []}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.asgi_app = qrt.ApiKeyMiddleware(  # type: ignore[method-assign]
        app.asgi_app, authenticator=kit.authenticator, public_paths=["/health"]
    )
    return app


def calls(framework: str, kit: AuthKit):  # type: ignore[no-untyped-def]
    if framework == "litestar":
        client = LitestarClient(litestar_app(kit))
        client.__enter__()

        def get_(
            path: str, headers: dict[str, str], method: str = "GET", body: str | None = None
        ) -> httpx.Response:
            return client.request(method, path, headers=headers, content=body)

        return get_
    app = quart_app(kit)
    import asyncio

    loop = asyncio.new_event_loop()

    def get_quart(
        path: str, headers: dict[str, str], method: str = "GET", body: str | None = None
    ) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                return await c.request(method, path, headers=headers, content=body)

        return loop.run_until_complete(call())

    return get_quart


@pytest.mark.parametrize("framework", ["litestar", "quart"])
def test_scope_refusals_are_standard_and_spend_no_quota(framework: str):
    kit = auth_kit()
    key = kit.key("quotes:read", rate_limit=LIMIT)
    get_ = calls(framework, kit)
    headers = {"X-API-Key": key.secret}
    for _ in range(4):
        refused = get_("/orders/" if framework == "litestar" else "/orders", headers)
        assert refused.status_code == 403
        expected = AuthError(ErrorCode.INSUFFICIENT_PERMISSIONS, required_scopes=["orders:read"])
        assert refused.json() == expected.to_dict()
        assert "ratelimit-remaining" not in refused.headers
    answers = [get_("/quotes", headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].json() == {"key": key.key.id}
    assert answers[0].headers["ratelimit-limit"] == "3"
    assert answers[2].headers["ratelimit-remaining"] == "0"
    assert answers[3].json()["error"]["code"] == "RATE_LIMITED"
    assert int(answers[3].headers["retry-after"]) >= 1
    assert kit.manager.get(key.key.id).request_count == 3
    missing = get_("/quotes", {})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "MISSING_API_KEY"
    assert get_("/health", {}).status_code == 200


@pytest.mark.parametrize("framework", ["litestar", "quart"])
def test_widget_sessions_are_served(framework: str):
    kit = auth_kit()
    key = kit.key("quotes:read", project_id="p1")
    get_ = calls(framework, kit)
    body = json.dumps({"project_id": "p1"})
    created = get_("/widget/sessions", {"X-API-Key": key.secret}, method="POST", body=body)
    assert created.status_code == 201, created.text
    token = created.json()["session_token"]
    answer = get_("/quotes", {"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json() == {"key": key.key.id}
    other_method = get_("/widget/sessions", {"X-API-Key": key.secret})
    assert other_method.status_code == (405 if framework == "litestar" else 404)  # no view


def test_litestar_sees_the_principal_as_user_and_auth():
    kit = auth_kit()
    key = kit.key("quotes:read", "orders:read")
    with LitestarClient(litestar_app(kit)) as client:
        answer = client.get("/whoami", headers={"X-API-Key": key.secret})
        assert answer.json() == {"is_principal": True, "scopes": ["orders:read", "quotes:read"]}
        assert client.get("/orders/", headers={"X-API-Key": key.secret}).status_code == 200


def test_the_litestar_guard_alone_refuses_without_the_middleware():
    @get("/quotes", guards=[lit.scopes_guard("quotes:read")])
    async def quotes() -> dict[str, str]:
        return {}

    with LitestarClient(Litestar([quotes])) as client:
        assert client.get("/quotes").status_code == 401


@pytest.mark.parametrize(
    "app", ["tests.litestar_quart_apps:litestar", "tests.litestar_quart_apps:quart"]
)
def test_under_a_real_uvicorn_server(app: str, tmp_path):
    key_file = tmp_path / "key"
    args = ["uvicorn", app, "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning"]
    args += ["--no-proxy-headers"]
    with serve(args, {"NOWRAMP_TEST_KEY_FILE": str(key_file)}) as base:
        key = json.loads(key_file.read_text())
        with httpx.Client(base_url=base) as client:
            ok = client.get("/quotes", headers={"X-API-Key": key["reader"]})
            assert ok.status_code == 200
            orders = "/orders/" if app.endswith(":litestar") else "/orders"
            refused = client.get(orders, headers={"X-API-Key": key["reader"]})
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "INSUFFICIENT_PERMISSIONS"
            spoofed = client.get(
                "/quotes",
                headers={"X-API-Key": "ramp_live_" + "A" * 54, "X-Forwarded-For": "1.2.3.4"},
            )
            assert spoofed.status_code == 401


def test_litestar_openapi_documents_the_scheme_and_every_refusal():
    kit = auth_kit()
    app = litestar_app(kit)
    lit.document_auth(app, public_paths=["/health", "/schema*"])
    with LitestarClient(app) as client:  # the app's middleware guards /schema: send a key
        schema = client.get("/schema/openapi.json", headers={"X-API-Key": kit.key().secret})
        schema = schema.json()
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "A NowRamp API key: ramp_live_... or ramp_test_...",
    }
    codes = schema["components"]["schemas"]["ErrorResponse"]["properties"]["error"]
    assert set(codes["properties"]["code"]["enum"]) == {code.value for code in ErrorCode}
    for path in ("/quotes", "/orders", "/whoami"):
        operation = schema["paths"][path]["get"]
        assert {"ApiKeyAuth": []} in operation["security"], path
        assert {"401", "403", "429", "503"} <= set(operation["responses"]), path
        assert "RateLimit-Remaining" in operation["responses"]["429"]["headers"]
    health = schema["paths"]["/health"]["get"]
    assert "security" not in health and "401" not in health["responses"]


def test_litestar_document_auth_reads_the_middlewares_public_paths():
    kit = auth_kit()
    app = litestar_app(kit)  # its middleware: public_paths=["/health"]
    lit.document_auth(app)
    with LitestarClient(app) as client:
        paths = client.get("/schema/openapi.json", headers={"X-API-Key": kit.key().secret})
    assert "401" not in paths.json()["paths"]["/health"]["get"]["responses"]
    assert "401" in paths.json()["paths"]["/quotes"]["get"]["responses"]
