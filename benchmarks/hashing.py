"""Digests on the request path, each in a middleware that only hashes the ``X-API-Key``
header (a 64-byte key, as ours are), under Starlette and under Flask: hashlib's OpenSSL
SHA-256 against CPython's builtin SHA-256 (the store's digest on the general path,
:data:`nowramp_auth._keys.request_path_sha256`) and BLAKE2s (the fast path's digest of a key
already verified, :func:`nowramp_auth._fast_path.cache_digest`). A tight loop of hashes
favours OpenSSL; inside a real request, after the framework has evicted OpenSSL's longer call
path from the CPU caches, the builtins cost less; and a 64-byte key is two SHA-256 blocks but
one BLAKE2s block."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from nowramp_auth._keys import request_path_sha256

from . import asgi, wsgi
from ._rounds import interleaved

Hasher = Callable[[bytes], Any]
HASHERS: dict[str, Hasher | None] = {
    "no hashing": None,
    "hashlib.sha256 (OpenSSL)": hashlib.sha256,
    "builtin SHA-256 (our store digest)": request_path_sha256,
    "BLAKE2s (our fast path)": hashlib.blake2s,
}
KEY = "ramp_test_" + "A" * 54


class _HashingAsgi:
    def __init__(self, app: ASGIApp, hasher: Hasher | None) -> None:
        self.app = app
        self.hasher = hasher

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        for name, value in scope["headers"]:
            if name == b"x-api-key" and self.hasher is not None:
                self.hasher(value).digest()
        await self.app(scope, receive, send)


class _HashingWsgi:
    def __init__(self, app: Any, hasher: Hasher | None) -> None:
        self.app = app
        self.hasher = hasher

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        value = environ.get("HTTP_X_API_KEY")
        if value and self.hasher is not None:
            self.hasher(value.encode("latin-1")).digest()
        return self.app(environ, start_response)


def run(*, rounds: int, iterations: int) -> dict[str, float]:
    """Microseconds per request of each hasher's middleware, by framework."""
    cases: dict[str, Callable[[int], None]] = {}
    cases["Starlette, bare"] = asgi._runner(Starlette(routes=[Route("/quotes", asgi._bare)]), None)
    for name, hasher in HASHERS.items():
        app = Starlette(
            routes=[Route("/quotes", asgi._bare)],
            middleware=[Middleware(_HashingAsgi, hasher=hasher)],
        )
        cases[f"Starlette, {name}"] = asgi._runner(app, KEY)
    cases["Flask, bare"] = wsgi._runner(wsgi._flask(guarded=False), None)
    for name, hasher in HASHERS.items():
        flask = wsgi._flask(guarded=False)
        flask.wsgi_app = _HashingWsgi(flask.wsgi_app, hasher)  # type: ignore[method-assign]
        cases[f"Flask, {name}"] = wsgi._runner(flask, KEY)
    return interleaved(cases, rounds=rounds, iterations=iterations // 2)
