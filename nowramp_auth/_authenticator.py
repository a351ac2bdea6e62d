"""``Authenticator``: verify API keys and widget session tokens against a store.

The class composes the rooms that do the work: :mod:`._key_flows` (API keys),
:mod:`._session_flows` (widget sessions), :mod:`._charging` (the rate-limit commit point),
:mod:`._outcomes` (audit and metrics of every answer) and :mod:`._flow_driver` (the sync and
async drivers of the flows, which are generators: one source serves both). Its accepted-key
hot path is :mod:`._fast_path`, reached through :attr:`Authenticator.accept_verified`.

Security model: a malformed key or a bad checksum is refused before any store operation. The
digest is compared before anything else about the record is looked at. The store being
unreachable is ``AUTH_UNAVAILABLE``, never a success and never "unknown key". Audit events
carry the key id (public), never the key.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import timedelta
from typing import Required, TypedDict, TypeVar, Unpack

from ._audit import AuditEmitter, AuditSink
from ._charging import Charging, verified_keys
from ._client_ip import IPAddress, parse_ip, parse_networks, resolve_client_ip
from ._clock import Clock, seconds_clock, utc_now
from ._errors import AuthError
from ._fast_path import LimitedKey
from ._flow_driver import Flow, FlowDriver
from ._key_flows import KeyFlows
from ._keys import ParsedKey
from ._metrics_source import MetricsExporter, MetricsSource
from ._models import IssuedSession, Principal, SessionRecord, StoredKey
from ._outcomes import Outcomes
from ._request_counts import RequestCounts
from ._scopes import KNOWN_SCOPES, SERVER_SIDE_SCOPES, check_scope_name
from ._session_flows import SessionFlows
from .stores._protocol import KeyStore

__all__ = [
    "DEFAULT_SESSION_TTL",
    "Authenticator",
    "RequestFacts",
    "ScopedRequest",
    "SessionRequest",
]

DEFAULT_SESSION_TTL = timedelta(minutes=30)
ClientIp = str | IPAddress | None
AcceptVerified = Callable[..., Principal | LimitedKey | None]
T = TypeVar("T")
Call = tuple[Flow[T], IPAddress | None, str | None, str | None]
"""A flow and what its driver needs to end it: the client address, method and path."""


class RequestFacts(TypedDict, total=False):
    """What a caller knows of the request it authenticates (each optional)."""

    client_ip: ClientIp
    """The client's address (a non-empty allowlist refuses ``None``)."""
    method: str | None
    """The request's method, for the audit log."""
    path: str | None
    """The request's path, for the audit log."""


class SessionRequest(RequestFacts, total=False):
    """What :meth:`Authenticator.create_session` takes besides the key."""

    project_id: Required[str]
    """The project the session is for (the key must belong to it, or to none)."""
    customer_id: str | None
    """The partner's customer, recorded on the session."""
    scopes: Iterable[str] | None
    """The scopes asked for (a subset of the key's); default: the key's widget scopes."""
    actor: str | None
    """A person who caused it, named in the ``session.created`` event."""


class ScopedRequest(RequestFacts, total=False):
    """:class:`RequestFacts` and the scopes the request needs."""

    required_scopes: Collection[str]
    """Every scope the route requires (default: none)."""


