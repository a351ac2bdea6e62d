"""Flask + nowramp_auth in one file. Run: flask --app examples.flask_app run"""

from flask import Flask, jsonify

from nowramp_auth import Authenticator, KeyManager, MemoryKeyStore, current_principal
from nowramp_auth.wsgi import ApiKeyMiddleware, require_scopes

store = MemoryKeyStore()  # RedisKeyStore.from_url("redis://...") in production
manager = KeyManager(store)
print("example key:", manager.create(scopes=["quotes:read"], name="example").secret)  # shown once
app = Flask(__name__)
app.wsgi_app = ApiKeyMiddleware(  # type: ignore[method-assign]
    app.wsgi_app, authenticator=Authenticator(store), public_paths=["/health"]
)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/quotes")
@require_scopes("quotes:read")
def quotes():  # type: ignore[no-untyped-def]
    principal = current_principal()
    return jsonify(quotes=[], key_id=principal.key_id if principal else None)


@app.post("/orders")
@require_scopes("orders:write")
def create_order():  # type: ignore[no-untyped-def]
    return jsonify(created=True), 201
