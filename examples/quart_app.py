"""Quart + nowramp_auth in one file.

Run: uvicorn examples.quart_app:app --no-proxy-headers
"""

from quart import Quart

from nowramp_auth import Authenticator, KeyManager, MemoryKeyStore, current_principal
from nowramp_auth.quart import ApiKeyMiddleware, require_scopes

store = MemoryKeyStore()  # PostgresKeyStore / RedisKeyStore in production
manager = KeyManager(store)
print("example key:", manager.create(scopes=["quotes:read"], name="example").secret)  # shown once
app = Quart(__name__)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/quotes")
@require_scopes("quotes:read")
async def quotes() -> dict[str, object]:
    principal = current_principal()
    return {"quotes": [], "key_id": principal.key_id if principal else None}


@app.get("/orders")
@require_scopes("orders:read")
def orders() -> dict[str, list[str]]:  # sync views work too
    return {"orders": []}


app.asgi_app = ApiKeyMiddleware(  # type: ignore[method-assign]
    app.asgi_app, authenticator=Authenticator(store), public_paths=["/health"]
)
