"""Real server processes on loopback: uvicorn (ASGI), gunicorn (WSGI), and the demo command."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import httpx
import pytest

from nowramp_auth import KeyManager, RedisKeyStore
from tests.servers import SERVERS, demo, serve, server_command

pytestmark = [pytest.mark.redis, pytest.mark.smoke]  # smoke: also run against the wheel


@pytest.fixture
def shared(redis_url: str, namespace: str):
    store = RedisKeyStore.from_url(redis_url, namespace=namespace)
    yield (
        KeyManager(store),
        {"NOWRAMP_TEST_REDIS_URL": redis_url, "NOWRAMP_TEST_NAMESPACE": namespace},
    )
    store.close()


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_real_server(server: str, shared):
    manager, env = shared
    reader = manager.create(scopes=["quotes:read"], project_id="p1")
    allowlisted = manager.create(scopes=["quotes:read"], allowed_ips=["198.51.100.0/24"])
    with (
        serve(server_command(server), env) as base,
        httpx.Client(base_url=base, timeout=5) as client,
    ):
        assert client.get("/health").status_code == 200
        ok = client.get("/quotes", headers={"X-API-Key": reader.secret})
        assert ok.status_code == 200 and ok.json()["key_id"] == reader.key.id
        missing = client.get("/quotes")
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "MISSING_API_KEY"
        assert "www-authenticate" in missing.headers
        scope = client.post("/orders", headers={"X-API-Key": reader.secret})
        assert scope.status_code == 403
        assert scope.json()["error"]["code"] == "INSUFFICIENT_PERMISSIONS"
        ip = client.get("/quotes", headers={"X-API-Key": allowlisted.secret})
        assert ip.json()["error"]["code"] == "IP_NOT_ALLOWED"
        proxied = client.get(
            "/quotes", headers={"X-API-Key": allowlisted.secret, "X-Forwarded-For": "198.51.100.7"}
        )
        assert proxied.status_code == 200  # loopback is a trusted proxy in server_apps
        dup = client.get(
            "/quotes", headers=[("X-API-Key", reader.secret), ("X-API-Key", reader.secret)]
        )
        assert dup.json()["error"]["code"] == "INVALID_API_KEY"
        hostile = client.get("/quotes", headers={"X-API-Key": b"ramp_live_\xff\xfe" + b"a" * 4000})
        assert hostile.status_code == 401
        widget = client.post(
            "/widget/sessions",
            headers={"X-API-Key": reader.secret},
            content=b'{"project_id": "p1"}',
        )
        assert widget.status_code == 201
        token = widget.json()["session_token"]
        via = client.get("/quotes", headers={"Authorization": f"Bearer {token}"})
        assert via.status_code == 200 and via.json()["kind"] == "session"
        bad_body = client.post(
            "/widget/sessions", headers={"X-API-Key": reader.secret}, content=b"{not json"
        )
        assert bad_body.status_code == 400
        manager.revoke(reader.key.id)
        deadline = time.monotonic() + 2
        while client.get("/quotes", headers={"X-API-Key": reader.secret}).status_code == 200:
            assert time.monotonic() < deadline, "revocation did not reach the server in 2 s"
            time.sleep(0.02)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_demo_command_and_its_curl_line():
    with demo() as (_, lines):
        at = next(i for i, line in enumerate(lines) if "# 200 success" in line)
        curl = lines[at + 1].strip()
        assert re.match(r"curl -s -H 'X-API-Key: ramp_test_[0-9A-Za-z]+' http://", curl)
        result = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=10)
        assert '"resource":"quotes"' in result.stdout, result.stdout + result.stderr
