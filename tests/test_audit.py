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
