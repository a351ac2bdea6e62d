"""Audit sinks: memory, logging (JSON lines), Redis stream; slow and failing sinks."""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta

import pytest

from nowramp_auth import AuditEvent, AuthError, LoggingAuditLog, MemoryAuditLog
from nowramp_auth._audit import AuditEmitter
from nowramp_auth.testing import auth_kit
from tests.dashboard_login import login

FIELDS = {
    "type",
    "at",
    "key_id",
    "code",
    "client_ip",
    "method",
    "path",
    "project_id",
    "session_id",
    "detail",
    "actor",
}


def test_memory_log_is_capped_oldest_first(clock):
    log = MemoryAuditLog(maxlen=3)
    for index in range(5):
        log.emit(AuditEvent("auth.failed", clock.now + timedelta(seconds=index), code=str(index)))
    assert [e.code for e in log.events] == ["2", "3", "4"]
    assert [e.code for e in log.query(limit=2)] == ["4", "3"]
    with pytest.raises(ValueError):
        MemoryAuditLog(maxlen=0)


def test_logging_sink_writes_one_json_object_per_line(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="nowramp_auth.audit")
    kit = auth_kit(audit=LoggingAuditLog())
    issued = kit.key("quotes:read")
    with pytest.raises(AuthError):
        kit.authenticator.authenticate(
            issued.secret,
            client_ip="203.0.113.7",
            required_scopes=["orders:read"],
            method="GET",
            path="/o",
        )
    assert kit.authenticator.audit.flush()
    lines = [r.getMessage() for r in caplog.records if r.name == "nowramp_auth.audit"]
    events = [json.loads(line) for line in lines]
    assert all("\n" not in line for line in lines)
    assert set(events[0]) == FIELDS
    assert events[0]["type"] == "auth.failed" and events[0]["code"] == "INSUFFICIENT_PERMISSIONS"
    assert events[0]["client_ip"] == "203.0.113.7" and events[0]["path"] == "/o"


def test_slow_sink_never_blocks_a_request():
    release = threading.Event()
    received: list[AuditEvent] = []

    class Slow:
        def emit(self, event: AuditEvent) -> None:
            release.wait(10)
            received.append(event)

    kit = auth_kit(audit=Slow())
    for _ in range(5):
        with pytest.raises(AuthError):
            kit.authenticator.authenticate("ramp_test_nope")
    # All five requests were answered while the sink was still stuck on the first event.
    assert received == []
    release.set()
    assert kit.authenticator.audit.flush()
    assert len(received) == 5


def test_overflowing_queue_drops_and_counts():
    release = threading.Event()

    class Stuck:
        def emit(self, event: AuditEvent) -> None:
            release.wait(10)

    emitter = AuditEmitter([Stuck()], queue_size=2)
    event = AuditEvent("auth.failed", auth_kit().clock.now)
    for _ in range(10):
        emitter.emit(event)
    assert emitter.dropped >= 7
    release.set()
    assert emitter.flush()


def test_sink_without_emit_is_a_type_error():
    with pytest.raises(TypeError):
        AuditEmitter([object()])  # type: ignore[list-item]


@pytest.mark.redis
def test_redis_stream_gets_the_full_lifecycle(redis_url: str, namespace: str):
    from nowramp_auth import Authenticator, KeyManager, RedisKeyStore
    from nowramp_auth.stores.redis_audit import RedisStreamAuditLog

    store = RedisKeyStore.from_url(redis_url, namespace=namespace)
    audit = RedisStreamAuditLog(store, maxlen=1000, flush_interval=0.05)
    try:
        manager = KeyManager(store, audit=audit)
        auth = Authenticator(store, audit=audit)
        issued = manager.create(scopes=["quotes:read"], project_id="p1")
        manager.update(issued.key.id, name="renamed")
        session = auth.create_session(issued.secret, project_id="p1")
        auth.revoke_session(session.token)
        with pytest.raises(AuthError):
            auth.authenticate(issued.secret, required_scopes=["kyc:write"])
        rotated = manager.rotate(issued.key.id)
        manager.revoke(rotated.key.id)
        audit.flush()
        events = audit.read(limit=100)
        assert [e.type for e in reversed(events)] == [
            "key.created",
            "key.updated",
            "session.created",
            "session.revoked",
            "auth.failed",
            "key.rotated",
            "key.revoked",
        ]
        assert [e.type for e in audit.read(key_id=rotated.key.id)] == ["key.revoked"]
        assert [e.type for e in audit.read(type="auth.failed")] == ["auth.failed"]
        assert audit.dropped == 0
    finally:
        audit.close()
        store.close()


def test_events_name_their_actor(clock):
    from nowramp_auth import KeyManager, MemoryKeyStore

    log = MemoryAuditLog()
    manager = KeyManager(MemoryKeyStore(), clock=clock, audit=log)
    issued = manager.create(scopes=["quotes:read"])  # no actor given: None
    alice = manager.acting_as("alice")
    assert alice.store is manager.store and manager.actor is None
    alice.update(issued.key.id, name="renamed")
    KeyManager(manager.store, clock=clock, audit=log, actor="deploy-bot").revoke(issued.key.id)
    assert [(e.type, e.actor) for e in log.events] == [
        ("key.created", None),
        ("key.updated", "alice"),
        ("key.revoked", "deploy-bot"),
    ]
    event = log.events[1]
    assert AuditEvent.from_dict(json.loads(json.dumps(event.to_dict()))) == event
    assert AuditEvent.from_dict({"type": "key.created", "at": event.at.isoformat()}).actor is None
    with pytest.raises(TypeError):
        manager.acting_as("")


def test_dashboard_changes_name_the_operator():
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    from nowramp_auth.dashboard import create_dashboard

    kit = auth_kit()
    password = "correct horse battery staple"
    app = Starlette(
        routes=[
            Mount("/d", create_dashboard(kit.manager, admin_password=password, audit=kit.audit))
        ]
    )
    client = TestClient(app)
    login(client, "/d/login", {"password": password})
    page = client.get("/d/keys").text
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    created = client.post(
        "/d/keys", data={"csrf_token": token, "name": "n", "scopes": ["quotes:read"]}
    )
    assert created.status_code == 200
    assert [(e.type, e.actor) for e in kit.audit.events] == [("key.created", "admin")]
    assert "admin" in client.get("/d/audit").text
