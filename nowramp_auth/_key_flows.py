"""The API-key flows: every key the fast path does not know is verified here.

Security model: a malformed key or a bad checksum is refused before any store operation; the
digest is compared (constant time) before anything else about the record is looked at; a
store that cannot answer is ``AUTH_UNAVAILABLE``. The flows are pure but for the store
operations they yield (see :mod:`nowramp_auth._flow_driver`), so one source serves sync and
async callers.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from hmac import compare_digest

from ._budgets import Limits, limits_to_charge, with_cost
from ._client_ip import IPAddress
from ._decision import _DUMMY_DIGEST, decide_key, derived
from ._errors import AuthError, ErrorCode
from ._fast_path import VerifiedKeys
from ._flow_driver import Flow
from ._keys import ParsedKey, parse_key
from ._models import Principal, RateLimitStatus, StoredKey, ceil_seconds, with_rate_limit
from ._outcomes import Outcomes
from ._route_scopes import cost_of
from .stores._protocol import KeyStore

__all__ = ["KeyFlows", "charged"]


class KeyFlows:
    """The key flow, the limiter step it ends with, and the screen of presented keys."""

    def __init__(
        self,
        store: KeyStore,
        outcomes: Outcomes,
        verified: VerifiedKeys | None,
        authoritative_key: Callable[[str], StoredKey | None] | None,
    ) -> None:
        self.store = store
        self.outcomes = outcomes
        self._verified = verified
        # A store whose current_key answers for every id without I/O (memory): a presented
        # key whose digest matches no record can be refused without the general flow.
        self._authoritative_key = authoritative_key

    def key_flow(
        self,
        api_key: object,
        ip: IPAddress | None,
        required: Collection[str],
        parsed: ParsedKey | None = None,
    ) -> Flow[tuple[Principal, StoredKey | None]]:
        """One flat generator: every key not on the fast path comes through here."""
        if api_key is None or api_key == "":
            raise AuthError(ErrorCode.MISSING_API_KEY)
        if not isinstance(api_key, str):
            raise AuthError(ErrorCode.INVALID_API_KEY)
        if parsed is None and (parsed := parse_key(api_key)) is None:
            raise AuthError(ErrorCode.INVALID_API_KEY)
        try:
            stored: StoredKey | None = yield ("get_key", (parsed.key_id,))
            now = self.outcomes.now()
            digest = self.store.digest(api_key)
            principal = decide_key(stored, digest, now, ip, required)
            if self._verified is not None and stored is not None:
                self._verified.remember(
                    api_key.encode("latin-1"), stored, principal, derived(stored.record)[1]
                )
            limit = limits_to_charge(stored.record) if stored is not None else None
            if limit is not None and stored is not None:
                limit = with_cost(limit, cost_of(required))
                principal = yield from limit_step(principal, stored.record.lineage, limit, now)
        except AuthError as error:
            # What the caller sent showed these (public): for the audit log and metrics.
            error.key_id = error.key_id or parsed.key_id
            self.outcomes.note(error, parsed.key_type)
            raise
        self.store.record_usage(principal.key_id, now)
        return principal, stored

    def screen(
        self, api_key: bytes, ip: IPAddress | str | None, method: str | None, path: str | None
    ) -> ParsedKey | AuthError:
        """A sole, non-empty ``X-API-Key`` value parsed, or its (audited) ``INVALID_API_KEY``
        refusal (see :meth:`Authenticator.parse_presented`)."""
        outcomes = self.outcomes
        started = outcomes.started()  # refusals of made-up keys come here: no calls
        text = api_key.decode("latin-1")
        parsed = parse_key(text)
        if parsed is not None:
            current = self._authoritative_key
            if current is None:
                return parsed
            stored = current(parsed.key_id)
            expected = stored.digest if stored is not None else _DUMMY_DIGEST
            if compare_digest(expected, self.store.digest(text)) and stored is not None:
                return parsed  # the right secret: the general flow checks the rest
            error = AuthError(ErrorCode.INVALID_API_KEY, key_id=parsed.key_id)
            outcomes.note(error, parsed.key_type)
        else:
            error = AuthError(ErrorCode.INVALID_API_KEY)
        outcomes.failed(error, ip, method, path, started)
        return error


def limit_step(principal: Principal, lineage: str, limit: Limits, now: datetime) -> Flow[Principal]:
    """The limiter call that ends a flow of a rate-limited key."""
    status: RateLimitStatus = yield ("hit_rate_limit", (lineage, limit, now))
    return charged(principal, status)


def charged(principal: Principal, status: RateLimitStatus) -> Principal:
    """The principal with its limit's state, or the refusal when the limit is used up."""
    if not status.allowed:
        exhausted = status.credits_exhausted
        wait = status.retry_after_seconds
        raise AuthError(
            ErrorCode.CREDITS_EXHAUSTED if exhausted else ErrorCode.RATE_LIMITED,
            # Credits without a refill: no time to wait for.
            retry_after=None if exhausted and not wait else ceil_seconds(timedelta(seconds=wait)),
            key_id=principal.key_id,
            rate_limit=status,
            project_id=principal.project_id,
            verified=True,
        )
    return with_rate_limit(principal, status)
