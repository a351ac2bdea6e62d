"""The CLI and the dashboard on PostgreSQL: ``db upgrade``, keys managed through
``--store-url postgresql://...``, keys moved from Redis with ``keys export | keys import``
(their secrets keep working), and dashboard sign-in sessions shared by two instances."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from nowramp_auth import Authenticator, KeyManager, PostgresKeyStore, RedisKeyStore
from nowramp_auth._accounts import Accounts
from nowramp_auth.dashboard import create_dashboard
from tests.dashboard_login import login
from tests.servers import ROOT

pytestmark = pytest.mark.postgres
PEPPER = "a pepper both stores share"


def cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "nowramp_auth", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        input=stdin,
        env={**os.environ, "NOWRAMP_AUTH_PEPPER": PEPPER, **(env or {})},
    )


def test_db_upgrade_and_keys_on_postgres(postgres_url: str, namespace: str):
    before = cli("--store-url", postgres_url, "--schema", namespace, "keys", "list")
    assert before.returncode == 1 and "db upgrade" in before.stderr
    assert "Traceback" not in before.stderr and len(before.stderr.splitlines()) == 1
    first = cli("--store-url", postgres_url, "--schema", namespace, "db", "upgrade")
    assert first.returncode == 0 and "Applied 0001_initial.sql" in first.stdout
    again = cli("--store-url", postgres_url, "--schema", namespace, "db", "upgrade")
    assert again.returncode == 0 and "up to date" in again.stdout
    env = {"NOWRAMP_AUTH_STORE_URL": postgres_url}
    created = cli(
        "--schema", namespace, "keys", "create", "--scope", "quotes:read", "--json", env=env
    )
    assert created.returncode == 0, created.stderr
    issued = json.loads(created.stdout)
    listed = cli("--schema", namespace, "keys", "list", "--json", env=env)
    assert [k["id"] for k in json.loads(listed.stdout)] == [issued["key"]["id"]]
    assert issued["secret"] not in listed.stdout
    revoked = cli("--schema", namespace, "keys", "revoke", issued["key"]["id"], env=env)
    assert revoked.returncode == 0
    events = cli("--schema", namespace, "audit", "--json", env=env)
    assert {e["type"] for e in json.loads(events.stdout)} >= {"key.created", "key.revoked"}
    bad = cli("--store-url", "mysql://x", "keys", "list")
    assert bad.returncode == 2 and "postgresql://" in bad.stderr


@pytest.mark.redis
def test_keys_move_from_redis_to_postgres_and_keep_working(
    postgres_url: str, namespace: str, redis_url: str
):
    redis_store = RedisKeyStore.from_url(redis_url, namespace=namespace, pepper=PEPPER)
    try:
        manager = KeyManager(redis_store)
        plain = manager.create(scopes=["quotes:read"], project_id="p1", metadata={"a": 1})
        old = manager.create(scopes=["orders:read"])
        successor = manager.rotate(old.key.id)
        Authenticator(redis_store).authenticate(plain.secret)
        redis_store.flush_usage()
    finally:
        redis_store.close()
    exported = cli("--redis-url", redis_url, "--namespace", namespace, "keys", "export")
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.splitlines()
    assert len(lines) == 3
    for secret in (plain.secret, old.secret, successor.secret):
        assert secret not in exported.stdout
    target = ["--store-url", postgres_url, "--schema", namespace]
    assert cli(*target, "db", "upgrade").returncode == 0
    imported = cli(*target, "keys", "import", stdin=exported.stdout)
    assert imported.returncode == 0, imported.stderr
    assert "Imported 3 keys; 0 already there" in imported.stderr
    assert "0 already there" not in cli(*target, "keys", "import", stdin=exported.stdout).stderr

    pg = PostgresKeyStore.from_url(postgres_url, schema=namespace, pepper=PEPPER)
    try:
        record = KeyManager(pg).get(plain.key.id)  # usage came along
        assert record.request_count == 1 and record.metadata == {"a": 1}
        auth = Authenticator(pg)
        assert auth.authenticate(plain.secret).key_id == plain.key.id
        assert auth.authenticate(successor.secret).key_id == successor.key.id
        moved = KeyManager(pg).get(old.key.id)
        assert moved.rotated_to == successor.key.id and moved.expires_at is not None
        assert KeyManager(pg).get(successor.key.id).lineage == old.key.id
    finally:
        pg.close()
    garbage = cli(*target, "keys", "import", stdin="{not json}\n")
    assert garbage.returncode == 2 and "line 1" in garbage.stderr


def test_dashboard_sessions_on_two_postgres_instances(postgres_url: str, namespace: str):
    first = PostgresKeyStore.from_url(postgres_url, schema=namespace, upgrade=True)
    second = PostgresKeyStore.from_url(postgres_url, schema=namespace)
    try:
        Accounts(first).add("alice", "alice's long password", frozenset({"p1"}))
        key = KeyManager(first).create(scopes=["quotes:read"], project_id="p1", name="mine")
        apps = [
            TestClient(
                Starlette(routes=[Mount("/d", create_dashboard(KeyManager(store)))]),
                base_url="https://testserver",
                follow_redirects=False,
            )
            for store in (first, second)
        ]
        signed_in = login(
            apps[0], "/d/login", {"username": "alice", "password": "alice's long password"}
        )
        assert signed_in.status_code == 303
        apps[1].cookies = apps[0].cookies  # the same browser, the other instance
        page = apps[1].get("/d/keys")
        assert page.status_code == 200 and key.key.id in page.text
        Accounts(second).set_password("alice", "alice's new password!")
        assert apps[0].get("/d/keys").status_code == 303  # signed out everywhere
    finally:
        first.close()
        second.close()
