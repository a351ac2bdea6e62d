"""Small real apps protected by the middlewares, shared by the adapter tests."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from flask import request as flask_request
from litestar import Litestar, get
from litestar.middleware import DefineMiddleware
from quart import Quart
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from nowramp_auth import Authenticator, current_principal
from nowramp_auth import litestar as litestar_adapter
from nowramp_auth import quart as quart_adapter
from nowramp_auth import starlette as asgi_adapter
from nowramp_auth import wsgi as wsgi_adapter


def _whoami_payload() -> dict[str, Any]:
    principal = current_principal()
    assert principal is not None
    return {
        "key_id": principal.key_id,
        "kind": principal.kind,
        "scopes": sorted(principal.scopes),
        "project_id": principal.project_id,
    }


def starlette_app(auth: Authenticator, **options: Any) -> Starlette:
    @asgi_adapter.require_scopes("quotes:read")
    async def quotes(request: Request) -> JSONResponse:
        return JSONResponse({"quotes": [], **_whoami_payload()})

    @asgi_adapter.require_scopes("orders:write")
    def create_order(request: Request) -> JSONResponse:  # a plain def endpoint
        return JSONResponse({"created": True, **_whoami_payload()}, status_code=201)

    async def whoami(request: Request) -> JSONResponse:
        user = request.user
        return JSONResponse(
            {
                **_whoami_payload(),
                "user": user.display_name,
                "auth_scopes": sorted(request.auth.scopes),
            }
        )

    @requires("customers:read")  # Starlette's own decorator
    async def customers(request: Request) -> JSONResponse:
        return JSONResponse({"customers": []})

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    class Wallets(HTTPEndpoint):
        @asgi_adapter.require_scopes("wallets:read")
        async def get(self, request: Request) -> JSONResponse:
            return JSONResponse({"wallets": []})

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        principal = current_principal()
        await websocket.send_json({"key_id": principal.key_id if principal else None})
        await websocket.close()

    app = Starlette(
        routes=[
            Route("/quotes", quotes),
            Route("/orders", create_order, methods=["POST"]),
            Route("/whoami", whoami),
            Route("/customers", customers),
            Route("/health", health),
            Route("/docs/page", health),
            Route("/wallets", Wallets),
            WebSocketRoute("/ws", ws),
        ]
    )
    options.setdefault("public_paths", ["/health", "/docs*"])
    app.add_middleware(asgi_adapter.ApiKeyMiddleware, authenticator=auth, **options)
    return app


def flask_app(auth: Authenticator, **options: Any) -> Flask:
    app = Flask(__name__)

    @app.get("/quotes")
    @wsgi_adapter.require_scopes("quotes:read")
    def quotes() -> Any:
        return jsonify({"quotes": [], **_whoami_payload()})

    @app.post("/orders")
    @wsgi_adapter.require_scopes("orders:write")
    def create_order() -> Any:
        return jsonify({"created": True, **_whoami_payload()}), 201

    @app.get("/whoami")
    def whoami() -> Any:
        principal = flask_request.environ[wsgi_adapter.PRINCIPAL_ENVIRON_KEY]
        return jsonify({**_whoami_payload(), "environ_key_id": principal.key_id})

    @app.get("/customers")
    @wsgi_adapter.require_scopes("customers:read")
    async def customers() -> Any:  # an async Flask view
        return jsonify({"customers": []})

    @app.get("/wallets")
    @wsgi_adapter.require_scopes("wallets:read")
    def wallets() -> Any:
        return jsonify({"wallets": []})

    @app.get("/health")
    def health() -> Any:
        return "ok"

    @app.get("/docs/page")
    def docs() -> Any:
        return "ok"

    options.setdefault("public_paths", ["/health", "/docs*"])
    app.wsgi_app = wsgi_adapter.ApiKeyMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, authenticator=auth, **options
    )
    return app


def litestar_app(auth: Authenticator, **options: Any) -> Litestar:
    """A Litestar app serving what the fuzz suite calls: /quotes, /health and /docs/page."""

    @get("/quotes", guards=[litestar_adapter.scopes_guard("quotes:read")])
    async def quotes() -> dict[str, Any]:
        return {"quotes": [], **_whoami_payload()}

    @get(["/health", "/docs/page"])
    async def health() -> str:
        return "ok"

    options.setdefault("public_paths", ["/health", "/docs*"])
    middleware = DefineMiddleware(litestar_adapter.ApiKeyMiddleware, authenticator=auth, **options)
    handlers = [quotes, health, litestar_adapter.widget_sessions_route()]
    return Litestar(handlers, middleware=[middleware], openapi_config=None)


def quart_app(auth: Authenticator, **options: Any) -> Quart:
    """A Quart app serving what the fuzz suite calls: /quotes, /health and /docs/page."""
    app = Quart(__name__)

    @app.get("/quotes")
    @quart_adapter.require_scopes("quotes:read")
    async def quotes() -> Any:
        return {"quotes": [], **_whoami_payload()}

    @app.get("/health")
    @app.get("/docs/page")
    async def health() -> str:
        return "ok"

    options.setdefault("public_paths", ["/health", "/docs*"])
    app.asgi_app = quart_adapter.ApiKeyMiddleware(  # type: ignore[method-assign]
        app.asgi_app, authenticator=auth, **options
    )
    return app