class Authenticator:
    """Authenticate API keys and widget sessions.

    Parameters:
        store: the key store (sync methods for :meth:`authenticate`, ``*_async`` twins for
            :meth:`authenticate_async`).
        clock: returns the current aware datetime (default: UTC now).
        audit: an audit sink or several (``auth.failed``, ``session.*`` events).
        trusted_proxies: CIDRs of reverse proxies whose ``X-Forwarded-For`` is believed.
        widget_scopes: scopes a session gets by default (intersected with its key's scopes);
            default: every known scope except ``webhooks:*``.
        session_ttl: widget session lifetime (default 30 minutes).
        audit_successes: also emit ``auth.succeeded`` for every accepted request.
        metrics: an exporter from :mod:`nowramp_auth.metrics` (``PrometheusMetrics``,
            ``OpenTelemetryMetrics``): each request then counts once, with its final result,
            key type and authentication time (see :mod:`nowramp_auth._request_counts`).

    Example::

        auth = Authenticator(store)
        principal = auth.authenticate(key, client_ip="203.0.113.7",
                                      required_scopes=["quotes:read"])
    """

    def __init__(
        self,
        store: KeyStore,
        *,
        clock: Clock | None = None,
        audit: AuditSink | Iterable[AuditSink] | None = None,
        trusted_proxies: Iterable[str] = (),
        widget_scopes: Iterable[str] | None = None,
        session_ttl: timedelta = DEFAULT_SESSION_TTL,
        audit_successes: bool = False,
        metrics: MetricsExporter | None = None,
    ) -> None:
        self.widget_scopes = _checked(store, session_ttl, metrics, widget_scopes)
        self.store = store
        self.clock: Clock = clock or utc_now
        self.audit = AuditEmitter(audit)
        self.trusted_proxies = parse_networks(trusted_proxies)
        self.session_ttl = session_ttl
        self.audit_successes = audit_successes
        counts = RequestCounts() if metrics is not None else None
        self._outcomes = Outcomes(
            audit=self.audit,
            clock=self.clock,
            now_seconds=seconds_clock(clock),
            counts=counts,
            # Refusals of requests that presented a key's secret are counted in its history
            # (written behind with usage) when the store keeps one.
            count_refusal=getattr(store, "count_refusal", None),
            audit_successes=audit_successes,
        )
        never_blocks = bool(getattr(store, "request_path_never_blocks", False))
        verified = self._verified = verified_keys(store, clock, audit_successes)
        self._driver = FlowDriver(store, self._outcomes)
        authoritative = getattr(store, "current_key", None) if never_blocks else None
        self._keys = KeyFlows(store, self._outcomes, verified, authoritative)
        self._sessions = SessionFlows(
            store, self._outcomes, self._keys, widget_scopes=self.widget_scopes, ttl=session_ttl
        )
        charging = Charging(store, self._outcomes, verified)
        # Bound once: the adapters' rate-limited hot path calls these with no hop between.
        self.charge = charging.charge
        """The commit point of a verified rate-limited key (see :class:`Charging.charge`):
        the route's scopes, then the one limiter call."""
        self.charge_async = charging.charge_async
        """Async twin of :attr:`charge` (calls in flight together share a Redis pipeline)."""
        accept: AcceptVerified = verified.accept if verified is not None else _general_flow_only
        if counts is not None and metrics is not None:
            # Metrics: each request counted once, with its final result and time.
            counts.hook = metrics.attach(MetricsSource(counts, store, self.audit))
            if verified is not None:
                accept = counts.counting(accept)
        self.accept_verified: AcceptVerified = accept
        """The fast path (see :mod:`nowramp_auth._fast_path`): ``(key bytes, peer address,
        required scopes=())`` to the principal of a key already verified in full, or ``None``
        for the general flow. Adapters call it first; the peer must be the client (no
        forwarding header applies)."""

    def __repr__(self) -> str:
        return f"Authenticator(store={self.store!r})"

    # -- API keys -----------------------------------------------------------------------------
    def resolve_client_ip(
        self, peer: str | None, forwarded_for: Iterable[str] = ()
    ) -> IPAddress | None:
        """The client address from the peer and ``X-Forwarded-For`` (see ``trusted_proxies``)."""
        return resolve_client_ip(peer, list(forwarded_for), self.trusted_proxies)

    def authenticate(self, api_key: str | None, **request: Unpack[ScopedRequest]) -> Principal:
        """The :class:`Principal` of a valid API key; else raise :class:`AuthError`.
        ``request``: what is known of the request (:class:`ScopedRequest`)."""
        known = _fast(self.accept_verified, api_key, request)
        if known is None:
            return self._driver.run(*self._key_call(api_key, request))[0]
        return known if isinstance(known, Principal) else self.charge(known, **request)

    async def authenticate_async(
        self, api_key: str | None, **request: Unpack[ScopedRequest]
    ) -> Principal:
        """Async twin of :meth:`authenticate`; never blocks the event loop on store I/O."""
        known = _fast(self.accept_verified, api_key, request)
        if known is None:
            return (await self._driver.run_async(*self._key_call(api_key, request)))[0]
        return known if isinstance(known, Principal) else await self.charge_async(known, **request)

    def _key_call(
        self, api_key: object, request: ScopedRequest, parsed: ParsedKey | None = None
    ) -> Call[tuple[Principal, StoredKey | None]]:
        ip = _ip(request.get("client_ip"))
        flow = self._keys.key_flow(api_key, ip, request.get("required_scopes", ()), parsed)
        return flow, ip, request.get("method"), request.get("path")

    def parse_presented(
        self, api_key: bytes, client_ip: ClientIp, method: str | None, path: str | None
    ) -> ParsedKey | AuthError:
        """A sole, non-empty ``X-API-Key`` value parsed; or its (audited) ``INVALID_API_KEY``
        refusal when it is not a well-formed key with a valid checksum (made-up keys never
        need the store), or when a store that answers without I/O (the memory store) holds
        no record whose digest matches it: what the general flow would answer, without its
        machinery. Unknown ids and known ids with a wrong secret take the same steps (one
        constant-time compare, against a dummy digest for an unknown id). Adapters then
        verify a parsed key with :meth:`authenticate_parsed_async`."""
        return self._keys.screen(api_key, _ip(client_ip), method, path)

    async def authenticate_parsed_async(
        self, api_key: str, parsed: ParsedKey, **request: Unpack[ScopedRequest]
    ) -> Principal:
        """The key flow for a key :meth:`parse_presented` has parsed (not parsed again)."""
        return (await self._driver.run_async(*self._key_call(api_key, request, parsed)))[0]

    # -- requests as the adapters see them ----------------------------------------------------
    def authenticate_request(
        self,
        api_keys: Sequence[str],
        authorizations: Sequence[str] = (),
        **request: Unpack[ScopedRequest],
    ) -> Principal:
        """Authenticate a request from its raw ``X-API-Key`` and ``Authorization`` values
        (what the adapters call): an API key, else a widget session bearer token."""
        return self._driver.run(*self._request_call(api_keys, authorizations, request))[0]

    async def authenticate_request_async(
        self,
        api_keys: Sequence[str],
        authorizations: Sequence[str] = (),
        **request: Unpack[ScopedRequest],
    ) -> Principal:
        """Async twin of :meth:`authenticate_request`."""
        call = self._request_call(api_keys, authorizations, request)
        return (await self._driver.run_async(*call))[0]

    def _request_call(
        self, api_keys: Sequence[str], authorizations: Sequence[str], request: ScopedRequest
    ) -> Call[tuple[Principal, StoredKey | None]]:
        ip = _ip(request.get("client_ip"))
        method, path = request.get("method"), request.get("path")
        required = request.get("required_scopes", ())
        flow = self._sessions.request_flow(api_keys, authorizations, ip, required, method, path)
        return flow, ip, method, path

    def audit_refusal(
        self,
        error: AuthError,
        *,
        client_ip: ClientIp = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Record an ``auth.failed`` event for a refusal decided outside the authenticator
        (e.g. by a route's ``require_scopes``). With metrics, a request this authenticator
        accepted (the current request) counts with this refusal instead of as accepted."""
        self._outcomes.refused_outside(self, error, _ip(client_ip), method, path)

    def _refused_after_acceptance(self, principal: Principal, error: AuthError) -> None:
        # A request accepted (and counted) that is refused after all, e.g. a widget-session
        # request with a valid key and a bad body: it counts with that refusal instead.
        self._outcomes.recount(principal, error)

    # -- widget sessions ----------------------------------------------------------------------
    def authenticate_session(
        self, token: str | None, **request: Unpack[ScopedRequest]
    ) -> Principal:
        """The :class:`Principal` (``kind="session"``) of a valid widget session token."""
        return self._driver.run(*self._session_call(token, request))[0]

    async def authenticate_session_async(
        self, token: str | None, **request: Unpack[ScopedRequest]
    ) -> Principal:
        """Async twin of :meth:`authenticate_session`."""
        return (await self._driver.run_async(*self._session_call(token, request)))[0]

    def _session_call(
        self, token: object, request: ScopedRequest
    ) -> Call[tuple[Principal, StoredKey | None]]:
        flow = self._sessions.session_flow(token, request.get("required_scopes", ()))
        return flow, _ip(request.get("client_ip")), request.get("method"), request.get("path")

    def create_session(
        self, api_key: str | Sequence[str] | None, **session: Unpack[SessionRequest]
    ) -> IssuedSession:
        """Create a widget session for ``project_id`` with an API key (its allowlist applies).

        ``api_key`` is the key, or every raw ``X-API-Key`` header value of a request;
        ``session`` (:class:`SessionRequest`): ``project_id`` (required), ``customer_id``,
        ``scopes``, ``actor`` (a person who caused it, e.g. ``"cli"``, named in the audit
        event), and what is known of the request.

        Raises :class:`AuthError`: the key's own refusals, or ``INSUFFICIENT_PERMISSIONS``
        when the key belongs to another project or lacks a scope asked for.
        """
        return self._driver.run(*self._create_call(api_key, session))[0]

    async def create_session_async(
        self, api_key: str | Sequence[str] | None, **session: Unpack[SessionRequest]
    ) -> IssuedSession:
        """Async twin of :meth:`create_session`."""
        return (await self._driver.run_async(*self._create_call(api_key, session)))[0]

    def _create_call(
        self, api_key: str | Sequence[str] | None, session: SessionRequest
    ) -> Call[tuple[IssuedSession, Principal]]:
        ip = _ip(session.get("client_ip"))
        flow = self._sessions.create_flow(
            api_key,
            ip,
            session["project_id"],
            session.get("customer_id"),
            session.get("scopes"),
            session.get("actor"),
        )
        return flow, ip, session.get("method"), session.get("path")

    def revoke_session(self, token: str, *, actor: str | None = None) -> SessionRecord:
        """Revoke a widget session (idempotent). ``AuthError(INVALID_SESSION_TOKEN)`` when the
        token is malformed or unknown. ``actor`` is named in the audit event."""
        return self._sessions.revoke(token, actor=actor)


def _checked(
    store: KeyStore,
    session_ttl: timedelta,
    metrics: MetricsExporter | None,
    widget_scopes: Iterable[str] | None,
) -> frozenset[str]:
    # Configuration errors fail at construction; the widget scope set, validated.
    if not callable(getattr(store, "get_key", None)) or not callable(
        getattr(store, "digest", None)
    ):
        raise TypeError(f"store {type(store).__name__} does not implement the KeyStore protocol")
    if not isinstance(session_ttl, timedelta) or session_ttl <= timedelta(0):
        raise ValueError("session_ttl must be a positive timedelta")
    if metrics is not None and not isinstance(metrics, MetricsExporter):
        raise TypeError(
            f"metrics must be an exporter from nowramp_auth.metrics, not {type(metrics).__name__}"
        )
    if isinstance(widget_scopes, str):
        raise TypeError("widget_scopes must be a list of scopes, not one string")
    if widget_scopes is None:
        return KNOWN_SCOPES - SERVER_SIDE_SCOPES
    return frozenset(check_scope_name(s) for s in widget_scopes)


def _fast(
    accept: AcceptVerified, api_key: object, request: ScopedRequest
) -> Principal | LimitedKey | None:
    # The fast path for direct callers; a scope check failing falls through, so the general
    # flow refuses (and audits) and the request is counted once, not twice.
    client_ip = request.get("client_ip")
    if type(api_key) is not str or not (client_ip is None or type(client_ip) is str):
        return None
    try:
        raw = api_key.encode("ascii")
    except UnicodeEncodeError:
        return None
    return accept(raw, client_ip, request.get("required_scopes", ()))


def _general_flow_only(*_args: object) -> None:
    return None


def _ip(client_ip: ClientIp) -> IPAddress | None:
    if client_ip is None or not isinstance(client_ip, str):
        return client_ip
    return parse_ip(client_ip)
