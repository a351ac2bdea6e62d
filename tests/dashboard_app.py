"""An app with the dashboard and a protected API route, for the real-browser test."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from nowramp_auth import Authenticator, KeyManager, MemoryAuditLog, MemoryKeyStore, RedisKeyStore
from nowramp_auth.dashboard import DashboardUser, create_dashboard
from nowramp_auth.starlette import ApiKeyMiddleware, require_scopes
from nowramp_auth.stores import KeyStore

# With NOWRAMP_TEST_REDIS_URL, instances share a Redis (accounts, sessions, keys, usage).
store: KeyStore = (
    RedisKeyStore.from_url(
        os.environ["NOWRAMP_TEST_REDIS_URL"], namespace=os.environ["NOWRAMP_TEST_NAMESPACE"]
    )
    if "NOWRAMP_TEST_REDIS_URL" in os.environ
    else MemoryKeyStore()
)
audit = MemoryAuditLog()
manager = KeyManager(store, audit=audit)


@require_scopes("quotes:read")
async def quotes(request: Request) -> JSONResponse:
    return JSONResponse({"quotes": []})


def host_app_user(request: Request) -> DashboardUser | None:
    """identify= mode: the host app's own sign-in, here a cookie naming the partner."""
    if request.cookies.get("host_session") == "alice-session":
        return DashboardUser("alice", "Alice", frozenset({"proj_partner"}))
    return None


TRUSTED = [c for c in os.environ.get("DASHBOARD_TRUSTED_PROXIES", "").split(",") if c]


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/v1/quotes", quotes),
        Mount(
            "/dashboard",
            create_dashboard(
                manager,
                admin_password=os.environ["DASHBOARD_PASSWORD"],
                audit=audit,
                trusted_proxies=TRUSTED,
            ),
        ),
        Mount("/partners", create_dashboard(manager, audit=audit, identify=host_app_user)),
    ]
)
app.add_middleware(
    ApiKeyMiddleware,
    authenticator=Authenticator(store, audit=audit),
    public_paths=["/health", "/dashboard*", "/partners*"],
)
