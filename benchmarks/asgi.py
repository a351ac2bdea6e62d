"""ASGI in-process: direct ASGI calls, no network. Bare Starlette, Starlette's own
AuthenticationMiddleware with a hand-rolled dict/SHA-256 backend (on a plain route and with
``@requires``), and our middleware on the memory store, on Redis with a warm cache, on Redis
with the cache off, and with a rate limit. Refusals: a missing key, a bad checksum and a
well-formed unknown key (ours with a ``MemoryAuditLog`` attached) against the peer's refusal
of an unknown key (its ``on_error`` 400)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    SimpleUser,
    requires,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from nowramp_auth import (
    Authenticator,
    KeyManager,
    KeyStore,
    MemoryAuditLog,
    MemoryKeyStore,
    RateLimit,
)
from nowramp_auth._keys import generate_key
from nowramp_auth.starlette import ApiKeyMiddleware, require_scopes

from ._rounds import Samples, interleaved


async def _bare(request: Request) -> JSONResponse:
    return JSONResponse({"quotes": []})


@requires("quotes:read")
async def _starlette_guarded(request: Request) -> JSONResponse:
    return JSONResponse({"quotes": []})


@require_scopes("quotes:read")
async def _ours_guarded(request: Request) -> JSONResponse:
    return JSONResponse({"quotes": []})


class DictBackend(AuthenticationBackend):
    """What a team would hand-roll: SHA-256 of the header, looked up in a dict."""

    def __init__(self, keys: dict[str, list[str]]) -> None:
        self.keys = {hashlib.sha256(k.encode()).hexdigest(): s for k, s in keys.items()}

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        key = conn.headers.get("x-api-key")
        if not key:
            return None
        scopes = self.keys.get(hashlib.sha256(key.encode()).hexdigest())
        if scopes is None:
            raise AuthenticationError("invalid key")
        return AuthCredentials(scopes), SimpleUser("partner")


def _runner(
    app: Any, key: str | None, expect: int = 200, concurrent: int = 1
) -> Callable[[int], None]:
    """``run(n)``: ``n`` requests to ``app``, one at a time or ``concurrent`` at once (then
    ``n`` is a multiple of it)."""
    headers = [(b"host", b"bench"), (b"accept", b"*/*")]
    if key is not None:
        headers.append((b"x-api-key", key.encode()))
    template = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/quotes",
        "raw_path": b"/quotes",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def many(n: int) -> None:
        if concurrent == 1:
            for _ in range(n):
                await app(dict(template), receive, send)
            return
        for _ in range(n // concurrent):
            await asyncio.gather(*[app(dict(template), receive, send) for _ in range(concurrent)])

    loop = asyncio.new_event_loop()

    def run(n: int) -> None:
        loop.run_until_complete(many(n))
        if statuses and statuses[-1] != expect:
            raise RuntimeError(f"benchmark request answered {statuses[-1]}, not {expect}")
        statuses.clear()

    return run


def _ours(
    store: KeyStore,
    limit: RateLimit | None = None,
    audit: MemoryAuditLog | None = None,
    metrics: Any = None,
) -> tuple[Starlette, str]:
    issued = KeyManager(store).create(
        scopes=["quotes:read", "orders:read"],
        allowed_ips=["127.0.0.0/8", "10.0.0.0/8"],
        rate_limit=limit,
    )
    auth = Authenticator(store, audit=audit, metrics=metrics)
    app = Starlette(
        routes=[Route("/quotes", _ours_guarded)],
        middleware=[Middleware(ApiKeyMiddleware, authenticator=auth)],
    )
    return app, issued.secret


PEER = "Starlette AuthenticationMiddleware (dict + SHA-256)"
PEER_REFUSAL = "Starlette AuthenticationMiddleware refuses an unknown key (400)"
OURS = "ours, memory store"
REFUSALS = (
    "ours refuses: missing key",
    "ours refuses: bad checksum",
    "ours refuses: well-formed unknown key",
)


HAND_KEY = "hand-rolled-key-0123456789abcdef0123456789"
"""The key every hand-rolled peer (ASGI, WSGI, end to end) accepts."""

BARE_KEY = generate_key("test")[0]
"""What the bare apps receive in ``X-API-Key`` (and never read): every case serves the same
request, so that parsing the header, which a server does whatever checks the key, is not
counted as the cost of authenticating it."""


def bare_app() -> Starlette:
    """Starlette with the one route and no authentication."""
    return Starlette(routes=[Route("/quotes", _bare)])


def peer_app(*, requires: bool = False) -> Starlette:
    """Starlette's ``AuthenticationMiddleware`` with the dict + SHA-256 backend accepting
    :data:`HAND_KEY`, on a plain route or (``requires``) one with Starlette's ``@requires``."""
    backend = DictBackend({HAND_KEY: ["quotes:read"]})
    endpoint = _starlette_guarded if requires else _bare
    return Starlette(
        routes=[Route("/quotes", endpoint)],
        middleware=[Middleware(AuthenticationMiddleware, backend=backend)],
    )


def run(
    *, rounds: int, iterations: int, redis_url: str | None, samples: Samples | None = None
) -> dict[str, float]:
    bare = bare_app()
    peer = peer_app()
    peer_requires = peer_app(requires=True)
    ours_memory, memory_key = _ours(MemoryKeyStore())
    audited, audited_key = _ours(MemoryKeyStore(), audit=MemoryAuditLog())
    typo = audited_key[:-1] + ("A" if audited_key[-1] != "A" else "B")
    cases = {
        "bare Starlette": _runner(bare, BARE_KEY),
        PEER: _runner(peer, HAND_KEY),
        PEER + " + @requires": _runner(peer_requires, HAND_KEY),
        OURS: _runner(ours_memory, memory_key),
        PEER_REFUSAL: _runner(peer, "unknown-key", expect=400),
        "ours refuses: missing key": _runner(audited, None, expect=401),
        "ours refuses: bad checksum": _runner(audited, typo, expect=401),
        "ours refuses: well-formed unknown key": _runner(
            audited, generate_key("test")[0], expect=401
        ),
    }
    stores: list[Any] = []
    if redis_url is not None:
        from nowramp_auth import RedisKeyStore

        warm = RedisKeyStore.from_url(redis_url, namespace="bench-warm")
        cold = RedisKeyStore.from_url(redis_url, namespace="bench-cold", cache_ttl=0)
        limited = RedisKeyStore.from_url(redis_url, namespace="bench-limited")
        stores = [warm, cold, limited]
        app, key = _ours(warm)
        cases["ours, Redis, warm cache"] = _runner(app, key)
        app, key = _ours(cold)
        cases["ours, Redis, cache off (1 round trip)"] = _runner(app, key)
        app, key = _ours(limited, RateLimit(10**9, timedelta(hours=1)))
        cases["ours, Redis, warm cache, rate-limited key"] = _runner(app, key)
        for store in stores:
            store.get_key("key_warmup00000000")  # start the invalidation listener
            store.subscribed.wait(5)
    try:
        return interleaved(cases, rounds=rounds, iterations=iterations, samples=samples)
    finally:
        for store in stores:
            store.close()
