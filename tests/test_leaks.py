"""Leaked keys: signed GitHub secret-scanning alerts revoke exactly the known keys, anything
unsigned changes nothing, public reports answer the same for known and unknown keys, the
public keys are fetched once and cached, and the scanner finds keys without printing them."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from nowramp_auth import AuditEvent, MemoryAuditLog
from nowramp_auth._keys import generate_key
from nowramp_auth.leaks import secret_scanning_app
from nowramp_auth.leaks._app import MAX_ALERT_ITEMS, REPORTS_PER_MINUTE
from nowramp_auth.testing import AuthKit, auth_kit

IDENTIFIER = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c"


class Signer:
    """A locally generated P-256 key pair standing in for GitHub's."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.pem = (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def headers(self, body: bytes, identifier: str = IDENTIFIER) -> dict[str, str]:
        signature = self.private.sign(body, ec.ECDSA(hashes.SHA256()))
        return {
            "GITHUB-PUBLIC-KEY-IDENTIFIER": identifier,
            "GITHUB-PUBLIC-KEY-SIGNATURE": base64.b64encode(signature).decode(),
            "Content-Type": "application/json",
        }


GITHUB = Signer()


@pytest.fixture
def kit() -> AuthKit:
    return auth_kit()


def app_for(kit: AuthKit, notified: list[AuditEvent] | None = None, **options: Any) -> TestClient:
    def notify(event: AuditEvent) -> None:
        if notified is not None:
            notified.append(event)

    options.setdefault("public_keys", {IDENTIFIER: GITHUB.pem})
    return TestClient(secret_scanning_app(kit.manager, notify=notify, **options))


def alert(tokens: list[str], url: str = "https://github.com/o/r/blob/main/x.py") -> bytes:
    items = [
        {"token": t, "type": "nowramp_live_key", "url": url, "source": "content"} for t in tokens
    ]
    return json.dumps(items).encode()


def states(kit: AuthKit) -> dict[str, bool]:
    return {r.id: r.revoked_at is not None for r in kit.manager.list()}


