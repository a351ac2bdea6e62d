"""Credits (``Credits(remaining, refill=Refill(amount, every))``): each accepted request spends
one; at zero ``CREDITS_EXHAUSTED`` (429, ``Retry-After`` to the next refill when there is
one); ``add_credits`` restores exactly what it adds; a refill is seen at its time (an
injected clock); credits are checked and spent with the key's limits and its project's
budgets in one atomic step; a scope refusal spends none. On every store."""

from __future__ import annotations

from datetime import timedelta

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from nowramp_auth import (
    Authenticator,
    AuthError,
    Credits,
    ErrorCode,
    KeyManager,
    MemoryAuditLog,
    RateLimit,
    Refill,
)
from nowramp_auth.starlette import ApiKeyMiddleware, require_scopes
from nowramp_auth.stores import KeyStore
from nowramp_auth.testing import FrozenClock
from tests.conftest import START, make_store
from tests.outcomes import burst, outcomes

STORES = ["memory", "redis", "cluster", "postgres"]


@pytest.mark.parametrize("kind", STORES)
def test_credits_run_out_and_add_credits_restores_exactly_what_it_adds(
    kind: str, request: pytest.FixtureRequest, namespace: str
):
    store: KeyStore = make_store(kind, request, namespace)
    audit = MemoryAuditLog()
    manager, auth = KeyManager(store, audit=audit), Authenticator(store)
    key = manager.create(scopes=["quotes:read"], project_id="p1", credits=Credits(3))
    assert manager.get(key.key.id).credits_remaining == 3
    first = auth.authenticate(key.secret).rate_limit
    assert first is not None and first.credits_remaining == 2 and first.limit == 0
    assert outcomes(auth, key.secret, 3) == ["ok", "ok", "CREDITS_EXHAUSTED"]
    with pytest.raises(AuthError) as refused:
        auth.authenticate(key.secret)
    error = refused.value
    assert error.status_code == 429 and error.retry_after is None  # no refill to wait for
    assert "add credits" in error.to_dict()["error"]["solution"].lower()
    assert dict(error.headers())["X-Credits-Remaining"] == "0"
    assert manager.get(key.key.id).credits_remaining == 0
    assert manager.add_credits(key.key.id, 2) == 2
    assert outcomes(auth, key.secret, 3) == ["ok", "ok", "CREDITS_EXHAUSTED"]
    added = [e for e in audit.events if e.type == "key.credits_added"]
    assert added and added[-1].detail == "added=2 remaining=2" and added[-1].project_id == "p1"
    successor = manager.rotate(key.key.id)  # successors share the lineage's credits
    assert successor.key.credits == Credits(3)
    assert outcomes(auth, successor.secret, 1) == ["CREDITS_EXHAUSTED"]
    with pytest.raises(ValueError, match="no credits"):
        manager.add_credits(manager.create(scopes=["quotes:read"]).key.id, 1)
    with pytest.raises(ValueError, match="at least 1"):
        manager.add_credits(key.key.id, 0)


@pytest.mark.parametrize("kind", STORES)
def test_a_refill_is_seen_at_its_time(kind: str, request: pytest.FixtureRequest, namespace: str):
    clock = FrozenClock(START)
    store: KeyStore = make_store(kind, request, namespace)
    manager, auth = KeyManager(store, clock=clock), Authenticator(store, clock=clock)
    refill = Refill(2, timedelta(days=1))
    key = manager.create(scopes=["quotes:read"], credits=Credits(1, refill))
    assert outcomes(auth, key.secret, 2) == ["ok", "CREDITS_EXHAUSTED"]
    clock.advance(timedelta(hours=23))
    with pytest.raises(AuthError) as refused:
        auth.authenticate(key.secret)
    assert refused.value.code == ErrorCode.CREDITS_EXHAUSTED
    assert refused.value.retry_after == 3600  # to the refill
    clock.advance(timedelta(hours=1))
    assert manager.get(key.key.id).credits_remaining == 2
    assert outcomes(auth, key.secret, 3) == ["ok", "ok", "CREDITS_EXHAUSTED"]
    # Credits added above the refill's amount stay over a refill.
    manager.add_credits(key.key.id, 5)
    clock.advance(timedelta(days=1))
    assert manager.get(key.key.id).credits_remaining == 5


