"""The apps the end-to-end benchmark serves. ``BENCH_MODE``:

* uvicorn (``app``): ``bare``; ``peer`` (Starlette's ``AuthenticationMiddleware`` with a
  dict + SHA-256 backend); ``memory``, ``redis`` and ``postgres`` (ours, ``@require_scopes``
  route; ``postgres`` counts limits in Redis with ``BENCH_PG_LIMITER=1``).
* gunicorn (``wsgi``): ``flask-bare``, ``flask-memory`` (ours).

``BENCH_GC_FREEZE=1`` moves every object alive after the app is built out of the collector's
reach (``gc.freeze()``), as long-running services commonly do.

For the memory modes the app creates its key itself and writes it to ``BENCH_KEY_FILE`` (a
benchmark-only hand-off); for ``redis`` the benchmark creates the keys in ``BENCH_REDIS_URL``.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from benchmarks.asgi import _ours_guarded, bare_app, peer_app
from nowramp_auth import Authenticator, KeyManager, MemoryKeyStore, RedisKeyStore
from nowramp_auth.starlette import ApiKeyMiddleware

MODE = os.environ.get("BENCH_MODE", "bare")


def _memory_authenticator() -> Authenticator:
    store = MemoryKeyStore()
    issued = KeyManager(store).create(scopes=["quotes:read"], allowed_ips=["127.0.0.0/8"])
    Path(os.environ["BENCH_KEY_FILE"]).write_text(issued.secret)
    return Authenticator(store)


def _postgres_store() -> Any:
    from nowramp_auth import PostgresKeyStore, RedisRateLimiter

    limiter = None
    if os.environ.get("BENCH_PG_LIMITER"):
        limiter = RedisRateLimiter.from_url(
            os.environ["BENCH_REDIS_URL"], namespace=os.environ["BENCH_NAMESPACE"]
        )
    return PostgresKeyStore.from_url(
        os.environ["BENCH_POSTGRES_URL"],
        schema=os.environ["BENCH_POSTGRES_SCHEMA"],
        rate_limiter=limiter,
    )


def _asgi() -> Starlette:
    if MODE == "bare":
        return bare_app()
    if MODE == "peer":
        return peer_app()
    if MODE == "memory":
        auth = _memory_authenticator()
    elif MODE == "postgres":
        auth = Authenticator(_postgres_store())
    else:
        auth = Authenticator(
            RedisKeyStore.from_url(
                os.environ["BENCH_REDIS_URL"], namespace=os.environ["BENCH_NAMESPACE"]
            )
        )
    return Starlette(
        routes=[Route("/quotes", _ours_guarded)],
        middleware=[Middleware(ApiKeyMiddleware, authenticator=auth)],
    )


def _wsgi() -> Any:
    from flask import Flask, jsonify

    from nowramp_auth.wsgi import ApiKeyMiddleware as WsgiMiddleware
    from nowramp_auth.wsgi import require_scopes as wsgi_scopes

    flask = Flask("bench")

    def quotes() -> Any:
        return jsonify({"quotes": []})

    if MODE == "flask-bare":
        flask.add_url_rule("/quotes", "quotes", quotes)
        return flask
    flask.add_url_rule("/quotes", "quotes", wsgi_scopes("quotes:read")(quotes))
    flask.wsgi_app = WsgiMiddleware(  # type: ignore[method-assign]
        flask.wsgi_app, authenticator=_memory_authenticator()
    )
    return flask


app = _wsgi() if MODE.startswith("flask") else _asgi()
wsgi = app
if os.environ.get("BENCH_GC_FREEZE"):  # see benchmarks/e2e.py
    gc.collect()
    gc.freeze()
