"""Waiting in tests for what happens on another thread, instance or process: bounded, and
failing with a message when it does not happen in time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from nowramp_auth import Authenticator, AuthError, ErrorCode

__all__ = ["revocations_survive_a_silent_drop", "seconds_until_refused", "until_accepted"]


def seconds_until_refused(auth: Authenticator, secret: str, limit: float) -> float:
    """Authenticate every 10 ms until the key is refused; the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            auth.authenticate(secret)
        except AuthError:
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"still accepted after {limit} s")


def until_accepted(call: Callable[[], object], limit: float = 10) -> None:
    """Call until it stops answering ``AUTH_UNAVAILABLE`` (a store coming back), at most
    ``limit`` seconds; any other refusal fails at once."""
    deadline = time.monotonic() + limit
    while True:
        try:
            call()
            return
        except AuthError as error:
            assert error.code is ErrorCode.AUTH_UNAVAILABLE, error.code
            assert time.monotonic() < deadline, "did not recover"
            time.sleep(0.1)


def revocations_survive_a_silent_drop(
    manager: Any, auth: Authenticator, behind: Any, drop: Callable[[], int], first_within: float
) -> None:
    """The silent-drop scenario of every networked store: ``auth`` reads through ``behind``
    (whose invalidation channel ``drop`` kills without closing it), ``manager`` writes
    directly. The first revocation after the drop is seen within ``first_within`` seconds
    (the health check, not the cache TTL); once the channel is replaced, the next within 1 s."""
    first = manager.create(scopes=["quotes:read"])
    auth.authenticate(first.secret)
    assert behind.subscribed.wait(5)
    auth.authenticate(first.secret)  # cached now
    assert drop() == 1
    manager.revoke(first.key.id)
    noticed = seconds_until_refused(auth, first.secret, 10)
    assert noticed < first_within, noticed
    assert behind.subscribed.wait(5)
    second = manager.create(scopes=["quotes:read"])
    auth.authenticate(second.secret)
    auth.authenticate(second.secret)
    manager.revoke(second.key.id)
    assert seconds_until_refused(auth, second.secret, 5) < 1.0
