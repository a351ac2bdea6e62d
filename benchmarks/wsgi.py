"""WSGI in-process: bare Flask, Flask with a hand-rolled ``before_request`` SHA-256 check
(the peer), and Flask with our middleware (memory, Redis warm)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from typing import Any

from flask import Flask, abort, jsonify, request
from werkzeug.test import EnvironBuilder

from nowramp_auth import Authenticator, KeyManager, KeyStore, MemoryKeyStore
from nowramp_auth.wsgi import ApiKeyMiddleware, require_scopes

from ._rounds import Samples, interleaved
from .asgi import BARE_KEY, HAND_KEY


def _flask(guarded: bool) -> Flask:
    app = Flask("bench")

    def quotes() -> Any:
        return jsonify({"quotes": []})

    view = require_scopes("quotes:read")(quotes) if guarded else quotes
    app.add_url_rule("/quotes", "quotes", view)
    return app


PEER = "Flask + before_request SHA-256 check"


def _peer(key: str) -> Flask:
    """What a team would hand-roll: SHA-256 of the header, looked up in a dict."""
    app = _flask(guarded=False)
    keys = {hashlib.sha256(key.encode()).hexdigest(): ["quotes:read"]}

    @app.before_request
    def check() -> None:
        presented = request.headers.get("X-API-Key")
        if not presented or hashlib.sha256(presented.encode()).hexdigest() not in keys:
            abort(401)

    return app


def _runner(app: Any, key: str | None) -> Callable[[int], None]:
    headers = {"X-API-Key": key} if key else {}
    base = EnvironBuilder(
        path="/quotes", headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"}
    ).get_environ()
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    def run(n: int) -> None:
        for _ in range(n):
            environ = dict(base)
            environ["wsgi.input"] = io.BytesIO(b"")
            body = app(environ, start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close:
                close()
        if statuses and not statuses[-1].startswith("200"):
            raise RuntimeError(f"benchmark request failed with {statuses[-1]}")
        statuses.clear()

    return run


def _ours(store: KeyStore, metrics: Any = None) -> tuple[Any, str]:
    issued = KeyManager(store).create(scopes=["quotes:read"], allowed_ips=["127.0.0.0/8"])
    app = _flask(guarded=True)
    app.wsgi_app = ApiKeyMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, authenticator=Authenticator(store, metrics=metrics)
    )
    return app, issued.secret


def run(
    *, rounds: int, iterations: int, redis_url: str | None, samples: Samples | None = None
) -> dict[str, float]:
    memory_app, memory_key = _ours(MemoryKeyStore())
    cases = {
        "bare Flask": _runner(_flask(guarded=False), BARE_KEY),
        PEER: _runner(_peer(HAND_KEY), HAND_KEY),
        "Flask + ours, memory store": _runner(memory_app, memory_key),
    }
    store = None
    if redis_url is not None:
        from nowramp_auth import RedisKeyStore

        store = RedisKeyStore.from_url(redis_url, namespace="bench-wsgi")
        app, key = _ours(store)
        store.get_key("key_warmup00000000")
        store.subscribed.wait(5)
        cases["Flask + ours, Redis, warm cache"] = _runner(app, key)
    try:
        return interleaved(cases, rounds=rounds, iterations=iterations, samples=samples)
    finally:
        if store is not None:
            store.close()
