"""Waiting in tests for what happens on another thread, instance or process: bounded, and
failing with a message when it does not happen in time."""

from __future__ import annotations

import time
from collections.abc import Callable

from nowramp_auth import Authenticator, AuthError, ErrorCode

__all__ = ["seconds_until_refused", "until_accepted"]


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
