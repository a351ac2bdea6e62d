"""The nowramp-auth command line, in subprocesses, against a real (private) Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.servers import ROOT

pytestmark = [pytest.mark.redis, pytest.mark.smoke]  # smoke: also run against the wheel


@pytest.fixture
def cli(redis_url: str, namespace: str):
    def run(
        *args: str, env: dict[str, str] | None = None, url: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "nowramp_auth", "--namespace", namespace, *args]
        full_env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "NOWRAMP_AUTH_REDIS_URL": url or redis_url,
            **(env or {}),
        }
        return subprocess.run(
            command, capture_output=True, text=True, env=full_env, timeout=60, cwd=ROOT
        )

    return run


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def test_full_lifecycle(cli):
    created = json.loads(
        ok(
            cli(
                "keys",
                "create",
                "--type",
                "live",
                "--scope",
                "quotes:read",
                "--scope",
                "orders:write",
                "--name",
                "backend",
                "--project",
                "proj_1",
                "--allow-ip",
                "203.0.113.0/24",
                "--expires-in",
                "90d",
                "--metadata",
                "account=acct_1",
                "--rate-limit",
                "100/60s",
                "--json",
            )
        )
    )
    secret, key = created["secret"], created["key"]
    assert secret.startswith("ramp_live_")
    assert key["scopes"] == ["orders:write", "quotes:read"]
    assert key["metadata"] == {"account": "acct_1"}
    assert key["rate_limit"] == {"requests": 100, "window_seconds": 60.0}
    key_id = key["id"]

    human = ok(cli("keys", "create", "--scope", "quotes:read", "--name", "sandbox"))
    assert "shown only once" in human
    other_secret = next(w for w in human.split() if w.startswith("ramp_test_"))

    listing = ok(cli("keys", "list", "--project", "proj_1"))
    assert key_id in listing and "backend" in listing and "100/60s" in listing
    assert listing.splitlines()[0].split()[:3] == ["ID", "TYPE", "NAME"]
    shown = json.loads(ok(cli("keys", "show", key_id, "--json")))
    assert shown["id"] == key_id and shown["allowed_ips"] == ["203.0.113.0/24"]
    assert "status:" in ok(cli("keys", "show", key_id))

    updated = json.loads(
        ok(
            cli(
                "keys",
                "update",
                key_id,
                "--scope",
                "kyc:read",
                "--clear-allow-ips",
                "--no-rate-limit",
                "--json",
            )
        )
    )
    assert updated["scopes"] == ["kyc:read"] and updated["allowed_ips"] == []
    assert updated["rate_limit"] is None

    session = json.loads(
        ok(
            cli(
                "sessions",
                "create",
                "--key-env",
                "THE_KEY",
                "--project",
                "proj_1",
                "--json",
                env={"THE_KEY": secret},
            )
        )
    )
    assert session["session_token"].startswith("ramp_sess_")
    assert "Revoked session" in ok(cli("sessions", "revoke", session["session_id"]))

    rotated_out = ok(cli("keys", "rotate", key_id, "--grace", "1h"))
    assert "stays valid until" in rotated_out
    new_secret = next(w for w in rotated_out.split() if w.startswith("ramp_live_"))
    assert "Revoked" in ok(cli("keys", "revoke", key_id))

    everything = ok(cli("keys", "list")) + ok(cli("keys", "list", "--json"))
    everything += ok(cli("keys", "show", key_id)) + ok(cli("audit", "--limit", "100"))
    audit_json = ok(cli("audit", "--limit", "100", "--json"))
    everything += audit_json
    for s in (secret, other_secret, new_secret, session["session_token"]):
        assert s not in everything and s[10:] not in everything
    types = [e["type"] for e in json.loads(audit_json)]
    assert types[:4] == ["key.revoked", "key.rotated", "session.revoked", "session.created"]
    assert "key.updated" in types and types.count("key.created") == 2
    assert {e["actor"] for e in json.loads(audit_json)} == {"cli"}  # a person did all this
    only_key = json.loads(ok(cli("audit", "--key", key_id, "--since", "1h", "--json")))
    assert {e["key_id"] for e in only_key} == {key_id}


@pytest.mark.parametrize(
    ("args", "status", "needle"),
    [
        pytest.param(["keys", "create"], 2, "--scope", id="missing-scope"),
        pytest.param(
            ["keys", "create", "--scope", "quotes:reed"], 1, "quotes:reed", id="unknown-scope"
        ),
        pytest.param(
            ["keys", "create", "--scope", "quotes:read", "--allow-ip", "10.0.0.0/33"],
            1,
            "10.0.0.0/33",
            id="bad-cidr",
        ),
        pytest.param(
            ["keys", "create", "--scope", "quotes:read", "--expires-in", "soon"],
            1,
            "duration",
            id="bad-duration",
        ),
        pytest.param(
            ["keys", "create", "--scope", "quotes:read", "--rate-limit", "lots"],
            1,
            "rate limit",
            id="bad-rate-limit",
        ),
        pytest.param(
            ["keys", "create", "--scope", "quotes:read", "--metadata", "novalue"],
            2,
            "KEY=VALUE",
            id="bad-metadata",
        ),
        pytest.param(["keys", "show", "key_ABCDnotthere0000"], 1, "no such key", id="unknown-key"),
        pytest.param(
            ["keys", "rotate", "key_ABCDnotthere0000"], 1, "no such key", id="rotate-unknown"
        ),
        pytest.param(
            ["keys", "update", "key_ABCDnotthere0000"], 2, "nothing to change", id="update-nothing"
        ),
        pytest.param(
            ["sessions", "create", "--key-env", "UNSET_VAR_X", "--project", "p"],
            2,
            "UNSET_VAR_X",
            id="key-env-unset",
        ),
        pytest.param(["bogus"], 2, "invalid choice", id="unknown-command"),
        pytest.param(["audit", "--limit", "0"], 2, "--limit", id="bad-limit"),
    ],
)
def test_errors_are_one_line(cli, args, status, needle):
    result = cli(*args)
    assert result.returncode == status
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nowramp-auth: error:")
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_unreachable_redis_is_one_line(cli):
    from tests.redis_servers import free_port

    result = cli("keys", "list", url=f"redis://127.0.0.1:{free_port()}/0")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "store unreachable" in result.stderr and "Traceback" not in result.stderr


def test_no_store_configured(cli):
    result = subprocess.run(
        [sys.executable, "-m", "nowramp_auth", "keys", "list"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "NOWRAMP_AUTH_REDIS_URL"},
    )
    assert result.returncode == 2
    assert "NOWRAMP_AUTH_REDIS_URL" in result.stderr


HUGE = "99999999d"
HUGE_ARGUMENTS = [
    ["keys", "create", "--scope", "quotes:read", "--expires-in", HUGE],
    ["keys", "create", "--scope", "quotes:read", "--rate-limit", "10/1000000000w"],
    ["keys", "create", "--scope", "quotes:read", "--expires-in", "9" * 400 + "d"],
    ["keys", "rotate", "{key}", "--grace", HUGE],
    ["keys", "update", "{key}", "--expires-in", HUGE],
    ["keys", "update", "{key}", "--rate-limit", "1/" + HUGE],
    ["audit", "--since", HUGE],
    ["demo", "--port", "99999"],
    ["demo", "--port", "-1"],
]


def test_huge_numbers_are_one_line_errors(cli):
    key = json.loads(ok(cli("keys", "create", "--scope", "quotes:read", "--json")))["key"]["id"]
    for args in HUGE_ARGUMENTS:
        result = cli(*[arg.format(key=key) for arg in args])
        assert result.returncode != 0, (args, result.stdout)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nowramp-auth: error:"), result.stderr
    # nothing changed: the key still has no expiry and was not rotated, and no key was made
    shown = json.loads(ok(cli("keys", "show", key, "--json")))
    assert shown["expires_at"] is None and shown["rotated_to"] is None
    assert len(json.loads(ok(cli("keys", "list", "--json")))) == 1


def test_redis_out_of_memory_is_said_plainly(cli, redis_server):
    url = redis_server.url
    key = json.loads(ok(cli("keys", "create", "--scope", "quotes:read", "--json", url=url)))
    admin = redis_server.client()
    admin.config_set("maxmemory", "1")  # every write is now refused (noeviction)
    try:
        result = cli("keys", "revoke", key["key"]["id"], url=url)
    finally:
        admin.config_set("maxmemory", "0")
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "out of memory" in line and "nothing was changed" in line, line
    assert "unreachable" not in line
    shown = json.loads(ok(cli("keys", "show", key["key"]["id"], "--json", url=url)))
    assert shown["revoked_at"] is None


def test_audit_table_escapes_control_characters(cli, redis_url: str, namespace: str):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from nowramp_auth import Authenticator, RedisKeyStore
    from nowramp_auth.starlette import ApiKeyMiddleware
    from nowramp_auth.stores.redis_audit import RedisStreamAuditLog

    store = RedisKeyStore.from_url(redis_url, namespace=namespace)
    audit = RedisStreamAuditLog(store)
    try:
        app = Starlette()
        app.add_middleware(ApiKeyMiddleware, authenticator=Authenticator(store, audit=audit))
        hostile = "/v1/%1b%5b2K%1b%5b1A%1b%5b32mkey.created%20OK%1b%5b0m%e2%80%ae%07"
        assert TestClient(app).get(hostile).status_code == 401
        audit.flush()
    finally:
        audit.close()
        store.close()
    table = ok(cli("audit"))
    assert "auth.failed" in table
    for raw in ("\x1b", "\u202e", "\x07"):
        assert raw not in table
    assert "\\x1b[2K\\x1b[1A\\x1b[32mkey.created OK\\x1b[0m\\u202e\\x07" in table, table
    # --json keeps the exact path (JSON escapes it)
    events = json.loads(ok(cli("audit", "--json")))
    assert events[0]["path"] == "/v1/\x1b[2K\x1b[1A\x1b[32mkey.created OK\x1b[0m\u202e\x07"


def test_sessions_for_a_key_with_an_allowlist_take_client_ip(cli):
    created = json.loads(
        ok(
            cli(
                "keys",
                "create",
                "--scope",
                "quotes:read",
                "--project",
                "p1",
                "--allow-ip",
                "203.0.113.0/24",
                "--json",
            )
        )
    )
    env = {"PARTNER_KEY": created["secret"]}
    base = ["sessions", "create", "--key-env", "PARTNER_KEY", "--project", "p1", "--json"]
    without = cli(*base, env=env)
    assert without.returncode == 2 and "--client-ip" in without.stderr, without.stderr
    outside = cli(*base, "--client-ip", "198.51.100.7", env=env)
    assert outside.returncode == 1 and "IP_NOT_ALLOWED" in outside.stderr
    bad = cli(*base, "--client-ip", "not-an-ip\x1b[2K", env=env)
    assert bad.returncode == 2 and "\x1b" not in bad.stderr and "Traceback" not in bad.stderr
    session = json.loads(ok(cli(*base, "--client-ip", "203.0.113.7", env=env)))
    assert session["session_token"].startswith("ramp_sess_") and session["project_id"] == "p1"
