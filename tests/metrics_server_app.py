"""The test apps with PrometheusMetrics and a ``/metrics`` endpoint, for real servers.

Like :mod:`tests.server_apps`, configured from the environment (the Redis URL and namespace
the test process also uses to create keys).
"""

from __future__ import annotations

import os

from flask import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route

from nowramp_auth import Authenticator, RedisKeyStore
from nowramp_auth.metrics import PrometheusMetrics
from tests.apps import flask_app, starlette_app

_store = RedisKeyStore.from_url(
    os.environ["NOWRAMP_TEST_REDIS_URL"], namespace=os.environ["NOWRAMP_TEST_NAMESPACE"]
)
_auth = Authenticator(_store, metrics=PrometheusMetrics())
_public = ["/health", "/metrics"]

asgi_app = starlette_app(_auth, public_paths=_public)


async def _metrics(request: Request) -> StarletteResponse:
    return StarletteResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)


asgi_app.router.routes.append(Route("/metrics", _metrics))

wsgi_app = flask_app(_auth, public_paths=_public)
wsgi_app.add_url_rule(
    "/metrics",
    "metrics",
    lambda: Response(generate_latest(), content_type=CONTENT_TYPE_LATEST),
)
