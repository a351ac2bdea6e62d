"""Prometheus metrics on a Starlette app.

Run: uvicorn examples.metrics_starlette:app --no-proxy-headers
"""

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nowramp_auth import Authenticator, KeyManager, MemoryKeyStore
from nowramp_auth.metrics import PrometheusMetrics
from nowramp_auth.starlette import ApiKeyMiddleware, require_scopes

store = MemoryKeyStore()  # RedisKeyStore.from_url("redis://...") in production
manager = KeyManager(store)
auth = Authenticator(store, metrics=PrometheusMetrics())  # prometheus_client's REGISTRY


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@require_scopes("quotes:read")
async def quotes(request: Request) -> JSONResponse:
    return JSONResponse({"quotes": []})


app = Starlette(routes=[Route("/quotes", quotes), Route("/metrics", metrics)])
# /metrics answers without a key: expose it to your scraper's network only.
app.add_middleware(ApiKeyMiddleware, authenticator=auth, public_paths=["/metrics"])
