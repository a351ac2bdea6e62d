"""Built-in dashboard accounts and sessions in the key store (Redis, shared by instances):
the CLI round trip, sign-in with an account, a wrong password and a disabled account refused,
and a session that works on every instance and ends everywhere at sign-out."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from nowramp_auth import KeyManager, MemoryKeyStore, RedisKeyStore
from nowramp_auth._accounts import Accounts
from nowramp_auth.dashboard import create_dashboard
from tests.dashboard_login import login
from tests.servers import ROOT

pytestmark = pytest.mark.redis
PASSWORD = "a long partner password"


def cli(url: str, namespace: str, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "nowramp_auth", "--namespace", namespace, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "NOWRAMP_AUTH_REDIS_URL": url, **(env or {})},
    )


def instance(
    url: str, namespace: str, client: str = "198.51.100.1"
) -> tuple[TestClient, KeyManager]:
    """One dashboard instance on its own store object (sharing Redis with the others),
    with a browser at ``client`` (the sign-in throttle counts per address)."""
    manager = KeyManager(RedisKeyStore.from_url(url, namespace=namespace))
    app = Starlette(routes=[Mount("/d", create_dashboard(manager))])
    test_client = TestClient(
        app, base_url="https://testserver", follow_redirects=False, client=(client, 50000)
    )
    return test_client, manager


def sign_in(client: TestClient, username: str, password: str) -> int:
    return login(client, "/d/login", {"username": username, "password": password}).status_code


def test_accounts_round_trip_through_the_cli(redis_url: str, namespace: str):
    env = {"PW": PASSWORD, "PW2": "another long password"}
    added = cli(
        redis_url,
        namespace,
        "accounts",
        "add",
        "alice",
        "--project",
        "pa",
        "--project",
        "pb",
        "--password-env",
        "PW",
        env=env,
    )
    assert added.returncode == 0, added.stderr
    assert (
        cli(
            redis_url,
            namespace,
            "accounts",
            "add",
            "ops",
            "--operator",
            "--password-env",
            "PW",
            env=env,
        ).returncode
        == 0
    )
    again = cli(
        redis_url,
        namespace,
        "accounts",
        "add",
        "alice",
        "--project",
        "pa",
        "--password-env",
        "PW",
        env=env,
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    short = cli(
        redis_url,
        namespace,
        "accounts",
        "add",
        "bob",
        "--project",
        "pa",
        "--password-env",
        "SHORT",
        env={"SHORT": "short"},
    )
    assert short.returncode == 1 and "12" in short.stderr
    listed = json.loads(cli(redis_url, namespace, "accounts", "list", "--json").stdout)
    assert [(a["name"], a["project_ids"], a["disabled"]) for a in listed] == [
        ("alice", ["pa", "pb"], False),
        ("ops", None, False),
    ]
    table = cli(redis_url, namespace, "accounts", "list").stdout
    assert "alice" in table and "operator" in table and PASSWORD not in table

    client, manager = instance(redis_url, namespace)
    try:
        assert sign_in(client, "alice", "wrong password entirely") == 401
        assert sign_in(client, "nobody", PASSWORD) == 401
        assert sign_in(client, "alice", PASSWORD) == 303
        page = client.get("/d/keys").text
        assert "alice" in page
        assert (
            cli(
                redis_url,
                namespace,
                "accounts",
                "passwd",
                "alice",
                "--password-env",
                "PW2",
                env=env,
            ).returncode
            == 0
        )
        fresh, _ = instance(redis_url, namespace, "198.51.100.2")
        assert sign_in(fresh, "alice", PASSWORD) == 401
        assert sign_in(fresh, "alice", "another long password") == 303
        assert cli(redis_url, namespace, "accounts", "disable", "alice").returncode == 0
        third = instance(redis_url, namespace, "198.51.100.3")[0]
        assert sign_in(third, "alice", "another long password") == 401
        # ... and her open sessions end at their next request
        assert client.get("/d/keys").status_code == 303
        assert cli(redis_url, namespace, "accounts", "remove", "alice").returncode == 0
        gone = cli(redis_url, namespace, "accounts", "remove", "alice")
        assert gone.returncode == 1 and "alice" in gone.stderr
        names = [
            a["name"]
            for a in json.loads(cli(redis_url, namespace, "accounts", "list", "--json").stdout)
        ]
        assert names == ["ops"]
    finally:
        manager.store.close()  # type: ignore[attr-defined]


def test_a_session_works_on_every_instance_and_ends_everywhere(redis_url: str, namespace: str):
    store = RedisKeyStore.from_url(redis_url, namespace=namespace)
    Accounts(store).add("carol", PASSWORD, frozenset({"pc"}))
    first, _ = instance(redis_url, namespace)
    second, _ = instance(redis_url, namespace)
    assert sign_in(first, "carol", PASSWORD) == 303
    cookie = first.cookies.get("nowramp_dashboard")
    assert cookie and len(cookie) >= 43  # 256 random bits, base64url
    assert store.get_dashboard_item("session", cookie) is None  # kept under its digest only
    second.cookies.set("nowramp_dashboard", cookie)
    page = second.get("/d/keys")
    assert page.status_code == 200 and "carol" in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    assert second.post("/d/logout", data={"csrf_token": token.group(1)}).status_code == 303
    assert first.get("/d/keys").status_code == 303  # signed out on the first one too
    store.close()


def test_the_sign_in_throttle_holds_across_instances(redis_url: str, namespace: str):
    first, _ = instance(redis_url, namespace)
    second, _ = instance(redis_url, namespace)
    statuses = [sign_in(c, "nobody", "wrong password x") for c in [first, second] * 4]
    assert statuses.count(401) == 5 and statuses.count(429) == 3


def test_accounts_in_memory_and_their_checks():
    accounts = Accounts(MemoryKeyStore())
    accounts.add("dave", PASSWORD, frozenset({"pd"}))
    user = accounts.verify("dave", PASSWORD)
    assert user is not None and user.project_ids == frozenset({"pd"})
    assert accounts.verify("dave", PASSWORD + "x") is None
    assert accounts.verify(None, PASSWORD) is None
    for bad in ("admin", "", "has space", "x" * 65):
        with pytest.raises(ValueError):
            accounts.add(bad, PASSWORD, None)
    with pytest.raises(ValueError, match="project"):
        accounts.add("erin", PASSWORD, frozenset())
    raw = MemoryKeyStore()
    Accounts(raw).add("frank", PASSWORD, None)
    assert PASSWORD not in (raw.get_dashboard_item("account", "frank") or "")
    assert "argon2id" in (raw.get_dashboard_item("account", "frank") or "")


def test_sessions_end_when_idle_or_too_old(monkeypatch: pytest.MonkeyPatch):
    import time as real_time

    from nowramp_auth._accounts import DashboardUser
    from nowramp_auth.dashboard import _sessions

    clock = [real_time.time()]
    monkeypatch.setattr(_sessions.time, "time", lambda: clock[0])
    store = MemoryKeyStore()
    sessions = _sessions.StoreSessions(store, idle=30 * 60, absolute=12 * 3600)
    user = DashboardUser("gina", "Gina", frozenset({"pg"}))
    session, cookie = sessions.start(user)
    assert sessions.find(cookie) == session
    assert sessions.find(cookie + "x") is None and sessions.find(None) is None
    # Active use keeps it alive past the idle timeout ...
    for _ in range(10):
        clock[0] += 20 * 60
        found = sessions.find(cookie)
        assert found is not None and found.user == user
    # ... but not past the absolute limit (200 min so far; 12 h in all)
    for _ in range(26):
        clock[0] += 20 * 60
        sessions.find(cookie)
    assert sessions.find(cookie) is None
    # Idle: 31 minutes without a request ends a fresh session.
    _, idle_cookie = sessions.start(user)
    clock[0] += 31 * 60
    assert sessions.find(idle_cookie) is None
    with pytest.raises(ValueError):
        _sessions.StoreSessions(store, idle=60, absolute=30)


def test_an_unreachable_key_store_is_a_503_page_not_a_500():
    from tests.redis_servers import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    store = RedisKeyStore.from_url(url, socket_timeout=0.2, connect_timeout=0.2)
    try:
        app = Starlette(
            routes=[Mount("/d", create_dashboard(KeyManager(store), admin_password=PASSWORD))]
        )
        client = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
        signing_in = login(client, "/d/login", {"username": "admin", "password": PASSWORD})
        assert signing_in.status_code == 503 and "unreachable" in signing_in.text
        client.cookies.set("nowramp_dashboard", "x" * 43)
        page = client.get("/d/keys")
        assert page.status_code == 503 and page.headers["cache-control"] == "no-store"
    finally:
        store.close()
