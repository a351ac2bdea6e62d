"""Litestar + nowramp_auth in one file.

Run: uvicorn examples.litestar_app:app --no-proxy-headers
"""

from litestar import Litestar, Request, get
from litestar.middleware import DefineMiddleware

from nowramp_auth import Authenticator, KeyManager, MemoryKeyStore, Principal
from nowramp_auth.litestar import (
    ApiKeyMiddleware,
    document_auth,
    scopes_guard,
    widget_sessions_route,
)

store = MemoryKeyStore()  # PostgresKeyStore / RedisKeyStore in production
manager = KeyManager(store)
print("example key:", manager.create(scopes=["quotes:read"], name="example").secret)  # shown once
PUBLIC = ["/health", "/schema*"]  # /schema: Litestar's OpenAPI document and its viewers


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/quotes/{quote_id:str}", guards=[scopes_guard("quotes:read")])
async def get_quote(
    quote_id: str, request: Request[Principal, object, object], currency: str = "USD"
) -> dict[str, object]:
    return {"quote_id": quote_id, "currency": currency, "key_id": request.user.key_id}


@get("/orders", guards=[scopes_guard("orders:read")])
async def orders() -> dict[str, list[str]]:
    return {"orders": []}


app = Litestar(
    [health, get_quote, orders, widget_sessions_route()],  # POST /widget/sessions
    middleware=[
        DefineMiddleware(ApiKeyMiddleware, authenticator=Authenticator(store), public_paths=PUBLIC)
    ],
)
document_auth(app)  # OpenAPI: the X-API-Key scheme and 401/403/429/503 on protected operations
