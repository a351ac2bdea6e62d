"""A client on loopback cannot claim another address with forwarding headers: not against
the demo, not against the server commands the README gives, over real HTTP.

uvicorn, by default, believes ``X-Forwarded-For`` from 127.0.0.1 and rewrites the peer
address before any middleware runs, which would make ``trusted_proxies=()`` protect nothing.
Every form of the spoofed header below reached an allowlisted route before the demo and the
README turned the server's proxy handling off.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nowramp_auth import KeyManager, RedisKeyStore
from tests import servers
from tests.servers import ROOT, serve

ALLOWED_NETWORK = "192.0.2.0/24"
SPOOFS: list[list[tuple[str, str]]] = [
    [("X-Forwarded-For", "192.0.2.7")],
    [("X-Forwarded-For", "192.0.2.7:443")],
    [("X-Forwarded-For", "[192.0.2.7]")],
    [("X-Forwarded-For", "203.0.113.9, 192.0.2.7")],
    [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-For", "192.0.2.7")],
    [("Forwarded", "for=192.0.2.7")],
    [("Forwarded", 'for="[::ffff:192.0.2.7]"')],
    [("X-Real-IP", "192.0.2.7")],
    [("X-Forwarded-For", "192.0.2.7"), ("X-Forwarded-Proto", "https")],
]


def assert_spoofs_refused(base: str, path: str, secret: str) -> None:
    """Every spoofed form gets ``403 IP_NOT_ALLOWED`` for a key allowlisted elsewhere."""
    with httpx.Client(base_url=base, timeout=5) as client:
        for spoof in SPOOFS:
            answer = client.get(path, headers=[("X-API-Key", secret), *spoof])
            assert answer.status_code == 403, (spoof, answer.status_code, answer.text)
            assert answer.json()["error"]["code"] == "IP_NOT_ALLOWED", spoof


@pytest.fixture
def demo() -> Iterator[tuple[str, list[str]]]:
    with servers.demo() as running:
        yield running


def _key_after(lines: list[str], title: str) -> str:
    at = next(i for i, line in enumerate(lines) if title in line)
    found = re.search(r"X-API-Key: (ramp_\w+)", lines[at + 1])
    assert found, lines[at + 1]
    return found.group(1)


def test_the_demo_ignores_spoofed_forwarding_headers(demo: tuple[str, list[str]]):
    base, lines = demo
    foreign = _key_after(lines, "403 IP_NOT_ALLOWED")
    assert_spoofs_refused(base, "/v1/quotes", foreign)
    # The localhost-only key still works from loopback whatever a header claims.
    live = re.search(r"live key.*?(ramp_live_\w+)", "".join(lines))
    assert live
    claimed = httpx.get(
        base + "/v1/quotes",
        headers={"X-API-Key": live.group(1), "X-Forwarded-For": "203.0.113.9"},
        timeout=5,
    )
    assert claimed.status_code == 200, claimed.text


def documented_text() -> str:
    """The README and every documentation page."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return "\n".join(page.read_text() for page in pages)


def readme_server_commands() -> list[list[str]]:
    """The commands the README and the docs tell users to serve an app with (in backticks)."""
    found = re.findall(r"`((?:uvicorn|gunicorn|flask) [^`]+)`", documented_text())
    found = list(dict.fromkeys(found))
    commands = [shlex.split(command) for command in found if "examples." in command]
    assert commands, "the README names no server command"
    return commands


def as_test_server(command: list[str]) -> list[str]:
    """The README's command with its flags, serving the test app on ``{port}``."""
    program, *rest = command
    if program == "uvicorn":
        flags = [a for a in rest if not a.startswith("examples.")]
        return ["uvicorn", "tests.server_apps:asgi_app", *flags, "--port", "{port}"]
    if program == "flask":
        flags = [a for a in rest if not a.startswith("examples.") and a not in ("--app", "run")]
        return ["flask", "--app", "tests.server_apps:wsgi_app", "run", *flags, "--port", "{port}"]
    flags = [a for a in rest if not a.startswith("examples.")]
    return ["gunicorn", *flags, "--bind", "127.0.0.1:{port}", "tests.server_apps:wsgi_app"]


def spoof_against(command: list[str], redis_url: str, namespace: str) -> None:
    """Serve the test app with ``command`` (no trusted proxy, as with no proxy in front) and
    try every spoofed form against a key allowlisted elsewhere."""
    store = RedisKeyStore.from_url(redis_url, namespace=namespace)
    try:
        key = KeyManager(store).create(scopes=["quotes:read"], allowed_ips=[ALLOWED_NETWORK])
        env = {
            "NOWRAMP_TEST_REDIS_URL": redis_url,
            "NOWRAMP_TEST_NAMESPACE": namespace,
            "NOWRAMP_TEST_TRUSTED_PROXIES": "",
        }
        with serve(command, env) as base:
            assert_spoofs_refused(base, "/quotes", key.secret)
    finally:
        store.close()


@pytest.mark.redis
@pytest.mark.parametrize("command", readme_server_commands(), ids=lambda command: " ".join(command))
def test_readme_server_commands_ignore_spoofed_forwarding_headers(
    command: list[str], redis_url: str, namespace: str
):
    spoof_against(as_test_server(command), redis_url, namespace)


@pytest.mark.redis
def test_gunicorn_takes_the_address_from_the_socket(redis_url: str, namespace: str):
    spoof_against(as_test_server(["gunicorn", "--workers", "1"]), redis_url, namespace)


def test_readme_explains_each_servers_proxy_setting():
    readme = (ROOT / "README.md").read_text()
    assert "Behind a proxy" in readme and "docs/security.md" in readme
    security = (ROOT / "docs" / "security.md").read_text()
    section = security[security.index("Behind a proxy") :]
    for needle in ("--no-proxy-headers", "forwarded_allow_ips", "ProxyFix", "trusted_proxies"):
        assert needle in section, needle
    assert Path(ROOT / "examples" / "fastapi_app.py").read_text().count("--no-proxy-headers")
