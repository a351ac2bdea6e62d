"""The app uvicorn serves in the end-to-end benchmark. ``BENCH_MODE``: bare, memory or redis.

For ``memory`` the app creates its key itself and writes it to ``BENCH_KEY_FILE`` (a
benchmark-only hand-off); for ``redis`` the benchmark creates the key in ``BENCH_REDIS_URL``.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from nowramp_auth import Authenticator, KeyManager, MemoryKeyStore, RedisKeyStore
from nowramp_auth.starlette import ApiKeyMiddleware, require_scopes

MODE = os.environ.get("BENCH_MODE", "bare")


async def bare(request: Request) -> JSONResponse:
    return JSONResponse({"quotes": []})


@require_scopes("quotes:read")
async def guarded(request: Request) -> JSONResponse:
    return JSONResponse({"quotes": []})


def _build() -> Starlette:
    if MODE == "bare":
        return Starlette(routes=[Route("/quotes", bare)])
    if MODE == "memory":
        store = MemoryKeyStore()
        issued = KeyManager(store).create(scopes=["quotes:read"], allowed_ips=["127.0.0.0/8"])
        Path(os.environ["BENCH_KEY_FILE"]).write_text(issued.secret)
        auth = Authenticator(store)
    else:
        auth = Authenticator(
            RedisKeyStore.from_url(
                os.environ["BENCH_REDIS_URL"], namespace=os.environ["BENCH_NAMESPACE"]
            )
        )
    return Starlette(
        routes=[Route("/quotes", guarded)],
        middleware=[Middleware(ApiKeyMiddleware, authenticator=auth)],
    )


app = _build()
