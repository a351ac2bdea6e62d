"""The commit point of a verified rate-limited key: the route's scopes, then one limiter call.

A key the fast path knows (see :mod:`nowramp_auth._fast_path`) and that carries a rate limit
comes here as a :class:`LimitedKey`: its route's scopes are checked first (a request refused
for scopes spends nothing), then the one limiter call is made and the request counted.
Security model: a limiter call whose outcome is unknown fails closed (``AUTH_UNAVAILABLE``);
only a request that passes every other check uses quota.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from time import perf_counter
from typing import Any

from ._budgets import Limits, with_cost
from ._client_ip import IPAddress
from ._clock import Clock, seconds_clock
from ._errors import AuthError, ErrorCode
from ._fast_path import Charger, LimitedKey, VerifiedKeys
from ._key_flows import charged
from ._models import Principal, RateLimitStatus, with_rate_limit
from ._outcomes import Outcomes
from ._route_scopes import cost_of
from .stores._errors import StoreUnavailable
from .stores._protocol import KeyStore

__all__ = ["Charging", "verified_keys"]

ClientIp = str | IPAddress | None
_FAST_PATH_HOOKS = ("current_key", "usage_cell", "fold_usage")


class Charging:
    """``charge`` and ``charge_async`` of one authenticator."""

    def __init__(self, store: KeyStore, outcomes: Outcomes, verified: VerifiedKeys | None) -> None:
        self.store = store
        self.outcomes = outcomes
        self._verified = verified
        self._never_blocks = bool(getattr(store, "request_path_never_blocks", False))
        self._now = outcomes.now_seconds

    def charge(
        self,
        key: LimitedKey,
        *,
        client_ip: ClientIp = None,
        required_scopes: Collection[str] = (),
        method: str | None = None,
        path: str | None = None,
    ) -> Principal:
        """The commit point of a verified rate-limited key: check ``required_scopes`` (the
        route's), then make the one limiter call and count the request. ``AuthError``
        (audited) when a scope is missing (nothing spent), the limit is used up or the store
        cannot answer."""
        started = self.outcomes.started()
        now = self.outcomes.now()
        try:
            check_route_scopes(key, required_scopes)
            limits = with_cost(key.limit, cost_of(required_scopes))
            principal = charged(key.principal, self.store.hit_rate_limit(key.lineage, limits, now))
        except (AuthError, StoreUnavailable) as exc:
            raise self._refused(exc, key, client_ip, method, path, started) from None
        self._count(key, now.timestamp(), principal, started)
        return principal

    async def charge_async(
        self,
        key: LimitedKey,
        *,
        client_ip: ClientIp = None,
        required_scopes: Collection[str] = (),
        method: str | None = None,
        path: str | None = None,
    ) -> Principal:
        """Async twin of :meth:`charge` (calls in flight together share a Redis pipeline)."""
        if self._never_blocks:
            return self.charge(
                key, client_ip=client_ip, required_scopes=required_scopes, method=method, path=path
            )
        # Every request of a rate-limited key on Redis runs this: the scope check, the one
        # limiter call the key's LimitedKey holds (its future, shared with the requests in
        # flight: see the store's pipeline), the principal with the limit's state, one
        # usage append. The clock is read as a float: no datetime on this path, and the
        # one-line steps of charge() (when metrics start, the route's cost, the accepted
        # principal) are written out here, not called: every limited request pays for them.
        started = perf_counter() if self.outcomes.counts is not None else 0.0
        now = self._now()
        try:
            if required_scopes:
                check_route_scopes(key, required_scopes)
                cost: int = getattr(required_scopes, "cost", 1)  # cost_of, inline
            else:
                cost = 1
            if cost == 1:
                status = await key.charge_async(now)
            else:  # a route with a cost of its own: not the key's prepared call
                at = datetime.fromtimestamp(now, UTC)
                limits = with_cost(key.limit, cost)
                status = await self.store.hit_rate_limit_async(  # type: ignore[attr-defined]
                    key.lineage, limits, at
                )
            if not status.allowed:
                charged(key.principal, status)  # raises the refusal
        except (AuthError, StoreUnavailable) as exc:
            raise self._refused(exc, key, client_ip, method, path, started) from None
        principal = with_rate_limit(key.principal, status)
        self._count(key, now, principal, started)
        return principal

    def _count(self, key: LimitedKey, now: float, principal: Principal, started: float) -> None:
        # Only the fast path makes a LimitedKey, so it exists; it counts into the key's cell
        # (usage) and, with metrics, as accepted.
        verified = self._verified
        assert verified is not None, "a LimitedKey comes from accept_verified"
        verified.count_charged(key, now)
        counts = self.outcomes.counts
        if counts is not None:
            counts.accepted(principal, started)

    def _refused(
        self,
        exc: Exception,
        key: LimitedKey,
        ip: ClientIp,
        method: str | None,
        path: str | None,
        started: float,
    ) -> AuthError:
        error = (
            exc
            if isinstance(exc, AuthError)
            else AuthError(ErrorCode.AUTH_UNAVAILABLE, retry_after=1, key_id=key.principal.key_id)
        )
        self.outcomes.note(error, key.principal.key_type)
        self.outcomes.failed(error, ip, method, path, started)
        return error


def check_route_scopes(key: LimitedKey, required: Collection[str]) -> None:
    """Before the limiter call: a request refused for scopes spends nothing."""
    if required and not key.principal.scopes.issuperset(required):
        raise AuthError(
            ErrorCode.INSUFFICIENT_PERMISSIONS,
            required_scopes=required,
            key_id=key.principal.key_id,
            project_id=key.principal.project_id,
            verified=True,
        )


def verified_keys(
    store: KeyStore, clock: Clock | None, audit_successes: bool
) -> VerifiedKeys | None:
    """The fast path's memory of verified keys. It needs the store's no-I/O hooks; a store
    without them (or audited successes, which the general flow emits) always takes the
    general flow (``None``)."""
    hooks: list[Any] = [getattr(store, name, None) for name in _FAST_PATH_HOOKS]
    if audit_successes or not all(callable(hook) for hook in hooks):
        return None
    current, cell, fold = hooks
    charger = getattr(store, "rate_charger", None)
    return VerifiedKeys(current, seconds_clock(clock), cell, fold, charger or _charger_of(store))


def _charger_of(store: KeyStore) -> Callable[[str, Limits], Charger]:
    # A store without its own ``rate_charger``: each call goes through hit_rate_limit_async.
    def charger(lineage: str, limit: Limits) -> Charger:
        def charge(now: float) -> Awaitable[RateLimitStatus]:
            hit = store.hit_rate_limit_async  # type: ignore[attr-defined]
            status: Awaitable[RateLimitStatus] = hit(
                lineage, limit, datetime.fromtimestamp(now, UTC)
            )
            return status

        return charge

    return charger
