"""Django and Django REST framework: the middleware from ``settings.MIDDLEWARE`` under WSGI
and ASGI Django (in process, then under gunicorn and uvicorn over real HTTP), plain and DRF
views with and without scopes, and the same refusals as the Starlette adapter."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import django
import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured
from django.test import AsyncClient, Client, override_settings
from starlette.testclient import TestClient

from nowramp_auth import Authenticator, AuthError, ErrorCode, KeyManager, RateLimit, RedisKeyStore
from tests.apps import starlette_app
from tests.auth_cases import Send, assert_expected, assert_same_refusals, run_cases
from tests.servers import serve, server_command

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_site.settings")
django.setup()

from nowramp_auth.django import ApiKeyMiddleware  # noqa: E402  (needs configured settings)
from tests.django_site import auth as site  # noqa: E402

Answer = tuple[int, dict[str, str], bytes]


def _joined(headers: list[tuple[str, str]]) -> dict[str, str]:
    # As servers hand repeated fields to Django: joined with ",".
    joined: dict[str, str] = {}
    for name, value in headers:
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined


def django_send(client: Client | AsyncClient) -> Send:
    """``send`` through Django's test client: the WSGI handler (``Client``) or the ASGI one
    (``AsyncClient``)."""
    if isinstance(client, AsyncClient):

        async def request(method: str, path: str, **options: Any) -> Any:
            return await client.generic(method, path, **options)

        generic: Callable[..., Any] = async_to_sync(request)
    else:
        generic = client.generic

    def send(method: str, path: str, headers: list[tuple[str, str]], body: bytes | None) -> Answer:
        response = generic(
            method,
            path,
            data=body or b"",
            content_type="application/json",
            headers=_joined(headers),
        )
        return (
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
        )

    return send


def http_send(base: str) -> Send:
    import httpx

    client = httpx.Client(base_url=base, timeout=10)

    def send(method: str, path: str, headers: list[tuple[str, str]], body: bytes | None) -> Answer:
        response = client.request(method, path, headers=headers, content=body)
        return response.status_code, dict(response.headers), response.content

    return send


@pytest.fixture(scope="module")
def starlette_reference() -> Any:
    """The case table as the Starlette adapter answers it (memory store)."""
    manager = KeyManager(site.store)
    client = TestClient(starlette_app(Authenticator(site.store)))

    def send(method: str, path: str, headers: list[tuple[str, str]], body: bytes | None) -> Answer:
        response = client.request(method, path, headers=headers, content=body)
        return response.status_code, dict(response.headers), response.content

    outcomes = run_cases(manager, send)
    assert_expected(outcomes)
    return outcomes


@pytest.mark.parametrize("handler", ["wsgi", "asgi"])
def test_the_middleware_answers_as_the_starlette_adapter(handler: str, starlette_reference):
    send = django_send(Client() if handler == "wsgi" else AsyncClient())
    outcomes = run_cases(site.manager, send)
    assert_expected(outcomes)
    assert_same_refusals(outcomes, starlette_reference)


@pytest.mark.parametrize("handler", ["wsgi", "asgi"])
def test_views_see_the_principal(handler: str):
    send = django_send(Client() if handler == "wsgi" else AsyncClient())
    wallets = site.manager.create(scopes=["wallets:read"], project_id="p9")
    for path in ("/whoami", "/wallets", "/async-wallets"):
        status, _, body = send("GET", path, [("X-API-Key", wallets.secret)], None)
        assert status == 200, (path, body)
        payload = json.loads(body)
        assert payload["key_id"] == wallets.key.id and payload["project_id"] == "p9"
    reader = site.manager.create(scopes=["quotes:read"])
    for path in ("/wallets", "/async-wallets"):  # class-based views, guarded
        status, _, body = send("GET", path, [("X-API-Key", reader.secret)], None)
        assert status == 403
        assert json.loads(body)["error"]["required_scopes"] == ["wallets:read"]
    assert send("GET", "/health", [], None)[0] == 200


@pytest.mark.parametrize("prefix", ["", "/open"], ids=["with-middleware", "drf-alone"])
@pytest.mark.parametrize("handler", ["wsgi", "asgi"])
def test_drf_views(prefix: str, handler: str):
    send = django_send(Client() if handler == "wsgi" else AsyncClient())
    reader = site.manager.create(scopes=["orders:read", "quotes:read"])
    url = prefix + "/drf/orders"

    status, _, body = send("GET", url, [("X-API-Key", reader.secret)], None)
    assert status == 200 and json.loads(body)["key_id"] == reader.key.id

    status, headers, body = send("POST", url, [("X-API-Key", reader.secret)], None)
    expected = AuthError(ErrorCode.INSUFFICIENT_PERMISSIONS, required_scopes=["orders:write"])
    assert (status, json.loads(body)) == (403, expected.to_dict())

    status, _, body = send("DELETE", url, [("X-API-Key", reader.secret)], None)
    assert status == 403
    error = json.loads(body)["error"]
    assert error["code"] == "INSUFFICIENT_PERMISSIONS" and "method" in error["detail"]

    status, headers, body = send("GET", url, [], None)
    assert (status, json.loads(body)) == (401, AuthError(ErrorCode.MISSING_API_KEY).to_dict())
    assert "x-api-key" in headers["www-authenticate"].lower()

    status, headers, body = send("GET", url, [("X-API-Key", "nope")], None)
    assert (status, json.loads(body)) == (401, AuthError(ErrorCode.INVALID_API_KEY).to_dict())
    assert headers["www-authenticate"]

    status, _, body = send("GET", prefix + "/drf/quotes", [("X-API-Key", reader.secret)], None)
    assert status == 200


@pytest.mark.parametrize("prefix", ["", "/open"], ids=["with-middleware", "drf-alone"])
def test_drf_scope_refusals_spend_no_quota(prefix: str):
    send = django_send(Client())
    limited = site.manager.create(
        scopes=["orders:read"], rate_limit=RateLimit(2, timedelta(hours=1))
    )
    headers = [("X-API-Key", limited.secret)]
    for _ in range(3):
        assert send("POST", prefix + "/drf/orders", headers, None)[0] == 403
        assert send("DELETE", prefix + "/drf/orders", headers, None)[0] == 403
    assert send("GET", prefix + "/drf/orders", headers, None)[0] == 200
    assert send("GET", prefix + "/drf/orders", headers, None)[0] == 200
    status, answer_headers, body = send("GET", prefix + "/drf/orders", headers, None)
    assert status == 429 and json.loads(body)["error"]["code"] == "RATE_LIMITED"
    assert int(answer_headers["retry-after"]) >= 1
    assert site.manager.get(limited.key.id).request_count == 2


def test_configuration_errors_are_clear():
    def get_response(request: Any) -> Any:
        return None

    cases: list[tuple[Any, str]] = [
        (None, "must be a dict"),
        ({}, "dotted path"),
        ({"AUTHENTICATOR": "tests.django_site.nothing_here.x"}, "AUTHENTICATOR"),
        ({"AUTHENTICATOR": "tests.django_site.auth.store"}, "not an Authenticator"),
    ]
    for value, needle in cases:
        with override_settings(NOWRAMP_AUTH=value), pytest.raises(ImproperlyConfigured) as info:
            ApiKeyMiddleware(get_response)
        assert needle in str(info.value)


SERVERS = {
    server: server_command(
        server,
        asgi_app="tests.django_site.asgi:application",
        wsgi_app="tests.django_site.wsgi:application",
        uvicorn_flags=("--no-proxy-headers",),
    )
    for server in ("gunicorn", "uvicorn")
}


@pytest.mark.redis
@pytest.mark.parametrize("server", sorted(SERVERS))
def test_real_servers(server: str, redis_url: str, namespace: str, starlette_reference):
    store = RedisKeyStore.from_url(redis_url, namespace=namespace)
    env = {
        "NOWRAMP_TEST_REDIS_URL": redis_url,
        "NOWRAMP_TEST_NAMESPACE": namespace,
        "DJANGO_SETTINGS_MODULE": "tests.django_site.settings",
    }
    try:
        with serve(SERVERS[server], env) as base:
            send = http_send(base)
            outcomes = run_cases(KeyManager(store), send)
            assert_expected(outcomes)
            assert_same_refusals(outcomes, starlette_reference)
            reader = KeyManager(store).create(scopes=["orders:read"])
            status, _, body = send("GET", "/drf/orders", [("X-API-Key", reader.secret)], None)
            assert status == 200 and json.loads(body)["key_id"] == reader.key.id
            status, _, body = send("GET", "/open/drf/orders", [("X-API-Key", "nope")], None)
            assert (status, json.loads(body)) == (
                401,
                AuthError(ErrorCode.INVALID_API_KEY).to_dict(),
            )
    finally:
        store.close()


@pytest.mark.parametrize("prefix", ["", "/open"], ids=["with-middleware", "drf-alone"])
@pytest.mark.parametrize("handler", ["wsgi", "asgi"])
def test_metrics_count_each_django_request_once(prefix: str, handler: str):
    from django.conf import settings

    registry = site.metrics_registry
    config = {**settings.NOWRAMP_AUTH, "AUTHENTICATOR": "tests.django_site.auth.metered"}

    def counts() -> dict[tuple[str, str], float]:
        return {
            (s.labels["result"], s.labels["key_type"]): s.value
            for family in registry.collect()
            for s in family.samples
            if s.name == "nowramp_auth_requests_total"
        }

    reader = site.manager.create(scopes=["orders:read", "quotes:read"], key_type="live")
    before = counts()
    with override_settings(NOWRAMP_AUTH=config):
        send = django_send(Client() if handler == "wsgi" else AsyncClient())
        url = prefix + "/drf/orders"
        key = [("X-API-Key", reader.secret)]
        statuses = [
            send("GET", url, key, None)[0],
            send("POST", url, key, None)[0],  # a scope the key lacks
            send("DELETE", url, key, None)[0],  # a method the view does not declare
            send("GET", url, [], None)[0],
            send("GET", url, [("X-API-Key", "nope")], None)[0],
        ]
    assert statuses == [200, 403, 403, 401, 401]
    after = counts()
    delta = {pair: after.get(pair, 0) - before.get(pair, 0) for pair in after}
    assert {pair: n for pair, n in delta.items() if n} == {
        ("ok", "live"): 1,
        ("INSUFFICIENT_PERMISSIONS", "live"): 2,
        ("MISSING_API_KEY", "unknown"): 1,
        ("INVALID_API_KEY", "unknown"): 1,
    }
