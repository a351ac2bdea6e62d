"""The verified-credential fast path changes nothing but the cost: after a key was accepted
once, every change (revocation, rotation, update, expiry, another address, a rate limit) is
seen by the very next request, through both adapters; shared per-key objects are immutable;
the fast path is really taken."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta

import httpx
import pytest

from nowramp_auth import Authenticator, KeyManager, MemoryKeyStore, RateLimit, RateLimitStatus
from nowramp_auth._fast_path import LimitedKey
from nowramp_auth.testing import AuthKit, FrozenClock, auth_kit
from tests.apps import starlette_app
from tests.conftest import make_store
from tests.harness import CALLERS

OK_ADDRESS = "198.51.100.7"


@pytest.fixture(params=sorted(CALLERS))
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _revoke(kit: AuthKit, key_id: str) -> None:
    kit.manager.revoke(key_id)


def _rotate_past_grace(kit: AuthKit, key_id: str) -> None:
    kit.manager.rotate(key_id, grace=timedelta(minutes=1))
    kit.clock.advance(minutes=2)


def _drop_scope(kit: AuthKit, key_id: str) -> None:
    kit.manager.update(key_id, scopes=["orders:read"])


def _move_allowlist(kit: AuthKit, key_id: str) -> None:
    kit.manager.update(key_id, allowed_ips=["192.0.2.0/24"])


def _expire(kit: AuthKit, key_id: str) -> None:
    kit.clock.advance(hours=2)


def _limit_to_one(kit: AuthKit, key_id: str) -> None:
    kit.manager.update(key_id, rate_limit=RateLimit(1, timedelta(hours=1)))


CHANGES = [
    pytest.param(_revoke, 401, "INVALID_API_KEY", id="revoked"),
    pytest.param(_rotate_past_grace, 401, "API_KEY_EXPIRED", id="rotated-past-grace"),
    pytest.param(_drop_scope, 403, "INSUFFICIENT_PERMISSIONS", id="scope-removed"),
    pytest.param(_move_allowlist, 403, "IP_NOT_ALLOWED", id="allowlist-moved"),
    pytest.param(_expire, 401, "API_KEY_EXPIRED", id="expired"),
    pytest.param(_limit_to_one, 429, "RATE_LIMITED", id="rate-limited"),
]


@pytest.mark.parametrize(("change", "status", "code"), CHANGES)
def test_the_next_request_sees_every_change(adapter: str, change, status: int, code: str):
    kit = auth_kit()
    issued = kit.key(
        "quotes:read",
        allowed_ips=["198.51.100.0/24"],
        expires_at=kit.clock.now + timedelta(hours=1),
    )
    call = CALLERS[adapter](kit.authenticator)
    headers = [("X-API-Key", issued.secret)]
    for _ in range(3):  # the first one verifies in full; the others take the fast path
        assert call("GET", "/quotes", headers, client_ip=OK_ADDRESS).status == 200
    assert kit.authenticator.accept_verified(issued.secret.encode(), OK_ADDRESS) is not None
    change(kit, issued.key.id)
    if code == "RATE_LIMITED":  # the one request the new limit allows
        assert call("GET", "/quotes", headers, client_ip=OK_ADDRESS).status == 200
    answer = call("GET", "/quotes", headers, client_ip=OK_ADDRESS)
    assert (answer.status, answer.code) == (status, code)
    assert kit.audit.events[-1].code == code  # refusals are audited as before


def test_another_address_is_refused_after_an_allowed_one(adapter: str):
    kit = auth_kit()
    issued = kit.key("quotes:read", allowed_ips=["198.51.100.0/24"])
    call = CALLERS[adapter](kit.authenticator)
    headers = [("X-API-Key", issued.secret)]
    assert call("GET", "/quotes", headers, client_ip=OK_ADDRESS).status == 200
    assert call("GET", "/quotes", headers, client_ip=OK_ADDRESS).status == 200
    answer = call("GET", "/quotes", headers, client_ip="203.0.113.9")
    assert (answer.status, answer.code) == (403, "IP_NOT_ALLOWED")
    assert call("GET", "/quotes", headers, client_ip="testclient").code == "IP_NOT_ALLOWED"


def test_forwarded_for_behind_a_trusted_proxy_still_decides(adapter: str):
    kit = auth_kit(trusted_proxies=["10.0.0.0/8"])
    issued = kit.key("quotes:read", allowed_ips=["198.51.100.0/24"])
    call = CALLERS[adapter](kit.authenticator)
    forwarded = [("X-API-Key", issued.secret), ("X-Forwarded-For", OK_ADDRESS)]
    for _ in range(2):
        assert call("GET", "/quotes", forwarded, client_ip="10.1.1.1").status == 200
    spoofed = [("X-API-Key", issued.secret), ("X-Forwarded-For", "203.0.113.9")]
    assert call("GET", "/quotes", spoofed, client_ip="10.1.1.1").code == "IP_NOT_ALLOWED"


def test_usage_counts_every_request_of_both_paths(adapter: str):
    kit = auth_kit()
    issued = kit.key("quotes:read")
    call = CALLERS[adapter](kit.authenticator)
    for _ in range(2500):  # more than one usage cell fold
        call("GET", "/quotes", [("X-API-Key", issued.secret)])
    assert kit.manager.get(issued.key.id).request_count == 2500
    assert kit.manager.get(issued.key.id).last_used_at == kit.clock.now


def test_a_rate_limited_key_is_charged_once_per_accepted_request(adapter: str):
    kit = auth_kit()
    issued = kit.key("quotes:read", rate_limit=RateLimit(5, timedelta(hours=1)))
    call = CALLERS[adapter](kit.authenticator)
    headers = [("X-API-Key", issued.secret)]
    statuses = [call("GET", "/quotes", headers).status for _ in range(8)]
    assert statuses == [200] * 5 + [429] * 3
    assert isinstance(kit.authenticator.accept_verified(issued.secret.encode(), None), LimitedKey)
    assert kit.manager.get(issued.key.id).request_count == 5


def test_shared_objects_are_immutable():
    kit = auth_kit()
    issued = kit.key("quotes:read", metadata={"account": "acct_1"})
    principal = kit.authenticator.authenticate(issued.secret)
    again = kit.authenticator.authenticate(issued.secret)
    assert again is principal  # one object per record version ...
    with pytest.raises(TypeError):
        principal.metadata["account"] = "other"  # type: ignore[index]  # ... read-only
    from nowramp_auth.starlette import ScopeCredentials

    credentials = ScopeCredentials(principal.scopes)
    assert credentials.scopes == ("quotes:read",)
    with pytest.raises(AttributeError):
        credentials.scopes = ["admin"]  # type: ignore[misc]


def test_a_handler_cannot_change_another_requests_scopes():
    from starlette.applications import Starlette
    from starlette.authentication import requires
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from nowramp_auth.starlette import ApiKeyMiddleware

    kit = auth_kit()
    issued = kit.key("quotes:read")
    mutations = []

    async def greedy(request: Request) -> PlainTextResponse:
        try:
            request.auth.scopes.append("customers:read")
            mutations.append("appended")
        except AttributeError:
            mutations.append("refused")
        return PlainTextResponse("ok")

    @requires("customers:read")
    async def customers(request: Request) -> PlainTextResponse:
        return PlainTextResponse("customers")

    app = Starlette(routes=[Route("/greedy", greedy), Route("/customers", customers)])
    app.add_middleware(ApiKeyMiddleware, authenticator=kit.authenticator)
    client = TestClient(app)
    headers = {"X-API-Key": issued.secret}
    for _ in range(3):
        assert client.get("/greedy", headers=headers).status_code == 200
    assert mutations == ["refused"] * 3
    assert client.get("/customers", headers=headers).status_code == 403


def test_a_scope_without_a_client_entry_is_served():
    """ASGI makes ``client`` optional: without it the client is unknown (no allowlist
    match), never a crash."""
    import asyncio

    from tests.apps import starlette_app

    kit = auth_kit()
    issued = kit.key("quotes:read")
    app = starlette_app(kit.authenticator)
    sent: list[dict] = []

    async def run() -> None:
        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        for _ in range(2):  # the general path, then the fast path
            scope = {
                "type": "http",
                "method": "GET",
                "path": "/quotes",
                "headers": [(b"x-api-key", issued.secret.encode())],
                "query_string": b"",
            }
            await app(scope, receive, send)

    asyncio.run(run())
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert statuses == [200, 200]


def test_presented_keys_are_screened_without_the_general_flow_on_the_memory_store():
    from nowramp_auth import (
        Authenticator,
        AuthError,
        ErrorCode,
        KeyManager,
        MemoryAuditLog,
        MemoryKeyStore,
    )
    from nowramp_auth._keys import ParsedKey, _build, generate_key, parse_key

    store, audit = MemoryKeyStore(), MemoryAuditLog()
    auth = Authenticator(store, audit=audit)
    issued = KeyManager(store).create(scopes=["quotes:read"])
    unknown, unknown_id = generate_key("test")
    # A wrong secret for the known id: the same id, another secret, a valid checksum.
    public_id = issued.key.id.removeprefix("key_")
    wrong = _build("ramp_test_", public_id)
    assert wrong != issued.secret and parse_key(wrong).key_id == issued.key.id
    answers = {
        name: auth.parse_presented(secret.encode(), "203.0.113.7", "GET", "/q")
        for name, secret in (("right", issued.secret), ("unknown", unknown))
    }
    assert isinstance(answers["right"], ParsedKey)
    refused = answers["unknown"]
    assert isinstance(refused, AuthError) and refused.code == ErrorCode.INVALID_API_KEY
    assert refused.key_id == unknown_id and not refused.verified
    assert [(e.type, e.key_id, e.code) for e in audit.events] == [
        ("auth.failed", unknown_id, "INVALID_API_KEY")
    ]
    screened = auth.parse_presented(wrong.encode(), None, "GET", "/q")
    assert isinstance(screened, AuthError) and screened.code == ErrorCode.INVALID_API_KEY
    assert screened.key_id == issued.key.id and not screened.verified


def test_the_per_request_copy_of_a_principal_is_dataclasses_replace():
    import dataclasses

    from nowramp_auth import Principal
    from nowramp_auth._models import RateLimitStatus, with_rate_limit

    principal = Principal(
        "key_x",
        "live",
        frozenset({"quotes:read"}),
        "proj_1",
        "session",
        "sess_1",
        "cust_1",
        {"account": "a"},
        RateLimitStatus(9, 8, 60.0),
    )
    status = RateLimitStatus(9, 3, 60.0)
    copy = with_rate_limit(principal, status)
    expected = dataclasses.replace(principal, rate_limit=status)
    for item in dataclasses.fields(Principal):
        assert getattr(copy, item.name) is getattr(expected, item.name), item.name
    assert type(copy) is Principal and copy == expected and hash(copy) == hash(expected)
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.scopes = frozenset()  # type: ignore[misc]


def test_the_per_request_status_of_an_accepted_request_is_the_dataclass():
    import dataclasses

    from nowramp_auth._models import RateLimitStatus, accepted_status

    built, expected = accepted_status(100, 41, 60.0), RateLimitStatus(100, 41, 60.0)
    assert dataclasses.astuple(built) == dataclasses.astuple(expected)
    assert built == expected and hash(built) == hash(expected)
    assert built.raw_headers() == expected.raw_headers()
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.remaining = 0  # type: ignore[misc]


@pytest.mark.parametrize("pepper", [None, b"server-side pepper"])
def test_the_fast_path_keeps_a_blake2s_digest_of_the_key_and_never_the_plaintext(pepper):
    import hashlib

    from nowramp_auth import Authenticator, KeyManager, MemoryKeyStore

    store = MemoryKeyStore(pepper=pepper)
    issued = KeyManager(store).create(scopes=["quotes:read"])
    auth = Authenticator(store)
    assert auth.authenticate(issued.secret).key_id == issued.key.id  # the general flow
    verified = auth._verified
    assert verified is not None and len(verified) == 1
    (digest,) = verified._entries
    assert digest == hashlib.blake2s(issued.secret.encode()).digest()
    assert issued.secret.encode() not in repr(verified._entries).encode()
    assert auth.accept_verified(issued.secret.encode(), None) is not None  # the fast path
    # A key one character off shares no entry: the general flow refuses it.
    typo = issued.secret[:-1] + ("A" if issued.secret[-1] != "A" else "B")
    assert auth.accept_verified(typo.encode(), None) is None


class AwaitedMemoryStore(MemoryKeyStore):
    """An async store without a ``rate_charger`` of its own: the authenticator's rate-limited
    fast path reaches its ``hit_rate_limit_async``, once per request, with the clock's time."""

    request_path_never_blocks = False

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[datetime] = []

    async def hit_rate_limit_async(
        self, lineage: str, limit: RateLimit, now: datetime
    ) -> RateLimitStatus:
        self.hits.append(now)
        return self.hit_rate_limit(lineage, limit, now)


