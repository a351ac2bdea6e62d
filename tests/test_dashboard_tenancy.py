"""The dashboard for partners: ``identify=`` sign-in, tenant isolation, actors.

Two partners (alice: project pa, bob: project pb) and an operator (root). Every key route and
form tried by one partner with the other's key ids or project answers 404 or a refusal and
changes nothing; the operator sees and may change everything.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount
from starlette.testclient import TestClient

from nowramp_auth import AuthError
from nowramp_auth._accounts import Accounts
from nowramp_auth.dashboard import DashboardUser, create_dashboard
from nowramp_auth.testing import AuthKit, auth_kit
from tests.dashboard_login import login

ACCOUNT_PASSWORD = "a partner's long password"
USERS = {
    "alice": DashboardUser("alice", "Alice", frozenset({"pa"})),
    "bob": DashboardUser("bob", "Bob", frozenset({"pb"})),
    "root": DashboardUser("root", "Operator", None),
}


def sync_identify(request: Request) -> DashboardUser | None:
    return USERS.get(request.headers.get("x-test-user", ""))


async def async_identify(request: Request) -> DashboardUser | None:
    return USERS.get(request.headers.get("x-test-user", ""))


@pytest.fixture(
    params=[sync_identify, async_identify, "accounts"], ids=["sync", "async", "accounts"]
)
def setup(request: pytest.FixtureRequest) -> tuple[AuthKit, Callable[[str], TestClient], dict]:
    """The dashboard with two partners and an operator: identified by the host app (a sync
    or an async ``identify``), or signed in with built-in accounts kept in the key store."""
    kit = auth_kit()
    keys = {
        "pa": kit.manager.create(scopes=["quotes:read"], project_id="pa").key.id,
        "pb": kit.manager.create(scopes=["quotes:read"], project_id="pb").key.id,
        "none": kit.manager.create(scopes=["quotes:read"]).key.id,
    }
    if request.param == "accounts":
        accounts = Accounts(kit.manager.store)  # type: ignore[arg-type]
        for user in USERS.values():
            accounts.add(user.id, ACCOUNT_PASSWORD, user.project_ids)
        dashboard = create_dashboard(kit.manager, audit=kit.audit)
    else:
        dashboard = create_dashboard(kit.manager, audit=kit.audit, identify=request.param)
    app = Starlette(routes=[Mount("/d", dashboard)])
    addresses = iter(range(1, 250))

    def client_for(user: str) -> TestClient:
        if request.param != "accounts":
            return TestClient(app, headers={"X-Test-User": user})
        client = TestClient(app, client=(f"198.51.100.{next(addresses)}", 50000))
        if user in USERS:
            signed_in = login(client, "/d/login", {"username": user, "password": ACCOUNT_PASSWORD})
            assert signed_in.status_code == 200, signed_in.text  # followed to /d/keys
        return client

    return kit, client_for, keys


def same_page(a: str, b: str) -> bool:
    """Equal but for the per-request nonce."""
    nonce = re.compile(r'nonce="[^"]+"')
    return nonce.sub("", a) == nonce.sub("", b)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


def test_partners_see_only_their_projects(setup, request: pytest.FixtureRequest):
    _, client_for, keys = setup
    alice, root = client_for("alice"), client_for("root")
    page = alice.get("/d/keys")
    assert page.status_code == 200 and "alice" in page.text.lower()
    assert keys["pa"] in page.text
    assert keys["pb"] not in page.text and keys["none"] not in page.text
    # The host app signs people out in identify= mode; with accounts, the dashboard does.
    assert ("Sign out" in page.text) is (request.node.callspec.params["setup"] == "accounts")
    assert keys["pb"] not in alice.get("/d/keys?project=pb").text
    everything = root.get("/d/keys").text
    assert all(key_id in everything for key_id in keys.values())


def test_another_partners_keys_answer_404_and_nothing_changes(setup):
    kit, client_for, keys = setup
    alice = client_for("alice")
    token = csrf_of(alice.get("/d/keys").text)
    unknown = alice.get("/d/keys/key_ABCDnotthere0000/rotate")
    for key_id in (keys["pb"], keys["none"]):
        for action in ("rotate", "revoke"):
            page = alice.get(f"/d/keys/{key_id}/{action}")
            assert page.status_code == 404 and key_id not in page.text
            assert same_page(page.text, unknown.text.replace("key_ABCDnotthere0000", key_id))
            forged = alice.post(f"/d/keys/{key_id}/{action}", data={"csrf_token": token})
            assert forged.status_code == 404 and key_id not in forged.text
        record = kit.manager.get(key_id)
        assert record.revoked_at is None and record.rotated_to is None
    refused = alice.post(
        "/d/keys",
        data={"csrf_token": token, "name": "x", "scopes": ["quotes:read"], "project_id": "pb"},
    )
    assert refused.status_code == 400 and "own projects" in refused.text
    assert len(kit.manager.list(project_id="pb")) == 1
    made = alice.post("/d/keys", data={"csrf_token": token, "name": "x", "scopes": ["quotes:read"]})
    assert made.status_code == 200 and "shown only once" in made.text.lower()
    assert len(kit.manager.list(project_id="pa")) == 2  # her only project, by default
    # Her own keys she may rotate and revoke.
    assert alice.post(f"/d/keys/{keys['pa']}/revoke", data={"csrf_token": token}).status_code in (
        200,
        303,
    )
    assert kit.manager.get(keys["pa"]).revoked_at is not None


def test_the_operator_changes_any_key_and_events_name_actors(setup):
    kit, client_for, keys = setup
    root = client_for("root")
    token = csrf_of(root.get("/d/keys").text)
    root.post(f"/d/keys/{keys['pb']}/revoke", data={"csrf_token": token})
    assert kit.manager.get(keys["pb"]).revoked_at is not None
    alice = client_for("alice")
    alice_token = csrf_of(alice.get("/d/keys").text)
    alice.post(f"/d/keys/{keys['pa']}/rotate", data={"csrf_token": alice_token})
    actors = {(e.type, e.key_id): e.actor for e in kit.audit.events if e.actor}
    assert actors[("key.revoked", keys["pb"])] == "root"
    assert actors[("key.rotated", keys["pa"])] == "alice"
    # Audit Logs: alice sees her project's events only; a filter naming bob's key shows none.
    audit = alice.get("/d/audit").text
    assert keys["pa"] in audit and keys["pb"] not in audit
    filtered = alice.get(f"/d/audit?key={keys['pb']}").text
    assert "No events match." in filtered
    assert keys["pb"] in root.get("/d/audit").text


def test_csrf_is_bound_to_the_identified_user(setup, request: pytest.FixtureRequest):
    if request.node.callspec.params["setup"] == "accounts":
        pytest.skip("identify= mode only")
    kit, client_for, keys = setup
    alice, bob = client_for("alice"), client_for("bob")
    bob_token = csrf_of(bob.get("/d/keys").text)
    alice.get("/d/keys")
    url = f"/d/keys/{keys['pa']}/revoke"
    assert alice.post(url).status_code == 403  # no token
    assert alice.post(url, data={"csrf_token": bob_token}).status_code == 403
    # bob's cookie and token presented as alice: bound to bob, refused
    alice.cookies.set("nowramp_dashboard_csrf", bob_token, path="/d")
    assert alice.post(url, data={"csrf_token": bob_token}).status_code == 403
    assert kit.manager.get(keys["pa"]).revoked_at is None


def test_nobody_signed_in_is_401_and_there_is_no_sign_in_form(
    setup, request: pytest.FixtureRequest
):
    if request.node.callspec.params["setup"] == "accounts":
        pytest.skip("identify= mode only")
    _, client_for, _ = setup
    stranger = client_for("mallory")
    for path in ("/d/keys", "/d/audit", "/d/keys/key_ABCDnotthere0000/rotate"):
        answer = stranger.get(path, follow_redirects=False)
        assert answer.status_code == 401, path
        assert answer.headers["x-frame-options"] == "DENY"
    assert stranger.get("/d/login").status_code == 404


def test_modes_are_exclusive_and_users_are_checked():
    kit = auth_kit()
    with pytest.raises(ValueError, match="not both"):
        create_dashboard(kit.manager, identify=sync_identify, admin_password="x" * 20)
    with pytest.raises(TypeError):
        DashboardUser("", "nobody", None)
    with pytest.raises(TypeError):
        DashboardUser("a", "A", "pa")  # type: ignore[arg-type]
    assert DashboardUser("a", "A", {"pa"}).project_ids == frozenset({"pa"})  # type: ignore[arg-type]


def test_audit_csv_follows_the_filter_and_escapes_formulas(setup):
    import csv
    import io

    kit, client_for, keys = setup
    # An attacker-controlled request path lands in an auth.failed event of alice's key.
    secret = kit.manager.create(scopes=["quotes:read"], project_id="pa")
    kit.manager.update(secret.key.id, allowed_ips=["192.0.2.0/24"])
    with pytest.raises(AuthError):  # refused: outside the allowlist
        kit.authenticator.authenticate(
            secret.secret, client_ip="203.0.113.9", method="GET", path='=HYPERLINK("x")'
        )
    alice = client_for("alice")
    answer = alice.get("/d/audit.csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    assert answer.headers["cache-control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert rows and {r["project_id"] for r in rows} == {"pa"}  # her project only
    failed = [r for r in rows if r["type"] == "auth.failed"]
    assert failed[0]["path"] == '\'=HYPERLINK("x")'  # not a formula
    assert keys["pb"] not in answer.text
    only = list(csv.DictReader(io.StringIO(alice.get("/d/audit.csv?type=key.created").text)))
    assert {r["type"] for r in only} == {"key.created"}
    assert "Download CSV" in alice.get("/d/audit").text


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t'=1"),  # split on tab, the second cell would start a formula
        ("/v1/quotes;=1+1", "/v1/quotes;'=1+1"),  # split on ';'
        ("a,-1", "a,'-1"),
        ("/v1/quotes", "/v1/quotes"),
        (None, ""),
    ],
)
def test_spreadsheet_safe(value, cell):
    from nowramp_auth.dashboard._csv import spreadsheet_safe

    assert spreadsheet_safe(value) == cell


def test_a_keys_page_charts_real_counts(setup):
    from nowramp_auth import RateLimit

    kit, client_for, keys = setup
    limited = kit.manager.create(
        scopes=["quotes:read"], project_id="pa", rate_limit=RateLimit(4, timedelta(hours=1))
    )
    for _ in range(4):
        kit.authenticator.authenticate(limited.secret)
    for required in (["quotes:read"], ["orders:write"]):  # rate limited, then a scope
        with pytest.raises(AuthError):
            kit.authenticator.authenticate(limited.secret, required_scopes=required)
    alice = client_for("alice")
    page = alice.get(f"/d/keys/{limited.key.id}")
    assert page.status_code == 200 and "<svg" in page.text
    accepted = [int(n) for n in re.findall(r'class="accepted"[^>]*data-count="(\d+)"', page.text)]
    refused = dict(
        (code, int(n))
        for code, n in re.findall(
            r'class="refused"[^>]*data-code="([A-Z_]+)" data-count="(\d+)"', page.text
        )
    )
    assert sum(accepted) == 4
    assert refused == {"RATE_LIMITED": 1, "INSUFFICIENT_PERMISSIONS": 1}
    assert re.search(r'id="accepted-total">4<', page.text)
    assert f'href="/d/keys/{limited.key.id}"' in alice.get("/d/keys").text
    # bob cannot see it: 404 like an unknown id
    assert client_for("bob").get(f"/d/keys/{limited.key.id}").status_code == 404
    assert client_for("bob").get("/d/keys/key_ABCDnotthere0000").status_code == 404
    assert keys["pa"] in alice.get(f"/d/keys/{keys['pa']}").text
