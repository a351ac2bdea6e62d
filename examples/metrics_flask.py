"""Prometheus metrics on a Flask app. Run: flask --app examples.metrics_flask run"""

from flask import Flask, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from nowramp_auth import Authenticator, KeyManager, MemoryKeyStore
from nowramp_auth.metrics import PrometheusMetrics
from nowramp_auth.wsgi import ApiKeyMiddleware, require_scopes

store = MemoryKeyStore()  # RedisKeyStore.from_url("redis://...") in production
manager = KeyManager(store)
auth = Authenticator(store, metrics=PrometheusMetrics())  # prometheus_client's REGISTRY
app = Flask(__name__)
# /metrics answers without a key: expose it to your scraper's network only.
app.wsgi_app = ApiKeyMiddleware(  # type: ignore[method-assign]
    app.wsgi_app, authenticator=auth, public_paths=["/metrics"]
)


@app.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(), content_type=CONTENT_TYPE_LATEST)


@app.get("/quotes")
@require_scopes("quotes:read")
def quotes():  # type: ignore[no-untyped-def]
    return jsonify(quotes=[])
