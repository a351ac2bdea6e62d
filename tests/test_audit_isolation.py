"""A partner's audit page and CSV: its events whatever others add, at a bounded cost, and a
CSV with no formula cell whichever separator a spreadsheet splits it on."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount
from starlette.testclient import TestClient

from nowramp_auth import AuditEvent, KeyManager, MemoryAuditLog, MemoryKeyStore, RedisKeyStore
from nowramp_auth.dashboard import DashboardUser, create_dashboard
from nowramp_auth.dashboard._csv import audit_csv_text
from nowramp_auth.stores.redis_audit import RedisStreamAuditLog

ALICE = DashboardUser("alice", "Alice", frozenset({"pa"}))
ROOT = DashboardUser("root", "Operator", None)
FOREIGN = 20_000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def identify(request: Request) -> DashboardUser | None:
    return {"alice": ALICE, "root": ROOT}.get(request.headers.get("x-test-user", ""))


def flood(audit: Any) -> None:
    """Events of another project, and unauthenticated refusals (no project at all)."""
    now = datetime.now(UTC)
    for i in range(FOREIGN):
        if i % 2:
            audit.emit(AuditEvent("auth.failed", now, code="INVALID_API_KEY", path=f"/x/{i}"))
        else:
            audit.emit(AuditEvent("key.updated", now, key_id=f"key_b{i}", project_id="pb"))
        if not isinstance(audit, MemoryAuditLog) and i % 5000 == 4999:
            audit.flush()


def dashboard(manager: KeyManager, audit: object) -> Iterator[TestClient]:
    app = Starlette(routes=[Mount("/d", create_dashboard(manager, audit=audit, identify=identify))])  # type: ignore[arg-type]
    yield TestClient(app, headers={"X-Test-User": "alice"})


@pytest.fixture(params=["memory", "redis", "postgres"])
def setup(request: pytest.FixtureRequest, namespace: str):
    if request.param == "memory":
        audit: Any = MemoryAuditLog()
        manager = KeyManager(MemoryKeyStore(), audit=audit)
        yield manager, audit, None
        return
    if request.param == "postgres":
        from nowramp_auth import PostgresAuditLog, PostgresKeyStore

        url = request.getfixturevalue("postgres_url")
        pg = PostgresKeyStore.from_url(url, schema=namespace, upgrade=True)
        audit = PostgresAuditLog(pg, queue_size=FOREIGN + 100)
        try:
            yield KeyManager(pg, audit=audit), audit, None
        finally:
            audit.close()
            pg.close()
        return
    url = request.getfixturevalue("redis_url")
    store = RedisKeyStore.from_url(url, namespace=namespace)
    audit = RedisStreamAuditLog(store, queue_size=FOREIGN + 100)
    manager = KeyManager(store, audit=audit)
    try:
        yield manager, audit, redis.Redis.from_url(url)
    finally:
        audit.close()
        store.close()


def xrevrange_calls(client: redis.Redis | None) -> int:
    if client is None:
        return 0
    stats = client.info("commandstats").get("cmdstat_xrevrange", {})
    return int(stats.get("calls", 0))


@pytest.mark.redis
def test_a_partners_events_survive_a_flood_of_foreign_events(setup):
    manager, audit, raw = setup
    mine = manager.acting_as("alice").create(scopes=["quotes:read"], project_id="pa", name="a")
    manager.acting_as("alice").revoke(mine.key.id)
    flood(audit)
    if not isinstance(audit, MemoryAuditLog):
        audit.flush()
    client = next(dashboard(manager, audit))
    before = xrevrange_calls(raw)
    page = client.get("/d/audit")
    assert page.status_code == 200
    assert page.text.count(mine.key.id) >= 2  # created and revoked, both shown
    rows = list(csv.DictReader(io.StringIO(client.get("/d/audit.csv").text)))
    assert [(r["type"], r["key_id"]) for r in rows] == [
        ("key.revoked", mine.key.id),
        ("key.created", mine.key.id),
    ]
    # Bounded cost: the partner's reads touched only its own project's stream, a page each.
    if raw is not None:
        assert xrevrange_calls(raw) - before == 2
        before = xrevrange_calls(raw)
        unknown = client.get("/d/audit?key=key_ABCDnotthere0000")
        assert unknown.status_code == 200 and mine.key.id not in unknown.text
        assert xrevrange_calls(raw) == before  # an unknown key costs no scan at all
        # The operator filtering by alice's key reads her project's stream, not the flood.
        root = TestClient(client.app, headers={"X-Test-User": "root"})
        assert mine.key.id in root.get(f"/d/audit?key={mine.key.id}").text
        assert xrevrange_calls(raw) - before == 1


@pytest.mark.redis
def test_a_partners_filter_by_type_and_key_sees_only_its_own(setup):
    manager, audit, _ = setup
    mine = manager.create(scopes=["quotes:read"], project_id="pa")
    theirs = manager.create(scopes=["quotes:read"], project_id="pb")
    if not isinstance(audit, MemoryAuditLog):
        audit.flush()
    client = next(dashboard(manager, audit))
    assert mine.key.id in client.get(f"/d/audit?key={mine.key.id}&type=key.created").text
    foreign = client.get(f"/d/audit.csv?key={theirs.key.id}")
    assert foreign.status_code == 200 and list(csv.DictReader(io.StringIO(foreign.text))) == []
    own = list(csv.DictReader(io.StringIO(client.get(f"/d/audit.csv?key={mine.key.id}").text)))
    assert [r["key_id"] for r in own] == [mine.key.id]


def _trimmed(cell: str) -> str:
    # What a spreadsheet may trim before reading a cell: quotes and white space (a tab or a
    # carriage return is kept: either starts a formula by itself).
    while cell and (cell[0] == '"' or (cell[0].isspace() and cell[0] not in "\t\r")):
        cell = cell[1:]
    return cell


def _cells(text: str, separator: str) -> Iterator[str]:
    # A spreadsheet splitting on `separator`: once honouring quotes, once naively.
    for row in csv.reader(io.StringIO(text, newline=""), delimiter=separator):
        yield from row
    for line in text.splitlines():
        yield from line.split(separator)


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("=+-@\t\r\n;,\"' ab/%|1(")) | st.characters(),
        max_size=40,
    )
)
def test_no_csv_cell_starts_a_formula_under_any_separator(path: str):
    event = AuditEvent(
        "auth.failed",
        datetime.now(UTC),
        code="INVALID_API_KEY",
        path=path,
        method=path[:8] or "GET",
        client_ip="203.0.113.1",
    )
    text = audit_csv_text([event])
    for separator in (",", ";", "\t"):
        for cell in _cells(text, separator):
            shown = _trimmed(cell)
            assert not shown.startswith(FORMULA_STARTS), (separator, cell, text)


def test_the_reported_semicolon_path_is_harmless():
    path = '/v1/quotes;=1+1;=HYPERLINK("http://evil.example","x")'
    event = AuditEvent("auth.failed", datetime.now(UTC), code="INVALID_API_KEY", path=path)
    text = audit_csv_text([event])
    for cell in _cells(text, ";"):
        assert not _trimmed(cell).startswith("=")
