"""The demo partner API: a NowRamp-style API on the in-memory store, for trying the package.

``nowramp-auth demo`` serves it with uvicorn and prints keys and ready-to-paste ``curl`` lines.
Everything lives in memory and is gone when the process stops; the keys it prints are demo
keys, printed on purpose.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

from ._audit import MemoryAuditLog
from ._authenticator import Authenticator
from ._context import current_principal
from ._manager import KeyManager
from ._models import RateLimit
from .dashboard import create_dashboard
from .starlette import ApiKeyMiddleware, require_scopes
from .stores.memory import MemoryKeyStore

__all__ = ["DemoKeys", "build_demo", "curl_lines"]

RESOURCES = ("quotes", "orders", "customers", "wallets", "kyc", "webhooks")
DEMO_PROJECT = "proj_demo"


@dataclass(frozen=True)
class DemoKeys:
    """The demo's keys (plaintext on purpose: it is a demo on an in-memory store)."""

    test: str
    live: str
    expired: str
    foreign_ip: str
    limited: str
    admin_password: str


def _resource_endpoints(resource: str) -> list[Route]:
    def make(action: str) -> Callable[[Request], Any]:
        @require_scopes(f"{resource}:{action}")
        async def endpoint(request: Request) -> JSONResponse:
            principal = current_principal()
            return JSONResponse(
                {
                    "resource": resource,
                    "action": action,
                    "key_id": principal.key_id if principal else None,
                    "project_id": principal.project_id if principal else None,
                    "data": [],
                },
                status_code=200 if action == "read" else 201,
            )

        return endpoint

    return [
        Route(f"/v1/{resource}", make("read"), methods=["GET"]),
        Route(f"/v1/{resource}", make("write"), methods=["POST"]),
    ]


async def health(request: Request) -> JSONResponse:
    """Public liveness probe."""
    return JSONResponse({"status": "ok"})


async def whoami(request: Request) -> JSONResponse:
    """Who the request authenticated as (any valid credential)."""
    principal = current_principal()
    if principal is None:  # only reachable without the middleware
        return JSONResponse({"error": "not authenticated"}, status_code=401)
    return JSONResponse(
        {
            "key_id": principal.key_id,
            "kind": principal.kind,
            "key_type": principal.key_type,
            "project_id": principal.project_id,
            "scopes": sorted(principal.scopes),
        }
    )


def build_demo(
    manager: KeyManager | None = None, audit: MemoryAuditLog | None = None
) -> tuple[Starlette, DemoKeys, KeyManager, MemoryAuditLog]:
    """The demo app with fresh keys: ``(app, keys, manager, audit log)``."""
    audit = audit or MemoryAuditLog()
    manager = manager or KeyManager(MemoryKeyStore(), audit=audit)
    store = manager.store
    read_scopes = [f"{r}:read" for r in RESOURCES if r != "webhooks"]
    test = manager.create(
        scopes=read_scopes, key_type="test", name="demo sandbox key", project_id=DEMO_PROJECT
    )
    live = manager.create(
        scopes=[f"{r}:{a}" for r in RESOURCES for a in ("read", "write")],
        key_type="live",
        name="demo production key (localhost only)",
        project_id=DEMO_PROJECT,
        allowed_ips=["127.0.0.0/8", "::1/128"],
    )
    old = manager.create(scopes=["quotes:read"], name="demo rotated key")
    manager.rotate(old.key.id, grace=timedelta(0))
    foreign = manager.create(
        scopes=["quotes:read"], name="demo key for another network", allowed_ips=["192.0.2.0/24"]
    )
    limited = manager.create(
        scopes=["quotes:read"],
        name="demo rate-limited key",
        rate_limit=RateLimit(3, timedelta(seconds=60)),
    )
    auth = Authenticator(store, audit=audit)
    routes: list[BaseRoute] = [Route("/health", health), Route("/v1/whoami", whoami)]
    for resource in RESOURCES:
        routes.extend(_resource_endpoints(resource))
    admin_password = secrets.token_urlsafe(12)
    routes.append(
        Mount("/dashboard", create_dashboard(manager, admin_password=admin_password, audit=audit))
    )
    app = Starlette(routes=routes)
    app.add_middleware(
        ApiKeyMiddleware, authenticator=auth, public_paths=["/health", "/dashboard*"]
    )
    keys = DemoKeys(
        test.secret, live.secret, old.secret, foreign.secret, limited.secret, admin_password
    )
    return app, keys, manager, audit


def curl_lines(base: str, keys: DemoKeys) -> list[tuple[str, str]]:
    """``(what it shows, curl command)`` pairs for every answer the demo can give."""
    key = "-H 'X-API-Key: {}'".format
    json_post = "-H 'Content-Type: application/json' -X POST"
    return [
        ("200 success (test key, quotes:read)", f"curl -s {key(keys.test)} {base}/v1/quotes"),
        (
            "201 success (live key, orders:write)",
            f"curl -s -X POST {key(keys.live)} {base}/v1/orders",
        ),
        ("401 MISSING_API_KEY", f"curl -s {base}/v1/quotes"),
        ("401 INVALID_API_KEY", f"curl -s {key('ramp_test_not_a_real_key')} {base}/v1/quotes"),
        (
            "401 API_KEY_EXPIRED (rotated, grace over)",
            f"curl -s {key(keys.expired)} {base}/v1/quotes",
        ),
        (
            "403 INSUFFICIENT_PERMISSIONS (test key, orders:write)",
            f"curl -s -X POST {key(keys.test)} {base}/v1/orders",
        ),
        (
            "403 IP_NOT_ALLOWED (key allowlisted for 192.0.2.0/24)",
            f"curl -s {key(keys.foreign_ip)} {base}/v1/quotes",
        ),
        (
            "429 RATE_LIMITED (3 requests a minute; the 4th is refused)",
            f"for i in 1 2 3 4; do curl -s -i {key(keys.limited)} {base}/v1/quotes "
            "| grep -iE '^(HTTP|ratelimit|retry)'; done",
        ),
        (
            "201 widget session",
            f'curl -s {json_post} {key(keys.test)} -d \'{{"project_id": "{DEMO_PROJECT}"}}\' '
            f"{base}/widget/sessions",
        ),
        (
            "200 call with the session token (paste it)",
            f"curl -s -H 'Authorization: Bearer ramp_sess_PASTE_TOKEN' {base}/v1/quotes",
        ),
        (
            "401 INVALID_SESSION_TOKEN",
            f"curl -s -H 'Authorization: Bearer ramp_sess_bogus' {base}/v1/quotes",
        ),
        (
            "400 INVALID_REQUEST (widget body)",
            f"curl -s {json_post} {key(keys.test)} -d '{{\"project_id\": 7}}' "
            f"{base}/widget/sessions",
        ),
    ]
