"""KeyManager: validation of every input, update, list, scopes registry."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from nowramp_auth import KNOWN_SCOPES, KeyManager, MemoryKeyStore, RateLimit, ScopeRegistry
from nowramp_auth.testing import AuthKit, auth_kit


@pytest.fixture
def kit() -> AuthKit:
    return auth_kit()


def test_twelve_known_scopes():
    assert {
        f"{r}:{a}"
        for r in ("quotes", "orders", "customers", "wallets", "kyc", "webhooks")
        for a in ("read", "write")
    } == KNOWN_SCOPES


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param({"scopes": ["quotes:reed"]}, ValueError, "quotes:reed", id="unknown-scope"),
        pytest.param({"scopes": "quotes:read"}, TypeError, "list", id="scopes-as-string"),
        pytest.param({"scopes": ["Quotes"]}, ValueError, "malformed", id="malformed-scope"),
        pytest.param({"key_type": "prod"}, ValueError, "key_type", id="bad-type"),
        pytest.param({"allowed_ips": ["10.0.0.0/33"]}, ValueError, "10.0.0.0/33", id="bad-cidr"),
        pytest.param(
            {"expires_at": datetime(2030, 1, 1)}, ValueError, "timezone", id="naive-expiry"
        ),
        pytest.param({"metadata": {"x": object()}}, ValueError, "JSON", id="metadata-not-json"),
        pytest.param({"metadata": {"x": "y" * 5000}}, ValueError, "4096", id="metadata-too-big"),
        pytest.param({"metadata": ["a"]}, TypeError, "JSON object", id="metadata-not-dict"),
        pytest.param({"project_id": ""}, ValueError, "project_id", id="empty-project"),
        pytest.param({"name": "a\nb"}, ValueError, "name", id="name-control-chars"),
        pytest.param({"rate_limit": 100}, TypeError, "RateLimit", id="rate-limit-type"),
    ],
)
def test_create_validation(kit: AuthKit, kwargs, error, match):
    options = {"scopes": ["quotes:read"], **kwargs}
    with pytest.raises(error, match=match):
        kit.manager.create(**options)
    assert kit.manager.list() == []


def test_expiry_in_the_past_is_refused(kit: AuthKit):
    with pytest.raises(ValueError, match="future"):
        kit.manager.create(scopes=["quotes:read"], expires_at=kit.clock.now)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        pytest.param((0, timedelta(seconds=1)), ValueError, id="zero-requests"),
        pytest.param((True, timedelta(seconds=1)), TypeError, id="bool-requests"),
        pytest.param((10, 60), TypeError, id="window-not-timedelta"),
        pytest.param((10, timedelta(0)), ValueError, id="zero-window"),
    ],
)
def test_rate_limit_validation(args, error):
    with pytest.raises(error):
        RateLimit(*args)


def test_custom_scopes():
    registry = ScopeRegistry()
    registry.register("reports:read")
    manager = KeyManager(MemoryKeyStore(), scopes=registry)
    issued = manager.create(scopes=["reports:read", "quotes:read"])
    assert issued.key.scopes == {"reports:read", "quotes:read"}
    only = KeyManager(MemoryKeyStore(), scopes=["reports:read"])
    with pytest.raises(ValueError, match="quotes:read"):
        only.create(scopes=["quotes:read"])


def test_update_changes_only_given_fields(kit: AuthKit):
    issued = kit.key("quotes:read", name="a", allowed_ips=["10.0.0.0/8"], metadata={"k": 1})
    record = kit.manager.update(
        issued.key.id, scopes=["orders:read"], rate_limit=RateLimit(5, timedelta(seconds=1))
    )
    assert record.scopes == {"orders:read"}
    assert record.name == "a" and record.allowed_ips == ("10.0.0.0/8",)
    assert record.metadata == {"k": 1}
    assert record.rate_limit == RateLimit(5, timedelta(seconds=1))
    record = kit.manager.update(issued.key.id, rate_limit=None, expires_at=None, allowed_ips=[])
    assert record.rate_limit is None and record.allowed_ips == ()
    with pytest.raises(ValueError, match="nope:read"):
        kit.manager.update(issued.key.id, scopes=["nope:read"])
    assert kit.manager.get(issued.key.id).scopes == {"orders:read"}


def test_update_and_revoke_unknown(kit: AuthKit):
    with pytest.raises(KeyError):
        kit.manager.update("key_missing", name="x")
    with pytest.raises(KeyError):
        kit.manager.revoke("key_missing")
    with pytest.raises(KeyError):
        kit.manager.get("key_missing")


def test_revoke_is_idempotent(kit: AuthKit):
    issued = kit.key("quotes:read")
    first = kit.manager.revoke(issued.key.id).revoked_at
    kit.clock.advance(minutes=1)
    assert kit.manager.revoke(issued.key.id).revoked_at == first


def test_list_by_project_oldest_first(kit: AuthKit):
    a = kit.key("quotes:read", project_id="p1")
    kit.clock.advance(seconds=1)
    kit.key("quotes:read", project_id="p2")
    kit.clock.advance(seconds=1)
    c = kit.key("quotes:read", project_id="p1")
    assert [r.id for r in kit.manager.list(project_id="p1")] == [a.key.id, c.key.id]
    assert len(kit.manager.list()) == 3


def test_status(kit: AuthKit):
    issued = kit.key("quotes:read")
    assert kit.manager.get(issued.key.id).status(kit.clock.now) == "active"
    kit.manager.rotate(issued.key.id)
    assert kit.manager.get(issued.key.id).status(kit.clock.now) == "rotated"
    kit.clock.advance(hours=25)
    assert kit.manager.get(issued.key.id).status(kit.clock.now) == "expired"


def test_store_must_be_a_store():
    with pytest.raises(TypeError):
        KeyManager(object())  # type: ignore[arg-type]
