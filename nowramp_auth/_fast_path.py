"""The verified-credential fast path: the accepted request of a key already verified in full.

Per-request budget of a hit (this runs on nearly every request of a busy API)::

    one BLAKE2s digest of the presented bytes  (one compression for a 64-byte key)
    one dict lookup by that digest
    one identity check: the store still holds that very record (no I/O, no lock)
    one constant-time compare of the digests
    one clock read and one float compare     (expiry)
    one dict lookup of the peer address      (only for keys with an allowlist)
    one list append (and a length check)     (usage, folded into totals in batches)

With metrics on (``Authenticator(metrics=...)``), adapters call this through
:meth:`RequestCounts.counting <nowramp_auth._request_counts.RequestCounts.counting>`, which adds
two clock reads, one compare and three integer increments to an accepted request.

A key with a rate limit answers its :class:`LimitedKey` instead: the caller makes the one
limiter call through :meth:`Authenticator.charge` once the route's scopes are checked.

No generator, no ``datetime``, no exception and no allocation: everything else was computed
once per record version, when the general flow accepted the key and :meth:`remember` was
called. Anything unusual (a key never seen, a changed record, a cache that cannot vouch for
freshness, an expired key, an address outside the allowlist, audited successes) answers
``None`` and the caller takes the general flow, which decides, audits and raises.

Security model: entries are keyed by a digest of the presented key, never by the plaintext,
and are made only after the general flow accepted the key (the store's digest compared in
constant time, not revoked, not expired). That digest is BLAKE2s, not the store's SHA-256:
a 64-byte key is two SHA-256 blocks but one BLAKE2s block, half the cost on every request,
and a peppered store's HMAC is not repeated per request. Equal BLAKE2s digests mean the very
key the general flow verified (a 256-bit cryptographic hash; its collision resistance is what
the store's digest relies on too), and a hit still compares the digests in constant time. The
cache lives in process memory, beside the pepper itself, so an unkeyed digest there reveals
nothing the process does not already hold. An entry serves only while the store's no-I/O
``current_key(key_id)`` returns the very object the entry was made from: stores replace the
object on every change (revocation, rotation, update, a Redis invalidation or cache expiry),
so the next request after a change takes the general flow. Expiry is compared on every hit,
on the authenticator's clock.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Awaitable, Callable, Collection
from hashlib import blake2s
from hmac import compare_digest
from typing import NamedTuple

from ._budgets import Limits, limits_to_charge
from ._client_ip import NetworkSet, parse_ip
from ._models import Principal, RateLimitStatus, StoredKey
from .stores._usage import FOLD_AT

__all__ = ["DEFAULT_MAX_ENTRIES", "Charger", "LimitedKey", "VerifiedKeys", "cache_digest"]

DEFAULT_MAX_ENTRIES = 10_000
_MAX_PEERS = 256
_NEVER = math.inf
# Float seconds are not exact to the microsecond, so the fast path stops serving a key this
# long before its expiry and leaves the last moment to the general flow's exact comparison.
_EXPIRY_MARGIN = 0.001

CurrentKey = Callable[[str], StoredKey | None]
Charger = Callable[[float], Awaitable[RateLimitStatus]]
"""One async limiter call of one key, ``(now in epoch seconds)`` to its status."""


def cache_digest(api_key: bytes) -> bytes:
    """The fast path's digest of a presented key: BLAKE2s (see the security model above)."""
    return blake2s(api_key).digest()


class LimitedKey(NamedTuple):
    """A verified key with a rate limit: everything but the one limiter call is decided.

    Built once per record version; :meth:`Authenticator.charge` makes the call (after the
    route's scope checks), counts the request (:meth:`VerifiedKeys.count_charged`) and
    returns the principal."""

    principal: Principal
    lineage: str
    limit: Limits  # one RateLimit, the tuple of several, or a Plan (budgets, credits)
    usage: list[float]  # the store's usage cell of this key
    charge_async: Charger  # the store's async limiter call for this key, built once


# An entry is a plain tuple, built in ``remember`` (field by field, commented there): a hit
# unpacks it, and CPython unpacks an exact tuple in one step but a tuple subclass (such as a
# NamedTuple) through its generic iterator path, about 150 ns more per request.
_Entry = tuple[
    bytes,
    StoredKey,
    Principal,
    str,
    float,
    NetworkSet | None,
    dict[str | None, bool],
    list[float],
    LimitedKey | None,
]


