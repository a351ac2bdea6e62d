"""Dashboard hardening over real HTTP: uvicorn instances sharing a private Redis.

Only a POST with a valid CSRF token changes anything (HEAD and every other method are
refused or shown as GET), in both sign-in modes; sign-in has its own CSRF token; a password
change ends the account's sessions on every instance; the sign-in throttle sees the person
behind a trusted proxy, throttles IPv6 by /64, counts only failures, and slows an account
under attack without locking its owner out for long.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from nowramp_auth import KeyManager, RedisKeyStore
from nowramp_auth._accounts import Accounts
from nowramp_auth._client_ip import parse_ip
from nowramp_auth.dashboard import DashboardUser, create_dashboard
from nowramp_auth.dashboard._throttle import MAX_DELAY, account_delay, client_bucket
from tests.dashboard_login import login, login_token
from tests.servers import serve

pytestmark = [pytest.mark.redis, pytest.mark.slow]
PASSWORD = "hardening-admin-password"
ALICE_PASSWORD = "alice's long password"
APP = ["uvicorn", "tests.dashboard_app:app", "--host", "127.0.0.1", "--port", "{port}"]
APP += ["--log-level", "warning", "--no-proxy-headers"]


@pytest.fixture
def shared(redis_url: str, namespace: str) -> Iterator[tuple[KeyManager, Accounts, dict[str, str]]]:
    # No local cache: the test reads what the servers wrote at once.
    store = RedisKeyStore.from_url(redis_url, namespace=namespace, cache_ttl=0)
    accounts = Accounts(store)
    accounts.add("alice", ALICE_PASSWORD, frozenset({"proj_partner"}))
    env = {
        "DASHBOARD_PASSWORD": PASSWORD,
        "NOWRAMP_TEST_REDIS_URL": redis_url,
        "NOWRAMP_TEST_NAMESPACE": namespace,
        "DASHBOARD_TRUSTED_PROXIES": "127.0.0.2/32",
    }
    try:
        yield KeyManager(store), accounts, env
    finally:
        store.close()


@pytest.fixture
def instance(shared) -> Iterator[str]:
    with serve(APP, shared[2]) as base:
        yield base


def signed_in(base: str, username: str, password: str) -> httpx.Client:
    browser = httpx.Client(base_url=base, follow_redirects=False)
    answer = login(browser, "/dashboard/login", {"username": username, "password": password})
    assert answer.status_code == 303, answer.text
    return browser


def host_signed_in(base: str) -> httpx.Client:
    """A browser signed in to the host app (identify= mode at /partners)."""
    browser = httpx.Client(base_url=base, follow_redirects=False)
    browser.cookies.set("host_session", "alice-session")
    assert browser.get("/partners/keys").status_code == 200  # and has its CSRF cookie now
    return browser


@pytest.mark.parametrize("mount", ["/dashboard", "/partners"])
@pytest.mark.parametrize("method", ["HEAD", "PUT", "PATCH", "DELETE"])
def test_no_method_but_a_post_with_its_token_changes_a_key(shared, instance, mount, method):
    manager = shared[0]
    key = manager.create(scopes=["quotes:read"], project_id="proj_partner", name="victim")
    if mount == "/dashboard":
        browser = signed_in(instance, "alice", ALICE_PASSWORD)
    else:
        browser = host_signed_in(instance)
    with closing(browser):
        for action in ("rotate", "revoke"):
            answer = browser.request(method, f"{mount}/keys/{key.key.id}/{action}")
            assert answer.status_code in (200, 405), (method, action, answer.status_code)
        record = manager.get(key.key.id)
        assert record.revoked_at is None and record.rotated_to is None
        assert len(manager.list(project_id="proj_partner")) == 1
        # A POST without the token changes nothing either; with it, the key is revoked.
        refused = browser.post(f"{mount}/keys/{key.key.id}/revoke", data={})
        assert refused.status_code == 403
        assert manager.get(key.key.id).revoked_at is None
        page = browser.get(f"{mount}/keys/{key.key.id}/revoke").text
        token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        done = browser.post(f"{mount}/keys/{key.key.id}/revoke", data={"csrf_token": token})
        assert done.status_code == 303
        assert manager.get(key.key.id).revoked_at is not None


def test_head_on_every_route_changes_nothing(shared, instance):
    manager = shared[0]
    key = manager.create(scopes=["quotes:read"], project_id="proj_partner")
    with closing(signed_in(instance, "admin", PASSWORD)) as browser:
        for path in ("/", "/keys", f"/keys/{key.key.id}", "/audit", "/audit.csv", "/logout"):
            browser.head("/dashboard" + path)
        browser.head(f"/dashboard/keys/{key.key.id}/rotate")
        browser.head(f"/dashboard/keys/{key.key.id}/revoke")
        assert browser.get("/dashboard/keys").status_code == 200  # still signed in
    assert [r.id for r in manager.list()] == [key.key.id]
    assert manager.get(key.key.id).revoked_at is None


def test_sign_in_needs_the_forms_token(instance):
    # Login CSRF: a cross-site form posts the attacker's credentials without our token.
    with httpx.Client(base_url=instance, follow_redirects=False) as victim:
        forged = victim.post("/dashboard/login", data={"username": "admin", "password": PASSWORD})
        assert forged.status_code == 403
        assert "nowramp_dashboard=" not in forged.headers.get("set-cookie", "")
        token = login_token(victim, "/dashboard/login")
        # The token without its cookie (another browser's form) is refused too.
        with httpx.Client(base_url=instance) as other:
            other_try = other.post(
                "/dashboard/login",
                data={"username": "admin", "password": PASSWORD, "csrf_token": token},
            )
            assert other_try.status_code == 403
        cookie = victim.cookies["nowramp_dashboard_login"]
        assert "HttpOnly" in victim.get("/dashboard/login").headers.get("set-cookie", "HttpOnly")
        ok = victim.post(
            "/dashboard/login",
            data={"username": "admin", "password": PASSWORD, "csrf_token": cookie},
        )
        assert ok.status_code == 303
        assert victim.get("/dashboard/keys").status_code == 200


def test_a_password_change_ends_the_accounts_sessions_on_every_instance(shared):
    _, accounts, env = shared
    with serve(APP, env) as first, serve(APP, env) as second:
        on_first = signed_in(first, "alice", ALICE_PASSWORD)
        on_second = signed_in(second, "alice", ALICE_PASSWORD)
        with closing(on_first), closing(on_second):
            assert on_first.get("/dashboard/keys").status_code == 200
            assert on_second.get("/dashboard/keys").status_code == 200
            accounts.set_password("alice", "alice's new long password")
            for browser in (on_first, on_second):
                answer = browser.get("/dashboard/keys")
                assert answer.status_code == 303 and answer.headers["location"].endswith("/login")
            # The new password signs in again; the old one does not.
            with httpx.Client(base_url=second, follow_redirects=False) as again:
                old = login(
                    again, "/dashboard/login", {"username": "alice", "password": ALICE_PASSWORD}
                )
                assert old.status_code == 401
                new = login(
                    again,
                    "/dashboard/login",
                    {"username": "alice", "password": "alice's new long password"},
                )
                assert new.status_code == 303


def from_proxy(base: str, **headers: str) -> httpx.Client:
    """A client whose connections come from 127.0.0.2, the trusted proxy of these tests."""
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    return httpx.Client(base_url=base, headers=headers, transport=transport)


def _attempt(
    base: str, password: str, *, proxy: bool = False, username: str = "admin", **headers: str
) -> int:
    browser = from_proxy(base, **headers) if proxy else httpx.Client(base_url=base, headers=headers)
    with browser:
        answer = login(browser, "/dashboard/login", {"username": username, "password": password})
        return answer.status_code


def test_the_throttle_sees_the_client_behind_a_trusted_proxy(shared):
    # The proxy (127.0.0.2, trusted) forwards two people: one guessing, one signing in.
    with serve(APP, shared[2]) as base:
        guesser = {"X-Forwarded-For": "203.0.113.9"}
        statuses = [_attempt(base, "wrong password!", proxy=True, **guesser) for _ in range(6)]
        assert statuses == [401] * 5 + [429]
        # Someone else behind the same proxy is not throttled by the guesser's failures.
        other = {"X-Forwarded-For": "198.51.100.20"}
        assert _attempt(base, ALICE_PASSWORD, proxy=True, username="alice", **other) == 303
        # An untrusted peer's X-Forwarded-For counts for nothing: throttled by its address.
        spoofed = [
            _attempt(base, "wrong password!", **{"X-Forwarded-For": f"192.0.2.{i}"})
            for i in range(6)
        ]
        assert spoofed[-1] == 429


def test_successful_sign_ins_are_not_counted(instance):
    # Six colleagues behind one NAT sign in within the minute: all of them get in.
    assert [_attempt(instance, PASSWORD) for _ in range(8)] == [303] * 8


def test_a_guessed_account_waits_but_its_owner_is_never_locked_out_for_long(shared, instance):
    # Failures from many addresses (an attacker cycling them) slow the account down.
    statuses = [
        _attempt(instance, "wrong password!", proxy=True, **{"X-Forwarded-For": f"203.0.113.{i}"})
        for i in range(7)
    ]
    assert statuses[:5] == [401] * 5 and 429 in statuses[5:]
    # The delay is bounded: the owner gets in once it has passed.
    assert all(account_delay(n) <= MAX_DELAY for n in range(1000))
    deadline = time.monotonic() + 10
    owner = {"X-Forwarded-For": "198.51.100.7"}
    while _attempt(instance, PASSWORD, proxy=True, **owner) != 303:
        assert time.monotonic() < deadline, "the owner stayed locked out"
        time.sleep(0.5)


def test_ipv6_clients_are_throttled_by_their_64():
    one = client_bucket(parse_ip("2001:db8:1:2::1"))
    assert one == client_bucket(parse_ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
    assert one != client_bucket(parse_ip("2001:db8:1:3::1"))
    assert client_bucket(parse_ip("192.0.2.1")) != client_bucket(parse_ip("192.0.2.2"))


def test_cookies_are_secure_behind_a_tls_terminating_trusted_proxy(shared, instance):
    with from_proxy(instance, **{"X-Forwarded-Proto": "https"}) as browser:
        form = browser.get("/dashboard/login")
        assert "Secure" in form.headers["set-cookie"]
    with httpx.Client(base_url=instance, headers={"X-Forwarded-Proto": "https"}) as direct:
        form = direct.get("/dashboard/login")  # an untrusted peer cannot claim https
        assert "Secure" not in form.headers["set-cookie"]


def test_account_names_and_projects_are_validated(shared):
    accounts = shared[1]
    for name in ("Admin", "ADMIN", "Alice"):  # the shortcut, and alice in another case
        with pytest.raises(ValueError):
            accounts.add(name, "a long enough password", None)
    for project in ("p" * 5000, "proj\x1b[31m", ""):
        with pytest.raises(ValueError):
            accounts.add("bob", "a long enough password", frozenset({project}))
    assert [a.name for a in accounts.list()] == ["alice"]


def test_a_partners_key_list_reads_only_its_projects(shared, instance):
    manager = shared[0]
    mine = manager.create(scopes=["quotes:read"], project_id="proj_partner", name="mine")
    for i in range(30):
        manager.create(scopes=["quotes:read"], project_id=f"proj_other_{i}")
    store = manager.store
    calls: list[str | None] = []
    original = store.list_keys

    def counting(project_id: str | None = None):  # type: ignore[no-untyped-def]
        calls.append(project_id)
        return original(project_id)

    store.list_keys = counting  # type: ignore[method-assign]
    partner = DashboardUser("alice", "Alice", frozenset({"proj_partner"}))
    app = Starlette(routes=[Mount("/p", create_dashboard(manager, identify=lambda r: partner))])
    page = TestClient(app).get("/p/keys")
    assert page.status_code == 200 and mine.key.id in page.text
    assert calls == ["proj_partner"]  # never every tenant's keys
