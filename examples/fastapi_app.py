"""FastAPI + nowramp_auth in one file. Run: uvicorn examples.fastapi_app:app --no-proxy-headers"""

from fastapi import Depends, FastAPI

from nowramp_auth import Authenticator, KeyManager, MemoryKeyStore, Principal, current_principal
from nowramp_auth.fastapi import document_auth, scopes
from nowramp_auth.starlette import ApiKeyMiddleware, require_scopes

store = MemoryKeyStore()  # RedisKeyStore.from_url("redis://...") in production
manager = KeyManager(store)
print(
    "example key:", manager.create(scopes=["quotes:read", "orders:read"], name="example").secret
)  # shown once
PUBLIC = ["/health", "/docs*", "/openapi.json"]
app = FastAPI(title="Partner API")
app.add_middleware(ApiKeyMiddleware, authenticator=Authenticator(store), public_paths=PUBLIC)
document_auth(app, public_paths=PUBLIC)  # OpenAPI: 401/403/429/503 on protected operations


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/quotes/{quote_id}")
@require_scopes("quotes:read")
async def get_quote(quote_id: int, currency: str = "USD") -> dict[str, object]:
    principal = current_principal()
    return {"quote_id": quote_id, "currency": currency, "key_id": principal and principal.key_id}


@app.get("/orders")
async def list_orders(principal: Principal = Depends(scopes("orders:read"))) -> dict[str, object]:
    return {"orders": [], "project_id": principal.project_id}