class VerifiedKeys:
    """Keys accepted by the general flow, by digest, for the fast path of later requests.

    Parameters:
        current_key: the store's no-I/O ``current_key``.
        now: the clock, in seconds since the epoch.
        usage_cell: the store's ``usage_cell``: a key id's list of request times, appended to
            without a lock (see :mod:`nowramp_auth.stores._usage`).
        fold_usage: the store's ``fold_usage``, called when a cell grows past ``FOLD_AT``.
        charger: ``(lineage, limit)`` to that budget's async limiter call (built once per
            record version, kept in its :class:`LimitedKey`).
        max_entries: bound on remembered keys (the oldest is dropped first).
    """

    __slots__ = (
        "_cell",
        "_charger",
        "_current",
        "_entries",
        "_fold",
        "_lock",
        "_max",
        "_now",
    )

    def __init__(
        self,
        current_key: CurrentKey,
        now: Callable[[], float],
        usage_cell: Callable[[str], list[float]],
        fold_usage: Callable[[str, list[float]], None],
        charger: Callable[[str, Limits], Charger],
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self._charger = charger
        self._current = current_key
        self._now = now
        self._cell = usage_cell
        self._fold = fold_usage
        self._max = max_entries
        self._entries: dict[bytes, _Entry] = {}
        self._lock = threading.Lock()

    def accept(
        self,
        api_key: bytes,
        peer: str | None,
        required: Collection[str] = (),
        _fold_at: int = FOLD_AT,
    ) -> Principal | LimitedKey | None:
        """The principal of a previously verified key that still passes every check from
        ``peer`` (the client address: callers pass the peer only when no forwarding header
        can change it) and holds ``required``, counting the request; for a key with a rate
        limit, its :class:`LimitedKey` (not counted yet); ``None`` means: take the general
        flow."""
        digest = blake2s(api_key).digest()  # cache_digest(api_key), without a call
        entry = self._entries.get(digest)
        if entry is None:
            return None
        known, stored, principal, key_id, expires, allowlist, peers, usage, limited = entry
        # The callables kept in slots are read into locals before they are called: CPython
        # 3.11 cannot specialise ``self.attribute(...)`` when the attribute is not a method,
        # and its generic lookup goes through the type's (often evicted) attribute cache.
        current, clock = self._current, self._now
        if not compare_digest(known, digest) or current(key_id) is not stored:
            return None
        now = clock()
        if now >= expires:
            return None
        if allowlist is not None:
            allowed = peers.get(peer)
            if allowed is None:
                allowed = self._allowed(peers, allowlist, peer)
            if not allowed:
                return None
        if required and not principal.scopes.issuperset(required):
            return None
        if limited is not None:
            return limited
        usage.append(now)
        if len(usage) > _fold_at:
            self._fold(key_id, usage)
        return principal

    def count_charged(self, key: LimitedKey, now: float, _fold_at: int = FOLD_AT) -> None:
        """Count an accepted request of a rate-limited key (after its limiter call), as
        :meth:`accept` counts the others: one append to the key's usage cell."""
        usage = key.usage
        usage.append(now)
        if len(usage) > _fold_at:
            self._fold(key.principal.key_id, usage)

    @staticmethod
    def _allowed(peers: dict[str | None, bool], allowlist: NetworkSet, peer: str | None) -> bool:
        allowed = parse_ip(peer) in allowlist
        if len(peers) < _MAX_PEERS:
            peers[peer] = allowed
        return allowed

    def remember(
        self, api_key: bytes, stored: StoredKey, principal: Principal, allowlist: NetworkSet
    ) -> None:
        """Note a key the general flow has just accepted (not revoked, digest matched)."""
        digest = cache_digest(api_key)
        record = stored.record
        expires = (
            _NEVER if record.expires_at is None else record.expires_at.timestamp() - _EXPIRY_MARGIN
        )
        usage = self._cell(record.id)
        limited = None
        limits = limits_to_charge(record)
        if limits is not None:
            charge = self._charger(record.lineage, limits)
            limited = LimitedKey(principal, record.lineage, limits, usage, charge)
        entry: _Entry = (
            digest,  # cache_digest of the key (compared in constant time on a hit)
            stored,  # the record version the entry was made from (compared by identity)
            principal,
            record.id,
            expires,  # seconds since the epoch, a little early (see _EXPIRY_MARGIN); or inf
            allowlist or None,  # None: any address
            {},  # the allowlist's answer per peer address, memoised
            usage,  # the store's usage cell of this key (times of requests)
            limited,  # set for keys with a rate limit
        )
        with self._lock:
            entries = self._entries
            entries.pop(digest, None)
            while len(entries) >= self._max:
                del entries[next(iter(entries))]
            entries[digest] = entry

    def __len__(self) -> int:
        return len(self._entries)