def wait_for(condition: Any, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_signed_alert_revokes_exactly_the_known_keys(kit: AuthKit):
    live = kit.key("quotes:read", key_type="live", project_id="proj_1")
    test_key = kit.key("quotes:read")
    bystander = kit.key("quotes:read")
    wrong_secret = generate_key("live")[0]  # well formed, unknown
    _, known_id = live.secret, live.key.id
    forged = live.secret[:20] + ("A" if live.secret[20] != "A" else "B") + live.secret[21:]
    tokens = [live.secret, test_key.secret, wrong_secret, forged, "ramp_live_nope", "hello"]
    notified: list[AuditEvent] = []
    client = app_for(kit, notified)
    body = alert(tokens)
    answer = client.post("/", content=body, headers=GITHUB.headers(body))
    assert answer.status_code == 200
    labels = answer.json()
    assert [item["label"] for item in labels] == [
        "true_positive",
        "true_positive",
        "false_positive",
        "false_positive",
        "false_positive",
        "false_positive",
    ]
    assert [item["token_hash"] for item in labels] == [
        hashlib.sha256(t.encode()).hexdigest() for t in tokens
    ]
    assert {item["token_type"] for item in labels} == {"nowramp_live_key"}
    assert states(kit) == {known_id: True, test_key.key.id: True, bystander.key.id: False}
    for token in tokens:  # the token is never echoed, audited or notified
        assert token not in answer.text
    leaked = [e for e in kit.audit.events if e.type == "key.leaked"]
    assert {e.key_id for e in leaked} == {known_id, test_key.key.id}
    assert all(e.actor == "secret-scanning" for e in leaked)
    first = next(e for e in leaked if e.key_id == known_id)
    assert first.project_id == "proj_1"
    assert json.loads(first.detail or "") == {
        "source": "content",
        "url": "https://github.com/o/r/blob/main/x.py",
    }
    wait_for(lambda: len(notified) == 2)
    assert {e.key_id for e in notified} == {known_id, test_key.key.id}
    texts = json.dumps([e.to_dict() for e in kit.audit.events])
    assert live.secret not in texts and test_key.secret not in texts


def test_a_second_alert_of_a_revoked_key_keeps_its_first_revocation(kit: AuthKit):
    issued = kit.key("quotes:read")
    client = app_for(kit)
    body = alert([issued.secret])
    client.post("/", content=body, headers=GITHUB.headers(body))
    first = kit.manager.get(issued.key.id).revoked_at
    kit.clock.advance(seconds=30)
    again = client.post("/", content=body, headers=GITHUB.headers(body))
    assert again.json()[0]["label"] == "true_positive"
    assert kit.manager.get(issued.key.id).revoked_at == first
    assert [e.type for e in kit.audit.events].count("key.revoked") == 1


@pytest.mark.parametrize(
    "case", ["wrong signer", "unknown identifier", "garbage", "no headers", "other body"]
)
def test_anything_but_a_valid_signature_changes_nothing(kit: AuthKit, case: str):
    issued = kit.key("quotes:read")
    client = app_for(kit)
    body = alert([issued.secret])
    if case == "wrong signer":
        headers = Signer().headers(body)
    elif case == "unknown identifier":
        headers = GITHUB.headers(body, identifier="not-a-known-key")
    elif case == "garbage":
        headers = {**GITHUB.headers(body), "GITHUB-PUBLIC-KEY-SIGNATURE": "@@not base64@@"}
    elif case == "no headers":
        headers = {"Content-Type": "application/json"}
    else:
        headers = GITHUB.headers(alert([generate_key("live")[0]]))
    answer = client.post("/", content=body, headers=headers)
    assert answer.status_code == 401
    assert issued.secret not in answer.text
    assert states(kit) == {issued.key.id: False}
    assert not [e for e in kit.audit.events if e.type in ("key.leaked", "key.revoked")]


def test_oversized_bodies_are_refused(kit: AuthKit):
    client = app_for(kit)
    huge = b"[" + b" " * (1024 * 1024) + b"]"
    assert client.post("/", content=huge, headers=GITHUB.headers(huge)).status_code == 413
    many = alert(["x"] * (MAX_ALERT_ITEMS + 1))
    assert client.post("/", content=many, headers=GITHUB.headers(many)).status_code == 400
    bad = b'{"token": "x"}'
    assert client.post("/", content=bad, headers=GITHUB.headers(bad)).status_code == 400


def test_reports_answer_the_same_whether_or_not_a_key_exists(kit: AuthKit):
    known = kit.key("quotes:read")
    client = app_for(kit)
    unknown = client.post("/report", json={"keys": [generate_key("live")[0], "junk"]})
    found = client.post("/report", json={"keys": [known.secret]})
    assert (unknown.status_code, unknown.content) == (found.status_code, found.content)
    assert found.status_code == 202 and known.secret not in found.text
    assert states(kit) == {known.key.id: True}
    leaked = [e for e in kit.audit.events if e.type == "key.leaked"]
    assert [(e.key_id, e.actor) for e in leaked] == [(known.key.id, "leak-report")]
    assert client.post("/report", json={"keys": ["x"] * 101}).status_code == 400
    assert client.post("/report", content=b"not json").status_code == 400


def test_reports_are_rate_limited_per_client_behind_trusted_proxies(kit: AuthKit):
    app = secret_scanning_app(kit.manager, public_keys={}, trusted_proxies=["10.0.0.0/8"])
    proxy = TestClient(app, client=("10.0.0.1", 40000))
    one = {"X-Forwarded-For": "203.0.113.5"}
    statuses = [
        proxy.post("/report", json={"keys": []}, headers=one).status_code
        for _ in range(REPORTS_PER_MINUTE + 1)
    ]
    assert statuses == [202] * REPORTS_PER_MINUTE + [429]
    other = {"X-Forwarded-For": "198.51.100.5"}  # another person behind the same proxy
    assert proxy.post("/report", json={"keys": []}, headers=other).status_code == 202


class _KeysServer:
    """A local HTTP server standing in for GitHub's meta endpoint."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                listing = {
                    "public_keys": [
                        {"key_identifier": k, "key": pem, "is_current": True}
                        for k, pem in outer.keys.items()
                    ]
                }
                payload = json.dumps(listing).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = (
            f"http://127.0.0.1:{self.server.server_address[1]}/meta/public_keys/secret_scanning"
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def keys_server() -> Iterator[_KeysServer]:
    server = _KeysServer({IDENTIFIER: GITHUB.pem})
    try:
        yield server
    finally:
        server.server.shutdown()


def test_public_keys_are_fetched_once_and_cached(kit: AuthKit, keys_server: _KeysServer):
    issued = kit.key("quotes:read")
    client = TestClient(secret_scanning_app(kit.manager, keys_url=keys_server.url))
    for _ in range(3):
        body = alert([generate_key("live")[0]])
        assert client.post("/", content=body, headers=GITHUB.headers(body)).status_code == 200
    assert keys_server.hits == 1
    # An unknown identifier fetches again, at most once a minute.
    for _ in range(3):
        body = alert([issued.secret])
        refused = client.post("/", content=body, headers=GITHUB.headers(body, "rotated-key"))
        assert refused.status_code == 401
    assert keys_server.hits == 1  # fetched less than a minute ago: not again
    assert states(kit) == {issued.key.id: False}


def test_an_unreachable_keys_endpoint_refuses_alerts(kit: AuthKit):
    client = TestClient(secret_scanning_app(kit.manager, keys_url="http://127.0.0.1:9/none"))
    body = alert([kit.key("quotes:read").secret])
    assert client.post("/", content=body, headers=GITHUB.headers(body)).status_code == 401


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=60),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.sampled_from(["token", "type", "url", "source", "x"]), inner)
            ),
            max_leaves=12,
        ).map(lambda value: json.dumps(value).encode()),
    )
)
def test_fuzzed_signed_alerts_never_fail_and_never_revoke_unnamed_keys(payload: bytes):
    kit = auth_kit()
    keys = [kit.key("quotes:read") for _ in range(2)]
    client = app_for(kit)
    answer = client.post("/", content=payload, headers=GITHUB.headers(payload))
    assert answer.status_code in (200, 400), answer.text
    for issued in keys:  # none of them was named in the body
        assert kit.manager.get(issued.key.id).revoked_at is None


def test_a_leaked_keys_page_says_where_and_when(kit: AuthKit):
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from nowramp_auth.dashboard import DashboardUser, create_dashboard

    issued = kit.key("quotes:read", project_id="proj_1")
    client = app_for(kit)
    body = alert([issued.secret], url="https://github.com/o/r/blob/main/<b>.py")
    client.post("/", content=body, headers=GITHUB.headers(body))
    audit = kit.audit
    assert isinstance(audit, MemoryAuditLog)
    partner = DashboardUser("p", "P", frozenset({"proj_1"}))
    dashboard = create_dashboard(kit.manager, audit=audit, identify=lambda r: partner)
    page = TestClient(Starlette(routes=[Mount("/d", dashboard)])).get(f"/d/keys/{issued.key.id}")
    assert page.status_code == 200
    assert 'id="leak"' in page.text and "secret-scanning" in page.text
    assert "https://github.com/o/r/blob/main/&lt;b&gt;.py" in page.text  # escaped
    assert (
        "key.leaked" in TestClient(Starlette(routes=[Mount("/d", dashboard)])).get("/d/audit").text
    )