@pytest.mark.parametrize("kind", STORES)
def test_credits_limits_and_budgets_are_spent_together(
    kind: str, request: pytest.FixtureRequest, namespace: str
):
    store: KeyStore = make_store(kind, request, namespace)
    manager, auth = KeyManager(store), Authenticator(store)
    manager.set_project_limits("p1", [RateLimit(4, timedelta(hours=1))])
    key = manager.create(
        scopes=["quotes:read"],
        project_id="p1",
        rate_limit=RateLimit(2, timedelta(hours=1)),
        credits=Credits(10),
    )
    status = auth.authenticate(key.secret).rate_limit
    assert status is not None and (status.limit, status.remaining) == (2, 1)
    assert status.credits_remaining == 9
    assert outcomes(auth, key.secret, 3) == ["ok", "RATE_LIMITED", "RATE_LIMITED"]
    assert manager.get(key.key.id).credits_remaining == 8  # the refusals spent none
    other = manager.create(scopes=["quotes:read"], project_id="p1", credits=Credits(1))
    assert outcomes(auth, other.secret, 2) == ["ok", "CREDITS_EXHAUSTED"]
    # The exhausted request spent nothing of the project's budget: 1 left for a third key.
    third = manager.create(scopes=["quotes:read"], project_id="p1")
    assert outcomes(auth, third.secret, 2) == ["ok", "RATE_LIMITED"]


@pytest.mark.parametrize("kind", STORES)
def test_a_burst_of_500_spends_exactly_the_credits(
    kind: str, request: pytest.FixtureRequest, namespace: str
):
    store: KeyStore = make_store(kind, request, namespace)
    manager, auth = KeyManager(store), Authenticator(store)
    key = manager.create(scopes=["quotes:read"], project_id="p1", credits=Credits(37))

    results = burst(auth, [key.secret] * 500)
    assert results.count("ok") == 37 and results.count("CREDITS_EXHAUSTED") == 463
    assert manager.get(key.key.id).credits_remaining == 0


