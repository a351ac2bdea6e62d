"""The partner dashboard over HTTP: sign-in, sessions, CSRF, every page and form, and the
show-once property of new keys."""

from __future__ import annotations

import re
import socket
import time
from collections import Counter
from urllib.parse import urlencode

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from nowramp_auth.dashboard import create_dashboard
from nowramp_auth.starlette import ApiKeyMiddleware
from nowramp_auth.testing import AuthKit, auth_kit
from tests import servers
from tests.dashboard_login import login, login_token

pytestmark = pytest.mark.smoke  # also run against the installed wheel

PASSWORD = "correct horse battery staple"


@pytest.fixture
def kit() -> AuthKit:
    return auth_kit()


@pytest.fixture
def app(kit: AuthKit) -> Starlette:
    app = Starlette(
        routes=[
            Mount(
                "/dashboard",
                create_dashboard(kit.manager, admin_password=PASSWORD, audit=kit.audit),
            )
        ]
    )
    app.add_middleware(
        ApiKeyMiddleware, authenticator=kit.authenticator, public_paths=["/dashboard*"]
    )
    return app


@pytest.fixture
def client(app: Starlette) -> TestClient:
    return TestClient(app, base_url="https://testserver", follow_redirects=False)


def sign_in(client: TestClient) -> None:
    response = login(client, "/dashboard/login", {"password": PASSWORD})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/keys"


def csrf(client: TestClient) -> str:
    page = client.get("/dashboard/keys").text
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/keys",
        "/dashboard/audit",
        "/dashboard/keys/key_x/rotate",
        "/dashboard/keys/key_x/revoke",
    ],
)
def test_pages_need_a_session(client: TestClient, path: str):
    response = client.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login"


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/keys",
        "/dashboard/keys/key_x/rotate",
        "/dashboard/keys/key_x/revoke",
        "/dashboard/logout",
    ],
)
def test_forms_need_a_session(client: TestClient, kit: AuthKit, path: str):
    response = client.post(path, data={"scopes": "quotes:read", "csrf_token": "x"})
    assert response.status_code == 303
    assert kit.manager.list() == []


def test_sign_in_cookie_and_wrong_password(client: TestClient):
    wrong = login(client, "/dashboard/login", {"password": "nope"})
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
    response = login(client, "/dashboard/login", {"password": PASSWORD})
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie
    assert "Path=/dashboard" in cookie
    assert PASSWORD not in cookie


def test_sign_in_is_throttled(client: TestClient):
    for _ in range(5):
        assert login(client, "/dashboard/login", {"password": "x"}).status_code == 401
    assert login(client, "/dashboard/login", {"password": PASSWORD}).status_code == 429


def test_forged_cookie_is_rejected(client: TestClient):
    client.cookies.set(
        "nowramp_dashboard", "forged.value.sig", domain="testserver", path="/dashboard"
    )
    assert client.get("/dashboard/keys").status_code == 303


def test_default_password_is_impossible(kit: AuthKit):
    with pytest.raises(ValueError, match="12"):
        create_dashboard(kit.manager, admin_password="short")
    # Without admin_password there is no operator shortcut at all (accounts only).
    client = TestClient(Starlette(routes=[Mount("/d", create_dashboard(kit.manager))]))
    for password in ("", "short", "x" * 40):
        refused = login(client, "/d/login", {"username": "admin", "password": password})
        assert refused.status_code == 401


