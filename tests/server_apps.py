"""Apps served by real server processes (uvicorn, gunicorn) in the tests.

Configuration comes from the environment: the Redis URL and namespace the test process also
uses to create keys, so the server and the test share one key store.
"""

from __future__ import annotations

import os

from nowramp_auth import Authenticator, RedisKeyStore
from tests.apps import flask_app, starlette_app

_store = RedisKeyStore.from_url(
    os.environ["NOWRAMP_TEST_REDIS_URL"],
    namespace=os.environ["NOWRAMP_TEST_NAMESPACE"],
    max_connections=int(os.environ.get("NOWRAMP_TEST_MAX_CONNECTIONS", "50")),
)
# Loopback is a trusted proxy unless the test says otherwise (an empty value: none).
_trusted = os.environ.get("NOWRAMP_TEST_TRUSTED_PROXIES", "127.0.0.0/8").split()
_auth = Authenticator(_store, trusted_proxies=_trusted)

asgi_app = starlette_app(_auth)
wsgi_app = flask_app(_auth)