@pytest.mark.parametrize("kind", STORES)
def test_a_scope_refusal_spends_no_credit_and_responses_carry_the_header(
    kind: str, request: pytest.FixtureRequest, namespace: str
):
    store: KeyStore = make_store(kind, request, namespace)
    manager, auth = KeyManager(store), Authenticator(store)
    key = manager.create(scopes=["quotes:read"], credits=Credits(2))

    @require_scopes("orders:write")
    async def orders(request: Request) -> JSONResponse:
        return JSONResponse({})

    async def quotes(request: Request) -> JSONResponse:
        return JSONResponse({})

    app = Starlette(routes=[Route("/orders", orders), Route("/quotes", quotes)])
    app.add_middleware(ApiKeyMiddleware, authenticator=auth)
    with TestClient(app) as client:
        headers = {"X-API-Key": key.secret}
        for _ in range(3):
            assert client.get("/orders", headers=headers).status_code == 403
        answers = [client.get("/quotes", headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers.get("x-credits-remaining") for a in answers] == ["1", "0", "0"]
    assert answers[2].json()["error"]["code"] == "CREDITS_EXHAUSTED"
    assert "ratelimit-limit" not in answers[0].headers  # credits only: no rate limit


def test_credits_are_validated():
    with pytest.raises(ValueError, match="remaining"):
        Credits(-1)
    with pytest.raises(ValueError, match="amount"):
        Refill(0, timedelta(days=1))
    with pytest.raises(ValueError, match="every"):
        Refill(1, timedelta(milliseconds=10))
    with pytest.raises(TypeError, match="Credits"):
        KeyManager(make_memory()).create(scopes=["quotes:read"], credits=5)  # type: ignore[arg-type]


def make_memory() -> KeyStore:
    from nowramp_auth import MemoryKeyStore

    return MemoryKeyStore()


def _cost_app(framework: str, auth: Authenticator):  # type: ignore[no-untyped-def]
    """An app of ``framework`` with /costly (cost=3) and /cheap (the default 1), and a way
    to GET it in process."""
    if framework == "starlette":
        from nowramp_auth import starlette as adapter

        @adapter.require_scopes("quotes:read", cost=3)
        async def costly(request: Request) -> JSONResponse:
            return JSONResponse({})

        @adapter.require_scopes("quotes:read")
        async def cheap(request: Request) -> JSONResponse:
            return JSONResponse({})

        app = Starlette(routes=[Route("/costly", costly), Route("/cheap", cheap)])
        app.add_middleware(adapter.ApiKeyMiddleware, authenticator=auth)
        client = TestClient(app)
        return lambda path, headers: client.get(path, headers=headers)
    if framework == "flask":
        from flask import Flask

        from nowramp_auth import wsgi

        flask_app = Flask(__name__)
        flask_app.add_url_rule(
            "/costly", "costly", wsgi.require_scopes("quotes:read", cost=3)(lambda: "ok")
        )
        flask_app.add_url_rule("/cheap", "cheap", wsgi.require_scopes("quotes:read")(lambda: "ok"))
        flask_app.wsgi_app = wsgi.ApiKeyMiddleware(  # type: ignore[method-assign]
            flask_app.wsgi_app, authenticator=auth
        )
        flask_client = flask_app.test_client()
        return lambda path, headers: flask_client.get(path, headers=headers)
    if framework == "litestar":
        from litestar import Litestar, get
        from litestar.middleware import DefineMiddleware

        from nowramp_auth import litestar as lit

        @get("/costly", guards=[lit.scopes_guard("quotes:read", cost=3)])
        async def costly_l() -> str:
            return "ok"

        @get("/cheap", guards=[lit.scopes_guard("quotes:read")])
        async def cheap_l() -> str:
            return "ok"

        middleware = DefineMiddleware(lit.ApiKeyMiddleware, authenticator=auth)
        client = TestClient(Litestar([costly_l, cheap_l], middleware=[middleware]))
        return lambda path, headers: client.get(path, headers=headers)
    from quart import Quart

    from nowramp_auth import quart as qrt

    quart_app = Quart(__name__)
    quart_app.add_url_rule(
        "/costly", "costly", qrt.require_scopes("quotes:read", cost=3)(lambda: "ok")
    )
    quart_app.add_url_rule("/cheap", "cheap", qrt.require_scopes("quotes:read")(lambda: "ok"))
    quart_app.asgi_app = qrt.ApiKeyMiddleware(  # type: ignore[method-assign]
        quart_app.asgi_app, authenticator=auth
    )
    client = TestClient(quart_app)
    return lambda path, headers: client.get(path, headers=headers)


@pytest.mark.parametrize("framework", ["starlette", "flask", "litestar", "quart"])
@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_route_declares_what_a_request_costs(
    framework: str, kind: str, request: pytest.FixtureRequest, namespace: str
):
    store: KeyStore = make_store(kind, request, namespace)
    manager, auth = KeyManager(store), Authenticator(store)
    key = manager.create(scopes=["quotes:read"], credits=Credits(7))
    get = _cost_app(framework, auth)
    headers = {"X-API-Key": key.secret}
    answers = [get(path, headers) for path in ["/costly"] * 3 + ["/cheap"] * 2]
    assert [a.status_code for a in answers] == [200, 200, 429, 200, 429]
    assert [a.headers.get("x-credits-remaining") for a in answers] == ["4", "1", "1", "0", "0"]
    body = answers[2].json() if callable(answers[2].json) else answers[2].json  # Flask: a dict
    assert body["error"]["code"] == "CREDITS_EXHAUSTED"
    with pytest.raises(ValueError, match="cost"):
        from nowramp_auth.starlette import require_scopes as guard

        guard("quotes:read", cost=0)


@pytest.mark.redis
def test_the_cli_creates_keys_with_credits_and_adds_some(redis_url: str, namespace: str):
    import json
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "nowramp_auth", "--redis-url", redis_url]
        return subprocess.run(
            [*command, "--namespace", namespace, "keys", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    created = cli(
        "create", "--scope", "quotes:read", "--credits", "3", "--refill", "500/30d", "--json"
    )
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["key"]
    assert key["credits"] == {"remaining": 3, "refill": {"amount": 500, "every_seconds": 2592000.0}}
    added = cli("credits", key["id"], "--add", "500")
    assert added.returncode == 0 and added.stdout.strip() == f"Key {key['id']}: 503 credits left."
    assert "credits left: 503" in cli("show", key["id"]).stdout
    refused = cli("credits", key["id"], "--add", "0")
    assert refused.returncode != 0 and "at least 1" in refused.stderr


def test_credits_counted_by_a_redis_limiter_beside_postgres(
    request: pytest.FixtureRequest, namespace: str
):
    """A PostgreSQL store whose limits a RedisRateLimiter counts keeps credits there too."""
    from nowramp_auth import RedisRateLimiter

    limiter = RedisRateLimiter.from_url(request.getfixturevalue("redis_url"), namespace=namespace)
    request.addfinalizer(limiter.close)
    store = make_store("postgres", request, namespace, rate_limiter=limiter)
    manager, auth = KeyManager(store), Authenticator(store)
    key = manager.create(scopes=["quotes:read"], project_id="p1", credits=Credits(2))
    assert outcomes(auth, key.secret, 3) == ["ok", "ok", "CREDITS_EXHAUSTED"]
    assert manager.add_credits(key.key.id, 1) == 1
    assert manager.get(key.key.id).credits_remaining == 1


@pytest.mark.parametrize("kind", ["memory", "postgres"])
def test_export_and_import_keep_limits_budgets_and_credits(
    kind: str, request: pytest.FixtureRequest, namespace: str
):
    import io

    from nowramp_auth import MemoryKeyStore
    from nowramp_auth.cli._key_transfer import export_keys, import_keys

    source = MemoryKeyStore()
    manager = KeyManager(source)
    manager.set_project_limits("p1", [RateLimit(9, timedelta(hours=1))])
    key = manager.create(
        scopes=["quotes:read"],
        project_id="p1",
        rate_limit=[RateLimit(5, timedelta(hours=1), name="a"), RateLimit(7, timedelta(days=1))],
        credits=Credits(4, Refill(4, timedelta(days=1))),
    )
    Authenticator(source).authenticate(key.secret)  # one credit spent: 3 left
    out = io.StringIO()
    export_keys(source, manager.list(), out)
    target: KeyStore = make_store(kind, request, namespace)
    assert import_keys(target, io.StringIO(out.getvalue())) == (1, 0)
    moved = KeyManager(target).get(key.key.id)
    assert moved.rate_limits == key.key.rate_limits
    assert moved.project_limits == (RateLimit(9, timedelta(hours=1)),)
    assert moved.credits == key.key.credits and moved.credits_remaining == 3
    assert outcomes(Authenticator(target), key.secret, 4) == ["ok"] * 3 + ["CREDITS_EXHAUSTED"]


def test_a_drf_views_required_cost_is_read_and_validated():
    from django.core.exceptions import ImproperlyConfigured

    from nowramp_auth.django._views import declared_cost

    class Orders:
        required_cost = {"POST": 5}  # noqa: RUF012 (DRF's idiom)

    class Bad:
        required_cost = 0

    assert declared_cost(Orders, "post") == 5 and declared_cost(Orders, "GET") == 1
    with pytest.raises(ImproperlyConfigured, match="required_cost"):
        declared_cost(Bad, "GET")
