"""Partners see their plans in the dashboard: on a key's page each budget its requests count
against (its own limits, its project's shared budget) with what is used of it now, and its
credits; on Projects, each of their projects' shared budgets and keys. Over every store, with
real requests counted by the authenticator; looking counts nothing, and a partner never sees
another partner's project."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount
from starlette.testclient import TestClient

from nowramp_auth import (
    Authenticator,
    Credits,
    KeyManager,
    RateLimit,
    Refill,
    key_budget_usage,
    project_budget_usage,
)
from nowramp_auth.dashboard import DashboardUser, create_dashboard
from tests.conftest import make_store
from tests.outcomes import outcomes

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
USERS = {
    "alice": DashboardUser("alice", "Alice", frozenset({"pa"})),
    "bob": DashboardUser("bob", "Bob", frozenset({"pb"})),
    "root": DashboardUser("root", "Operator", None),
}


def identify(request: Request) -> DashboardUser | None:
    return USERS.get(request.headers.get("x-test-user", ""))


def budget_rows(page: str) -> list[tuple[str, str, str, str, str]]:
    """(budget, name, limit, used, left) of every budget row of a page."""
    rows = re.findall(r'<tr class="budget".*?</tr>', page, re.S)
    found = []
    for row in rows:
        cells = [
            html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
            for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        used = re.search(r'class="used">([^<]+)<', row)
        assert used is not None
        found.append((cells[0], cells[1], cells[2], used.group(1), cells[4]))
    return found


@pytest.mark.parametrize("kind", ["memory", "redis", "cluster", "postgres"])
def test_a_partner_sees_each_budget_its_credits_and_its_projects_summary(
    kind: str, request: pytest.FixtureRequest, namespace: str
):
    store = make_store(kind, request, namespace)
    manager = KeyManager(store)
    manager.set_project_limits("pa", [RateLimit(10, DAY, name="daily plan")])
    busy = manager.create(
        scopes=["quotes:read"],
        project_id="pa",
        name="backend",
        rate_limit=[RateLimit(5, HOUR, name="burst"), RateLimit(8, DAY)],
        credits=Credits(20, Refill(20, timedelta(days=30))),
    )
    quiet = manager.create(scopes=["quotes:read"], project_id="pa", name="reports")
    other = manager.create(scopes=["quotes:read"], project_id="pb", rate_limit=RateLimit(3, HOUR))
    auth = Authenticator(store)
    # 5 accepted, 2 refused by the burst limit (they spend nothing)
    assert outcomes(auth, busy.secret, 7) == ["ok"] * 5 + ["RATE_LIMITED"] * 2
    for _ in range(2):
        auth.authenticate(quiet.secret)
    auth.authenticate(other.secret)

    app = Starlette(routes=[Mount("/d", create_dashboard(manager, identify=identify))])
    alice = TestClient(app, headers={"X-Test-User": "alice"})
    for _ in range(2):  # looking twice counts nothing
        page = alice.get(f"/d/keys/{busy.key.id}")
        assert page.status_code == 200
        assert budget_rows(page.text) == [
            ("this key", "burst", "5 per 1h", "5", "0"),
            ("this key", "—", "8 per 1d", "5", "3"),
            ("project (shared)", "daily plan", "10 per 1d", "7", "3"),
        ]
        assert re.search(r'class="credits-left">15<', page.text)
        assert "topped up to 20 every 30d" in page.text

    summary = alice.get("/d/projects")
    assert summary.status_code == 200
    assert 'data-project="pa"' in summary.text and 'data-project="pb"' not in summary.text
    assert budget_rows(summary.text) == [("project (shared)", "daily plan", "10 per 1d", "7", "3")]
    assert busy.key.id in summary.text and quiet.key.id in summary.text
    assert other.key.id not in summary.text
    # Another partner's project, or its key, is answered like an unknown one.
    assert alice.get("/d/projects?project=pb").status_code == 404
    assert alice.get(f"/d/keys/{other.key.id}").status_code == 404
    # The operator sees every project; bob sees his key's own limit.
    root = TestClient(app, headers={"X-Test-User": "root"}).get("/d/projects").text
    assert 'data-project="pa"' in root and 'data-project="pb"' in root
    bob = TestClient(app, headers={"X-Test-User": "bob"}).get(f"/d/keys/{other.key.id}").text
    assert budget_rows(bob) == [("this key", "—", "3 per 1h", "1", "2")]
    # Nothing above was counted: the project has exactly 3 left, the key's day limit too.
    assert outcomes(auth, quiet.secret, 4) == ["ok", "ok", "ok", "RATE_LIMITED"]


@pytest.mark.parametrize("kind", ["memory", "redis", "postgres"])
def test_usage_follows_the_sliding_window(
    kind: str, request: pytest.FixtureRequest, namespace: str
):
    store = make_store(kind, request, namespace)
    manager = KeyManager(store)
    manager.set_project_limits("pa", [RateLimit(4, timedelta(seconds=1))])
    key = manager.create(scopes=["quotes:read"], project_id="pa", rate_limit=RateLimit(3, HOUR))
    auth = Authenticator(store)
    auth.authenticate(key.secret)
    record = manager.get(key.key.id)
    usage = key_budget_usage(store, record)
    assert usage is not None and [(u.kind, u.used, u.remaining) for u in usage] == [
        ("key", 1, 2),
        ("project", 1, 3),
    ]
    # A second later the project's one-second window has let its request go.
    import time

    time.sleep(1.1)
    later = project_budget_usage(store, "pa", manager.get_project_limits("pa"))
    assert later is not None and [(u.used, u.remaining, u.percent) for u in later] == [(0, 4, 0)]
    assert project_budget_usage(store, "nobudget", ()) == []


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_an_operator_sets_budgets_and_adds_credits_a_partner_cannot():
    from nowramp_auth import MemoryAuditLog, MemoryKeyStore

    store, audit = MemoryKeyStore(), MemoryAuditLog()
    manager = KeyManager(store, audit=audit)
    key = manager.create(scopes=["quotes:read"], project_id="pa", credits=Credits(2))
    app = Starlette(routes=[Mount("/d", create_dashboard(manager, identify=identify))])
    root = TestClient(app, headers={"X-Test-User": "root"}, follow_redirects=False)
    token = csrf_of(root.get("/d/projects").text)

    limits = "daily plan=10000/1d\n20/1s\n"
    done = root.post(
        "/d/projects/limits", data={"csrf_token": token, "project_id": "pa", "limits": limits}
    )
    assert done.status_code == 303 and done.headers["location"] == "/d/projects?project=pa"
    assert manager.get_project_limits("pa") == (
        RateLimit(10000, DAY, name="daily plan"),
        RateLimit(20, timedelta(seconds=1)),
    )
    page = root.get("/d/projects?project=pa").text
    assert ">daily plan=10000/1d\n20/1s</textarea>" in page  # the form reads back exactly
    refused = root.post(
        "/d/projects/limits", data={"csrf_token": token, "project_id": "pa", "limits": "lots"}
    )
    assert refused.status_code == 400 and "invalid rate limit" in refused.text
    assert len(manager.get_project_limits("pa")) == 2  # unchanged

    added = root.post(f"/d/keys/{key.key.id}/credits", data={"csrf_token": token, "count": "5"})
    assert added.status_code == 303
    assert manager.get(key.key.id).credits_remaining == 7
    for bad in ("0", "-1", "x", ""):
        answer = root.post(
            f"/d/keys/{key.key.id}/credits", data={"csrf_token": token, "count": bad}
        )
        assert answer.status_code == 400
    # Without the CSRF token nothing changes.
    assert root.post(f"/d/keys/{key.key.id}/credits", data={"count": "5"}).status_code == 403
    assert manager.get(key.key.id).credits_remaining == 7
    events = [
        (e.type, e.actor)
        for e in audit.events
        if e.type in ("project.limits_changed", "key.credits_added")
    ]
    assert events == [("project.limits_changed", "root"), ("key.credits_added", "root")]

    # A partner sees its plan but may not raise it: no form, and a forged POST is refused.
    alice = TestClient(app, headers={"X-Test-User": "alice"}, follow_redirects=False)
    mine = alice.get(f"/d/keys/{key.key.id}").text
    assert "Add credits" not in mine and "Set budgets" not in alice.get("/d/projects").text
    alice_token = csrf_of(alice.get("/d/keys").text)
    forged = alice.post(
        f"/d/keys/{key.key.id}/credits", data={"csrf_token": alice_token, "count": "9"}
    )
    assert forged.status_code == 403
    forged = alice.post(
        "/d/projects/limits", data={"csrf_token": alice_token, "project_id": "pa", "limits": "1/1s"}
    )
    assert forged.status_code == 403
    bob = TestClient(app, headers={"X-Test-User": "bob"}, follow_redirects=False)
    bob_token = csrf_of(bob.get("/d/keys").text)
    assert (
        bob.post(
            f"/d/keys/{key.key.id}/credits", data={"csrf_token": bob_token, "count": "9"}
        ).status_code
        == 404
    )
    assert manager.get(key.key.id).credits_remaining == 7
    assert len(manager.get_project_limits("pa")) == 2