def test_a_store_without_its_own_charger_is_charged_through_hit_rate_limit_async():
    store = AwaitedMemoryStore()
    clock = FrozenClock()
    issued = KeyManager(store, clock=clock).create(
        scopes=["quotes:read"], rate_limit=RateLimit(3, timedelta(hours=1))
    )
    auth = Authenticator(store, clock=clock)
    call = CALLERS["starlette"](auth)
    headers = [("X-API-Key", issued.secret)]
    responses = [call("GET", "/quotes", headers) for _ in range(5)]
    assert [r.status for r in responses] == [200, 200, 200, 429, 429]
    assert [r.headers.get("ratelimit-remaining") for r in responses[:3]] == ["2", "1", "0"]
    assert isinstance(auth.accept_verified(issued.secret.encode(), None), LimitedKey)
    # The first request took the general flow (the sync store call of its generator driver
    # goes through hit_rate_limit_async too); every one made exactly one limiter call, at
    # the clock's time.
    assert len(store.hits) == 5
    assert all(abs((hit - clock.now).total_seconds()) < 1e-5 for hit in store.hits)
    assert all(hit.tzinfo is not None for hit in store.hits)
    assert KeyManager(store).get(issued.key.id).request_count == 3


@pytest.mark.redis
def test_usage_of_a_rate_limited_key_on_redis_counts_every_accepted_request(
    request: pytest.FixtureRequest, namespace: str
):
    """The async charge path (a store whose limiter call awaits Redis) counts each accepted
    request once, past two folds of the key's usage cell (FOLD_AT is 1,024), and refused
    ones not at all."""
    store = make_store("redis", request, namespace)
    manager = KeyManager(store)
    issued = manager.create(scopes=["quotes:read"], rate_limit=RateLimit(2_400, timedelta(hours=1)))
    app = starlette_app(Authenticator(store))
    headers = {"X-API-Key": issued.secret}

    async def run() -> Counter[int]:
        transport = httpx.ASGITransport(app=app)
        statuses: Counter[int] = Counter()
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(25):  # 100 at once: each flush merges many
                batch = [client.get("/quotes", headers=headers) for _ in range(100)]
                statuses.update(answer.status_code for answer in await asyncio.gather(*batch))
        return statuses

    assert asyncio.run(run()) == Counter({200: 2_400, 429: 100})
    store.flush_usage()
    assert manager.get(issued.key.id).request_count == 2_400
