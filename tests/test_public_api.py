"""The public API exactly as its contract writes it (names, signatures, behaviour)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

pytestmark = pytest.mark.smoke  # also run against the installed wheel


def test_contract_names_import_from_the_package():
    import nowramp_auth
    from nowramp_auth import (  # noqa: F401
        AuditEvent,
        Authenticator,
        AuthError,
        ErrorCode,
        IssuedKey,
        IssuedSession,
        KeyManager,
        KeyRecord,
        MemoryAuditLog,
        MemoryKeyStore,
        Principal,
        RateLimit,
        RedisKeyStore,
        RedisRateLimiter,
        current_principal,
    )
    from nowramp_auth.dashboard import DashboardUser, create_dashboard  # noqa: F401
    from nowramp_auth.leaks import secret_scanning_app  # noqa: F401
    from nowramp_auth.metrics import OpenTelemetryMetrics, PrometheusMetrics  # noqa: F401
    from nowramp_auth.starlette import ApiKeyMiddleware, require_scopes  # noqa: F401
    from nowramp_auth.wsgi import ApiKeyMiddleware as WsgiMiddleware  # noqa: F401
    from nowramp_auth.wsgi import require_scopes as wsgi_require_scopes  # noqa: F401

    assert set(nowramp_auth.__all__) >= {
        "KeyManager",
        "Authenticator",
        "MemoryKeyStore",
        "RedisKeyStore",
        "RedisRateLimiter",
        "AuthError",
        "ErrorCode",
        "Principal",
        "KeyRecord",
        "IssuedKey",
        "IssuedSession",
        "AuditEvent",
        "MemoryAuditLog",
        "RateLimit",
        "current_principal",
    }


@pytest.mark.redis
def test_the_contract_snippet(redis_url: str):
    from nowramp_auth import (
        Authenticator,
        AuthError,
        ErrorCode,
        KeyManager,
        MemoryKeyStore,
        RateLimit,
        RedisKeyStore,
    )

    assert MemoryKeyStore(pepper=b"pepper") is not None
    store = RedisKeyStore.from_url(
        redis_url,
        pepper="pepper",
        namespace="contract",
        cache_size=100,
        cache_ttl=5,
        socket_timeout=0.5,
        connect_timeout=0.25,
    )
    try:
        manager = KeyManager(store)
        issued = manager.create(
            scopes=["quotes:read"],
            key_type="test",
            name="ci",
            project_id="proj_1",
            allowed_ips=["203.0.113.0/24"],
            expires_at=None,
            metadata={"account": "acct_1"},
            rate_limit=RateLimit(100, timedelta(seconds=60)),
        )
        assert issued.secret.startswith("ramp_test_")
        key = issued.key
        assert isinstance(key.scopes, frozenset)
        for field in (
            "id",
            "key_type",
            "scopes",
            "name",
            "project_id",
            "allowed_ips",
            "created_at",
            "expires_at",
            "revoked_at",
            "hint",
            "metadata",
            "rate_limit",
            "rotated_from",
            "rotated_to",
            "last_used_at",
            "request_count",
        ):
            assert hasattr(key, field), field
        new = manager.rotate(issued.key.id)
        new2 = manager.rotate(new.key.id, grace=timedelta(hours=24))
        manager.revoke(new2.key.id)
        assert manager.get(issued.key.id).rotated_to == new.key.id
        assert {r.id for r in manager.list(project_id=None)} >= {key.id, new.key.id}
        manager.update(  # new2: a rotated key's grace end may not be lifted (expires_at=None)
            new2.key.id,
            scopes=["quotes:read", "orders:read"],
            allowed_ips=["203.0.113.0/24"],
            name="n",
            metadata={},
            rate_limit=None,
            expires_at=None,
        )

        auth = Authenticator(
            store,
            clock=None,
            audit=None,
            trusted_proxies=[],
            widget_scopes=None,
            session_ttl=timedelta(minutes=30),
        )
        p = auth.authenticate(new.secret, client_ip="203.0.113.7", required_scopes=["quotes:read"])
        assert (p.key_id, p.key_type, p.project_id, p.kind) == (
            new.key.id,
            "test",
            "proj_1",
            "api_key",
        )
        assert asyncio.run(auth.authenticate_async(new.secret, client_ip="203.0.113.7")) == p
        s = auth.create_session(
            new.secret, project_id="proj_1", client_ip="203.0.113.7", customer_id=None, scopes=None
        )
        assert s.token and s.expires_at and s.project_id == "proj_1" and s.scopes
        ps = auth.authenticate_session(s.token, required_scopes=["quotes:read"])
        assert ps.kind == "session" and ps.key_id == new.key.id
        assert asyncio.run(auth.authenticate_session_async(s.token)).kind == "session"
        auth.revoke_session(s.token)
        with pytest.raises(AuthError) as info:
            auth.authenticate_session(s.token)
        error = info.value
        assert error.code is ErrorCode.INVALID_SESSION_TOKEN and isinstance(error.code, str)
        assert error.status_code == 401
        assert error.to_dict()["error"]["code"] == "INVALID_SESSION_TOKEN"
    finally:
        store.close()


def test_audit_event_fields():
    from nowramp_auth import AuditEvent

    fields = set(AuditEvent.__dataclass_fields__)
    assert {"type", "at", "key_id", "code", "client_ip", "method", "path"} <= fields


def test_metrics_as_the_contract_writes_them():
    # Authenticator(store, metrics=PrometheusMetrics(registry=None)): the default registry.
    from prometheus_client import REGISTRY

    from nowramp_auth import Authenticator, KeyManager, MemoryKeyStore
    from nowramp_auth.metrics import OpenTelemetryMetrics, PrometheusMetrics

    store = MemoryKeyStore()
    metrics = PrometheusMetrics(registry=None)
    try:
        auth = Authenticator(store, metrics=metrics)
        auth.authenticate(KeyManager(store).create(scopes=["quotes:read"]).secret)
        labels = {"result": "ok", "key_type": "test"}
        assert REGISTRY.get_sample_value("nowramp_auth_requests_total", labels) == 1
    finally:
        REGISTRY.unregister(metrics)
    assert Authenticator(store, metrics=OpenTelemetryMetrics(meter_provider=None))
