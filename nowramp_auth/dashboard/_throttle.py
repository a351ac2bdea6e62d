"""The sign-in throttle: per client address, and a growing delay per account.

Security model: guessing passwords must be slow whoever guesses and however the requests
arrive. Per client (the address resolved with ``trusted_proxies``, so behind a proxy it is the
person, not the proxy; IPv6 by /64, the smallest block a client is usually given), at most
:data:`CLIENT_LIMIT` sign-ins may be checked per :data:`CLIENT_WINDOW` seconds: a slot is taken
in the key store, atomically, before the password is checked, and handed back when the sign-in
succeeds, so only failures count (people behind one NAT can all sign in). Per account, each
failure after the first :data:`FREE_FAILURES` doubles a waiting time (capped at
:data:`MAX_DELAY` seconds) before the next password check of that account: an attacker cycling
addresses is slowed, and the owner is never locked out for longer than the cap.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from .._client_ip import IPAddress, client_block

__all__ = [
    "CLIENT_LIMIT",
    "CLIENT_WINDOW",
    "FREE_FAILURES",
    "MAX_DELAY",
    "SignInThrottle",
    "client_bucket",
]

CLIENT_LIMIT = 5
CLIENT_WINDOW = 60.0
FREE_FAILURES = 5
MAX_DELAY = 60.0
_FAILURES_KIND = "signin_failures"
_FORGET_AFTER = 15 * 60.0  # seconds without a failure before an account's count resets


def client_bucket(address: IPAddress | None) -> str:
    """The throttle bucket of a client: its IPv4 address, its IPv6 /64, or ``unknown``."""
    return "signin_" + hashlib.sha256(client_block(address).encode()).hexdigest()[:24]


def account_delay(failures: int) -> float:
    """Seconds an account waits after its ``failures``-th failure in a row."""
    if failures < FREE_FAILURES:
        return 0.0
    return float(min(2 ** (failures - FREE_FAILURES), MAX_DELAY))


class SignInThrottle:
    """Both limits, kept in the key store (so they hold across instances)."""

    def __init__(self, store: Any) -> None:
        for method in ("take_attempt", "return_attempt", "get_dashboard_item"):
            if not callable(getattr(store, method, None)):
                raise TypeError(f"store {type(store).__name__} cannot keep the sign-in throttle")
        self.store = store

    def admit(self, address: IPAddress | None) -> str | None:
        """Take a slot for one sign-in from ``address``: its ticket, or ``None`` (refuse)."""
        ticket: str | None = self.store.take_attempt(
            client_bucket(address), CLIENT_LIMIT, CLIENT_WINDOW
        )
        return ticket

    def release(self, address: IPAddress | None, ticket: str) -> None:
        """Hand a slot back: the sign-in succeeded, or no password was checked."""
        self.store.return_attempt(client_bucket(address), ticket)

    def _failures(self, account: str) -> dict[str, float]:
        raw = self.store.get_dashboard_item(_FAILURES_KIND, _account_id(account))
        return json.loads(raw) if raw else {"count": 0, "last": 0.0}

    def wait(self, account: str) -> float:
        """Seconds before ``account``'s password may be checked again (0: now)."""
        failures = self._failures(account)
        ready = failures["last"] + account_delay(int(failures["count"]))
        return max(0.0, ready - time.time())

    def failed(self, account: str) -> None:
        """Note a failed sign-in of ``account``."""
        failures = self._failures(account)
        value = json.dumps({"count": int(failures["count"]) + 1, "last": time.time()})
        self.store.put_dashboard_item(_FAILURES_KIND, _account_id(account), value, _FORGET_AFTER)

    def succeeded(self, account: str) -> None:
        """Forget ``account``'s failures."""
        self.store.delete_dashboard_item(_FAILURES_KIND, _account_id(account))


def _account_id(account: str) -> str:
    # Hashed: the name is attacker-chosen text and may be long.
    return hashlib.sha256(account.casefold().encode("utf-8", "replace")).hexdigest()[:32]
