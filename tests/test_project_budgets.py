"""Budgets shared by every key of a project (``KeyManager.set_project_limits``): the keys of
one project together never get more than the budget, across processes and instances; a
request refused by its key's own limit spends nothing of the project's budget; rotated
successors and widget sessions share it; clearing the budgets frees the keys."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta

import pytest

from nowramp_auth import (
    Authenticator,
    AuthError,
    KeyManager,
    MemoryAuditLog,
    MemoryKeyStore,
    RateLimit,
)
from nowramp_auth.stores import KeyStore
from tests.conftest import make_store
from tests.outcomes import burst, outcome
from tests.servers import ROOT

HOUR = timedelta(hours=1)
STORES = ["memory", "redis", "cluster", "postgres"]


@pytest.mark.parametrize("kind", STORES)
def test_two_keys_share_their_projects_budget(
    kind: str, request: pytest.FixtureRequest, namespace: str
):
    store: KeyStore = make_store(kind, request, namespace)
    audit = MemoryAuditLog()
    manager, auth = KeyManager(store, audit=audit), Authenticator(store)
    first = manager.create(scopes=["quotes:read"], project_id="p1")
    assert manager.set_project_limits("p1", [RateLimit(5, HOUR, name="plan")]) == (
        RateLimit(5, HOUR, name="plan"),
    )
    second = manager.create(scopes=["quotes:read"], project_id="p1")  # created after: too
    other = manager.create(scopes=["quotes:read"], project_id="p2")  # another project: free
    assert manager.get(first.key.id).project_limits == (RateLimit(5, HOUR, name="plan"),)
    assert second.key.project_limits == (RateLimit(5, HOUR, name="plan"),)
    results = [outcome(auth, key.secret) for key in (first, second) * 4]
    assert results == ["ok"] * 5 + ["RATE_LIMITED"] * 3
    status = Authenticator(store).authenticate(other.secret).rate_limit
    assert status is None  # no budget, no limit: no headers
    event = [e for e in audit.events if e.type == "project.limits_changed"][-1]
    assert event.project_id == "p1" and event.detail == "limits=5/3600s (plan)"
    # Cleared: the keys are free again (every instance sees the key updates).
    manager.set_project_limits("p1", [])
    assert manager.get_project_limits("p1") == ()
    assert outcome(Authenticator(store), first.secret) == "ok"


@pytest.mark.parametrize("kind", STORES)
def test_a_refusal_by_the_keys_own_limit_spends_nothing_of_the_project(
    kind: str, request: pytest.FixtureRequest, namespace: str
):
    store: KeyStore = make_store(kind, request, namespace)
    manager, auth = KeyManager(store), Authenticator(store)
    manager.set_project_limits("p1", [RateLimit(4, HOUR)])
    small = manager.create(scopes=["quotes:read"], project_id="p1", rate_limit=RateLimit(1, HOUR))
    big = manager.create(scopes=["quotes:read"], project_id="p1")
    assert [outcome(auth, small.secret) for _ in range(5)] == ["ok"] + ["RATE_LIMITED"] * 4
    # The four refusals of the small key spent nothing: the project has 3 left for the other.
    assert [outcome(auth, big.secret) for _ in range(4)] == ["ok"] * 3 + ["RATE_LIMITED"]
    status = auth.authenticate  # headers: the budget closest to refusing
    fresh = manager.create(scopes=["quotes:read"], project_id="p3", rate_limit=RateLimit(9, HOUR))
    manager.set_project_limits("p3", [RateLimit(2, HOUR)])
    limit = status(fresh.secret).rate_limit
    assert limit is not None and (limit.limit, limit.remaining) == (2, 1)


@pytest.mark.parametrize("kind", STORES)
def test_successors_and_sessions_share_the_budget(
    kind: str, request: pytest.FixtureRequest, namespace: str
):
    store: KeyStore = make_store(kind, request, namespace)
    manager, auth = KeyManager(store), Authenticator(store)
    manager.set_project_limits("p1", [RateLimit(5, HOUR)])
    key = manager.create(scopes=["quotes:read"], project_id="p1")
    successor = manager.rotate(key.key.id)
    session = auth.create_session(key.secret, project_id="p1")  # a request of the key: 1
    auth.authenticate(key.secret)
    auth.authenticate(successor.secret)
    auth.authenticate_session(session.token)
    auth.authenticate_session(session.token)
    with pytest.raises(AuthError):
        auth.authenticate(successor.secret)


@pytest.mark.parametrize("kind", STORES)
def test_a_burst_of_500_across_the_projects_keys(
    kind: str, request: pytest.FixtureRequest, namespace: str
):
    store: KeyStore = make_store(kind, request, namespace)
    manager, auth = KeyManager(store), Authenticator(store)
    manager.set_project_limits("p1", [RateLimit(30, HOUR), RateLimit(50, 2 * HOUR)])
    keys = [manager.create(scopes=["quotes:read"], project_id="p1") for _ in range(5)]
    keys[0] = manager.create(scopes=["quotes:read"], project_id="p1", rate_limit=RateLimit(3, HOUR))

    results = burst(auth, [keys[i % 5].secret for i in range(500)])
    assert results.count("ok") == 30 and results.count("RATE_LIMITED") == 470


WORKER = """
import sys
from nowramp_auth import Authenticator, AuthError, PostgresKeyStore, RedisKeyStore
kind, url, namespace, *secrets = sys.argv[1:]
if kind == "postgres":
    store = PostgresKeyStore.from_url(url, schema=namespace)
