"""Helpers for your own test suite: a frozen clock and a ready-made in-memory auth setup.

Example::

    from nowramp_auth.testing import auth_kit

    def test_quotes_need_a_key():
        kit = auth_kit()
        key = kit.key("quotes:read")
        app.add_middleware(ApiKeyMiddleware, authenticator=kit.authenticator)
        ...
        kit.clock.advance(hours=25)   # past a rotation's grace period
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ._audit import MemoryAuditLog
from ._authenticator import Authenticator
from ._clock import require_aware, utc_now
from ._keys import KeyType
from ._manager import KeyManager
from ._models import IssuedKey
from .stores.memory import MemoryKeyStore

__all__ = ["AuthKit", "FrozenClock", "auth_kit"]


class FrozenClock:
    """A clock that stands still until moved. Pass it as ``clock=`` to the manager and
    authenticator.

    Example: ``clock = FrozenClock(); clock.advance(hours=24, seconds=1)``.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self.now = require_aware(start, "start") if start is not None else utc_now()

    def __call__(self) -> datetime:
        return self.now

    def __repr__(self) -> str:
        return f"FrozenClock({self.now.isoformat()})"

    def advance(self, delta: timedelta | None = None, **units: float) -> datetime:
        """Move forward by ``delta`` or by keyword units (``hours=1``); returns the new now."""
        self.now += delta if delta is not None else timedelta(**units)
        return self.now

    def set(self, when: datetime) -> None:
        """Jump to ``when``."""
        self.now = require_aware(when, "when")


@dataclass
class AuthKit:
    """An in-memory store, a manager and an authenticator sharing one frozen clock and one
    in-memory audit log."""

    store: MemoryKeyStore
    manager: KeyManager
    authenticator: Authenticator
    clock: FrozenClock
    audit: MemoryAuditLog
    issued: list[IssuedKey] = field(default_factory=list)

    def key(self, *scopes: str, key_type: KeyType = "test", **options: Any) -> IssuedKey:
        """Create a key holding ``scopes`` (other ``KeyManager.create`` options allowed)."""
        issued = self.manager.create(scopes=scopes, key_type=key_type, **options)
        self.issued.append(issued)
        return issued


def auth_kit(
    *,
    start: datetime | None = None,
    scopes: Iterable[str] | None = None,
    **authenticator_options: Any,
) -> AuthKit:
    """A ready :class:`AuthKit`. ``scopes`` replaces the known scope set;
    ``authenticator_options`` go to :class:`~nowramp_auth.Authenticator` (an ``audit=`` sink
    there is added next to the kit's in-memory log)."""
    clock = FrozenClock(start)
    store = MemoryKeyStore()
    audit = MemoryAuditLog()
    manager = KeyManager(store, clock=clock, audit=audit, scopes=scopes)
    extra = authenticator_options.pop("audit", None) or []
    sinks = [audit, *([extra] if hasattr(extra, "emit") else extra)]
    authenticator = Authenticator(store, clock=clock, audit=sinks, **authenticator_options)
    return AuthKit(store, manager, authenticator, clock, audit)
