"""Litestar + nowramp_auth in one file.

Run: uvicorn examples.litestar_app:app --no-proxy-headers
"""

from litestar import Litestar, Request, get
from litestar.middleware import DefineMiddleware

from nowramp_auth import Authenticator, KeyManager, MemoryKeyStore, Principal
from nowramp_auth.litestar import ApiKeyMiddleware, scopes_guard

store = MemoryKeyStore()  # PostgresKeyStore / RedisKeyStore in production
manager = KeyManager(store)
print("example key:", manager.create(scopes=["quotes:read"], name="example").secret)  # shown once


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/quotes", guards=[scopes_guard("quotes:read")])
async def quotes(request: Request[Principal, object, object]) -> dict[str, object]:
    return {"quotes": [], "key_id": request.user.key_id}


@get("/orders", guards=[scopes_guard("orders:read")])
async def orders() -> dict[str, list[str]]:
    return {"orders": []}


app = Litestar(
    [health, quotes, orders],
    middleware=[
        DefineMiddleware(
            ApiKeyMiddleware, authenticator=Authenticator(store), public_paths=["/health"]
        )
    ],
)