else:
    store = RedisKeyStore.from_url(url, cluster=kind == "cluster", namespace=namespace)
auth = Authenticator(store)
ok = 0
for i in range(12):
    try:
        auth.authenticate(secrets[i % len(secrets)])
        ok += 1
    except AuthError as error:
        assert error.code.value == "RATE_LIMITED", error.code
store.close()
print(ok)
"""


@pytest.mark.parametrize("kind", ["redis", "cluster", "postgres"])
def test_exactly_the_budget_across_three_processes(kind: str, request: pytest.FixtureRequest):
    namespace = "t" + uuid.uuid4().hex[:12]
    store = make_store(kind, request, namespace)
    url = request.getfixturevalue(
        {"redis": "redis_url", "cluster": "cluster_url", "postgres": "postgres_url"}[kind]
    )
    manager = KeyManager(store)
    manager.set_project_limits("p1", [RateLimit(5, HOUR)])
    secrets = [manager.create(scopes=["quotes:read"], project_id="p1").secret for _ in range(2)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, kind, url, namespace, *secrets],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    totals = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        totals.append(int(out.strip()))
    assert sum(totals) == 5, totals  # 36 attempts with two keys, exactly the budget accepted


def test_project_limits_are_validated():
    manager = KeyManager(MemoryKeyStore())
    with pytest.raises(ValueError, match="project_id"):
        manager.set_project_limits("", [RateLimit(1, HOUR)])
    with pytest.raises(TypeError, match="RateLimit"):
        manager.set_project_limits("p1", ["10/1h"])  # type: ignore[list-item]
    assert manager.set_project_limits("p1", RateLimit(1, HOUR)) == (RateLimit(1, HOUR),)
    assert manager.get_project_limits("p1") == (RateLimit(1, HOUR),)
    assert manager.get_project_limits("nope") == ()


@pytest.mark.redis
def test_the_cli_sets_shows_and_clears_a_projects_budgets(redis_url: str, namespace: str):
    import json

    from nowramp_auth import RedisKeyStore

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "nowramp_auth", "--redis-url", redis_url]
        command += ["--namespace", namespace, "projects", "limits", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    set_ = cli("p1", "10000/1d", "burst=20/1m", "--json")
    assert set_.returncode == 0, set_.stderr
    assert json.loads(set_.stdout)["limits"] == [
        {"requests": 10000, "window_seconds": 86400.0, "name": None, "used": 0},
        {"requests": 20, "window_seconds": 60.0, "name": "burst", "used": 0},
    ]
    store = RedisKeyStore.from_url(redis_url, namespace=namespace)
    try:
        key = KeyManager(store).create(scopes=["quotes:read"], project_id="p1")
        for _ in range(3):
            Authenticator(store).authenticate(key.secret)
    finally:
        store.close()
    assert cli("p1").stdout.splitlines() == [
        "Project p1 budgets: 10000/86400s, 20/60s (burst)",
        "  10000/86400s: 3 used in the window, 9997 left",
        "  20/60s (burst): 3 used in the window, 17 left",
    ]
    assert cli("p1", "--clear").stdout.strip() == "Project p1 budgets: none"
    refused = cli("p1", "lots")
    assert refused.returncode == 2 and refused.stderr.startswith("nowramp-auth: error:")