def test_create_shows_the_key_once(client: TestClient, kit: AuthKit):
    sign_in(client)
    token = csrf(client)
    response = client.post(
        "/dashboard/keys",
        data={
            "csrf_token": token,
            "key_type": "live",
            "name": "backend",
            "project_id": "p1",
            "scopes": ["quotes:read", "orders:read"],
            "allowed_ips": "203.0.113.0/24,\n10.0.0.0/8",
            "expires_in_days": "90",
        },
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    secret = re.search(r'value="(ramp_live_[0-9A-Za-z]+)"', response.text).group(1)
    assert "shown only once" in response.text
    (record,) = kit.manager.list()
    assert record.name == "backend" and record.scopes == {"quotes:read", "orders:read"}
    assert record.allowed_ips == ("203.0.113.0/24", "10.0.0.0/8")
    assert record.expires_at is not None
    kit.authenticator.authenticate(secret, client_ip="203.0.113.9")
    # Not retrievable again: no later page carries it.
    for path in (
        "/dashboard/keys",
        "/dashboard/audit",
        f"/dashboard/keys/{record.id}/rotate",
        f"/dashboard/keys/{record.id}/revoke",
    ):
        assert secret not in client.get(path).text
    assert secret not in str(response.url)


def test_create_with_bad_input_shows_the_error(client: TestClient, kit: AuthKit):
    sign_in(client)
    response = client.post(
        "/dashboard/keys",
        data={"csrf_token": csrf(client), "scopes": ["quotes:read"], "allowed_ips": "10.0.0.0/33"},
    )
    assert response.status_code == 400
    assert "10.0.0.0/33" in response.text
    assert kit.manager.list() == []


@pytest.mark.parametrize("token", [None, "", "wrong"])
def test_csrf_is_required_and_nothing_changes(client: TestClient, kit: AuthKit, token):
    issued = kit.key("quotes:read")
    sign_in(client)
    data = (
        {"scopes": ["quotes:read"]}
        if token is None
        else {"scopes": ["quotes:read"], "csrf_token": token}
    )
    assert client.post("/dashboard/keys", data=data).status_code == 403
    assert client.post(f"/dashboard/keys/{issued.key.id}/revoke", data=data).status_code == 403
    assert client.post(f"/dashboard/keys/{issued.key.id}/rotate", data=data).status_code == 403
    assert [r.id for r in kit.manager.list()] == [issued.key.id]
    assert kit.manager.get(issued.key.id).status(kit.clock.now) == "active"


def test_rotate_and_revoke_with_confirmation(client: TestClient, kit: AuthKit):
    issued = kit.key("quotes:read", name="old one")
    sign_in(client)
    confirm = client.get(f"/dashboard/keys/{issued.key.id}/rotate")
    assert confirm.status_code == 200 and "Rotate key" in confirm.text
    assert kit.manager.get(issued.key.id).rotated_to is None  # a GET changes nothing
    rotated = client.post(
        f"/dashboard/keys/{issued.key.id}/rotate", data={"csrf_token": csrf(client)}
    )
    assert rotated.status_code == 200 and rotated.headers["cache-control"] == "no-store"
    new_secret = re.search(r'value="(ramp_test_[0-9A-Za-z]+)"', rotated.text).group(1)
    assert "stays valid until" in rotated.text
    new_id = kit.manager.get(issued.key.id).rotated_to
    kit.authenticator.authenticate(new_secret)
    assert "Revoking is immediate" in client.get(f"/dashboard/keys/{new_id}/revoke").text
    done = client.post(f"/dashboard/keys/{new_id}/revoke", data={"csrf_token": csrf(client)})
    assert done.status_code == 303
    assert kit.manager.get(new_id).revoked_at is not None
    again = client.post(
        f"/dashboard/keys/{issued.key.id}/rotate", data={"csrf_token": csrf(client)}
    )
    assert again.status_code == 409
    missing = client.post("/dashboard/keys/key_nothere/revoke", data={"csrf_token": csrf(client)})
    assert missing.status_code == 404


def test_audit_page_filters_and_pages(client: TestClient, kit: AuthKit):
    first = kit.key("quotes:read")
    second = kit.key("orders:read")
    for _ in range(60):
        with pytest.raises(Exception):
            kit.authenticator.authenticate(first.secret, required_scopes=["kyc:read"])
    sign_in(client)
    page = client.get("/dashboard/audit").text
    assert ">auth.failed</td>" in page and ">key.created</td>" not in page  # newest first
    assert "Older" in page
    older = client.get("/dashboard/audit?page=2").text
    assert "key.created" in older and "Newer" in older
    only_second = client.get(f"/dashboard/audit?key={second.key.id}").text
    assert second.key.id in only_second and first.key.id not in only_second
    created = client.get("/dashboard/audit?type=key.created").text
    assert "auth.failed</td>" not in created and created.count("key.created</td>") == 2
    assert client.get("/dashboard/audit?page=banana").status_code == 200


def test_sign_out_ends_the_session(client: TestClient):
    sign_in(client)
    token = csrf(client)
    cookie = client.cookies.get("nowramp_dashboard")
    assert client.post("/dashboard/logout", data={"csrf_token": token}).status_code == 303
    client.cookies.set("nowramp_dashboard", cookie, domain="testserver", path="/dashboard")
    assert client.get("/dashboard/keys").status_code == 303  # the old cookie is dead


def test_security_headers(client: TestClient):
    page = client.get("/dashboard/login")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert 'label for="password"' in page.text
    assert 'name="viewport"' in page.text


def _raw_login_statuses(base: str, password: str, count: int) -> list[int]:
    """``count`` sign-ins over raw sockets: every request's headers first, then (once all
    are in) every body; the status line of each answer."""
    host, port = base.removeprefix("http://").split(":")
    with httpx.Client(base_url=base) as browser:  # the form's CSRF token and its cookie
        token = login_token(browser, "/dashboard/login")
        cookie = browser.cookies["nowramp_dashboard_login"]
    body = urlencode({"username": "admin", "password": password, "csrf_token": token}).encode()
    head = (
        "POST /dashboard/login HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Cookie: nowramp_dashboard_login={cookie}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).format(host=host)
    sockets = [socket.create_connection((host, int(port)), timeout=10) for _ in range(count)]
    try:
        for sock in sockets:
            sock.sendall(head.encode())
        time.sleep(0.5)  # every request is now waiting for its body
        for sock in sockets:
            sock.sendall(body)
        statuses = []
        for sock in sockets:
            answer = b""
            while b"\r\n" not in answer:
                chunk = sock.recv(4096)
                assert chunk, "connection closed without an answer"
                answer += chunk
            statuses.append(int(answer.split(b" ", 2)[1]))
        return statuses
    finally:
        for sock in sockets:
            sock.close()


def test_sign_in_throttle_holds_when_bodies_arrive_after_all_headers():
    with servers.demo() as (base, lines):
        password = re.search(r"admin password: (\S+)\)", "".join(lines))
        assert password
        statuses = _raw_login_statuses(base, "not the password at all", 40)
        assert Counter(statuses) == Counter({401: 5, 429: 35}), Counter(statuses)
        # The right password within the minute is refused too: the allowance is spent.
        assert _raw_login_statuses(base, password.group(1), 1) == [429]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/dashboard/no-such-page", 404),
        ("DELETE", "/dashboard/keys", 405),
        ("PUT", "/dashboard/login", 405),
        ("GET", "/dashboard/", 303),
        ("GET", "/dashboard/keys", 303),  # not signed in: to the sign-in page
    ],
)
def test_answers_no_page_renders_carry_the_security_headers(
    client: TestClient, method: str, path: str, status: int
):
    answer = client.request(method, path, follow_redirects=False)
    assert answer.status_code == status
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_pages_keep_their_own_policy(client: TestClient):
    page = client.get("/dashboard/login")
    assert page.headers["content-security-policy"].count("nonce-") == 2
    assert len(page.headers.get_list("content-security-policy")) == 1


def test_expiry_outside_the_choices_is_a_400(client: TestClient, kit: AuthKit):
    sign_in(client)
    token = csrf(client)
    for choice in ("7", "99999", "-1", "x"):
        answer = client.post(
            "/dashboard/keys",
            data={
                "csrf_token": token,
                "name": "n",
                "scopes": ["quotes:read"],
                "expires_in_days": choice,
            },
        )
        assert answer.status_code == 400, choice
    assert kit.manager.list() == []
