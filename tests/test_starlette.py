"""Starlette specifics: WebSockets, Starlette's own `requires`, lifespan pass-through,
errors raised by route dependencies, and the current_principal contextvar."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from nowramp_auth import current_principal
from nowramp_auth.starlette import ApiKeyMiddleware
from nowramp_auth.testing import AuthKit, auth_kit
from tests.apps import starlette_app


@pytest.fixture
def kit() -> AuthKit:
    return auth_kit()


def test_websocket_accepted_with_a_key(kit: AuthKit):
    issued = kit.key("quotes:read")
    client = TestClient(starlette_app(kit.authenticator))
    with client.websocket_connect("/ws", headers={"X-API-Key": issued.secret}) as ws:
        assert ws.receive_json() == {"key_id": issued.key.id}


def test_websocket_refused_before_accept(kit: AuthKit):
    from starlette.testclient import WebSocketDenialResponse

    client = TestClient(starlette_app(kit.authenticator))
    with pytest.raises(WebSocketDenialResponse) as info, client.websocket_connect("/ws"):
        pass
    assert info.value.status_code == 401
    assert info.value.json()["error"]["code"] == "MISSING_API_KEY"


def test_websocket_closed_before_accept_without_denial_extension(kit: AuthKit):
    """Servers without the denial-response extension get a policy-violation close."""
    import asyncio

    sent: list[dict] = []

    async def run():
        async def receive():
            return {"type": "websocket.connect"}

        async def send(message):
            sent.append(message)

        middleware = ApiKeyMiddleware(
            starlette_app(kit.authenticator), authenticator=kit.authenticator
        )
        await middleware(
            {"type": "websocket", "path": "/ws", "headers": [], "client": ("203.0.113.7", 1)},
            receive,
            send,
        )

    asyncio.run(run())
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "MISSING_API_KEY"}]


def test_starlette_requires_works_with_our_middleware(kit: AuthKit):
    client = TestClient(starlette_app(kit.authenticator))
    allowed = kit.key("customers:read")
    denied = kit.key("quotes:read")
    assert client.get("/customers", headers={"X-API-Key": allowed.secret}).status_code == 200
    assert client.get("/customers", headers={"X-API-Key": denied.secret}).status_code == 403


def test_lifespan_passes_through(kit: AuthKit):
    events: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            message = await receive()
            events.append(message["type"])
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            events.append(message["type"])
            await send({"type": "lifespan.shutdown.complete"})

    with TestClient(ApiKeyMiddleware(app, authenticator=kit.authenticator)):
        pass
    assert events == ["lifespan.startup", "lifespan.shutdown"]


def test_auth_error_raised_downstream_is_rendered(kit: AuthKit):
    from nowramp_auth import AuthError, ErrorCode

    async def app(scope, receive, send):
        raise AuthError(ErrorCode.INSUFFICIENT_PERMISSIONS, required_scopes=["kyc:write"])

    issued = kit.key("quotes:read")
    client = TestClient(ApiKeyMiddleware(app, authenticator=kit.authenticator))
    response = client.get("/", headers={"X-API-Key": issued.secret})
    assert response.status_code == 403
    assert response.json()["error"]["required_scopes"] == ["kyc:write"]


def test_principal_does_not_leak_after_the_request(kit: AuthKit):
    issued = kit.key("quotes:read")
    client = TestClient(starlette_app(kit.authenticator))
    assert client.get("/quotes", headers={"X-API-Key": issued.secret}).status_code == 200
    assert current_principal() is None


def test_require_scopes_without_middleware_fails_closed():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from nowramp_auth.starlette import require_scopes

    @require_scopes("quotes:read")
    async def quotes(request):
        return PlainTextResponse("secret data")

    client = TestClient(Starlette(routes=[Route("/quotes", quotes)]))
    response = client.get("/quotes")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "MISSING_API_KEY"


@pytest.mark.parametrize("bad", [(), ("Quotes Read",), (3,)])
def test_require_scopes_validates_at_decoration(bad):
    from nowramp_auth.starlette import require_scopes

    with pytest.raises((ValueError, TypeError)):
        require_scopes(*bad)


def test_concurrent_requests_see_their_own_principal():
    import asyncio

    import httpx

    kit = auth_kit()
    keys = [kit.key("quotes:read") for _ in range(20)]
    app = starlette_app(kit.authenticator)

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            responses = await asyncio.gather(
                *[client.get("/quotes", headers={"X-API-Key": k.secret}) for k in keys * 5]
            )
        return [r.json()["key_id"] for r in responses]

    assert asyncio.run(run()) == [k.key.id for k in keys * 5]


def test_a_guarded_async_endpoint_is_a_coroutine_function_to_starlette_and_fastapi():
    # The guard of an async endpoint is a plain function returning the endpoint's coroutine
    # (no coroutine of its own per request); frameworks must still await it, never run it
    # in a thread pool.
    import asyncio
    import inspect
    import sys

    try:  # how FastAPI decides whether to await an endpoint, by version
        from fastapi.dependencies.models import _is_coroutine_callable
    except ImportError:  # older FastAPI: asyncio.iscoroutinefunction (asserted below)
        _is_coroutine_callable = asyncio.iscoroutinefunction
    from starlette._utils import is_async_callable
    from starlette.responses import PlainTextResponse

    from nowramp_auth.starlette import require_scopes

    @require_scopes("quotes:read")
    async def quotes(request):
        return PlainTextResponse("ok")

    assert is_async_callable(quotes)
    assert _is_coroutine_callable(quotes)
    assert asyncio.iscoroutinefunction(quotes)
    if sys.version_info >= (3, 12):
        assert inspect.iscoroutinefunction(quotes)
    # Outside an authenticated request the refusal is awaitable too, like the endpoint.
    refused = quotes(None)
    assert inspect.isawaitable(refused)
    response = asyncio.run(refused)
    assert response.status_code == 401 and b"MISSING_API_KEY" in response.body
