"""``Authenticator``: verify API keys and widget session tokens against a store.

Sans-I/O in the h11 sense: each check is a generator ("flow") that yields the store operation
it needs and receives the answer. :meth:`Authenticator._run` drives a flow with the sync
store methods, :meth:`Authenticator._run_async` with the async ones; everything else (parsing,
the decision, audit, usage) is the same code for both.

Security model: a malformed key or a bad checksum is refused before any store operation. The
digest is compared before anything else about the record is looked at. The store being
unreachable is ``AUTH_UNAVAILABLE``, never a success and never "unknown key". Audit events
carry the key id (public), never the key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Generator, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from hmac import compare_digest
from time import perf_counter
from typing import Any, TypeVar

from ._audit import AuditEmitter, AuditSink
from ._client_ip import IPAddress, ip_text, parse_ip, parse_networks, resolve_client_ip
from ._clock import Clock, require_aware, seconds_clock, utc_now
from ._context import request_var
from ._credentials import Credential, read_credential
from ._decision import _DUMMY_DIGEST, decide_key, decide_session, derived, verify_session_digest
from ._errors import AuthError, ErrorCode
from ._fast_path import Charger, LimitedKey, VerifiedKeys
from ._keys import (
    ParsedKey,
    generate_session_token,
    key_family,
    parse_key,
    parse_session_token,
)
from ._manager import validate_project_id
from ._metrics_source import MetricsExporter, MetricsSource
from ._models import (
    AuditEvent,
    IssuedSession,
    Principal,
    RateLimit,
    RateLimitStatus,
    SessionRecord,
    StoredKey,
    ceil_seconds,
    with_rate_limit,
)
from ._request_counts import RequestCounts
from ._scopes import KNOWN_SCOPES, SERVER_SIDE_SCOPES, check_scope_name
from .stores._errors import StoreUnavailable
from .stores._protocol import NOT_CACHED, KeyStore

__all__ = ["DEFAULT_SESSION_TTL", "Authenticator"]

DEFAULT_SESSION_TTL = timedelta(minutes=30)
T = TypeVar("T")
# What a flow the drivers run answers: the principal (or an issued session and its principal)
# and what else the caller needs.
Accepted = TypeVar("Accepted", bound=tuple[Any, ...])
Op = tuple[str, tuple[Any, ...]]
Flow = Generator[Op, Any, T]
ClientIp = str | IPAddress | None
AcceptVerified = Callable[..., Principal | LimitedKey | None]


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
        if not callable(getattr(store, "get_key", None)) or not callable(
            getattr(store, "digest", None)
        ):
            raise TypeError(
                f"store {type(store).__name__} does not implement the KeyStore protocol"
            )
        if not isinstance(session_ttl, timedelta) or session_ttl <= timedelta(0):
            raise ValueError("session_ttl must be a positive timedelta")
        if metrics is not None and not isinstance(metrics, MetricsExporter):
            raise TypeError(
                "metrics must be an exporter from nowramp_auth.metrics, not "
                f"{type(metrics).__name__}"
            )
        self.store = store
        self.clock: Clock = clock or utc_now
        self.audit = AuditEmitter(audit)
        self.trusted_proxies = parse_networks(trusted_proxies)
        if isinstance(widget_scopes, str):
            raise TypeError("widget_scopes must be a list of scopes, not one string")
        self.widget_scopes = (
            KNOWN_SCOPES - SERVER_SIDE_SCOPES
            if widget_scopes is None
            else frozenset(check_scope_name(s) for s in widget_scopes)
        )
        self.session_ttl = session_ttl
        self.audit_successes = audit_successes
        self._request_path_never_blocks = bool(getattr(store, "request_path_never_blocks", False))
        # A store whose current_key answers for every id without I/O (memory): a presented
        # key whose digest matches no record can be refused without the general flow.
        self._authoritative_key: Callable[[str], StoredKey | None] | None = (
            getattr(store, "current_key", None) if self._request_path_never_blocks else None
        )
        self._peek: Callable[[str, tuple[Any, ...]], Any] | None = getattr(store, "peek", None)
        self._verified = _verified_keys(store, clock, audit_successes)
        self._now_seconds = seconds_clock(clock)
        # Refusals of requests that presented a key's secret are counted in its history
        # (written behind with usage) when the store keeps one.
        self._count_refusal: Callable[[str, str, datetime], None] | None = getattr(
            store, "count_refusal", None
        )
        accept: AcceptVerified = (
            self._verified.accept if self._verified is not None else _general_flow_only
        )
        # Metrics: each request counted once, with its final result and time (none when off).
        self._counts: RequestCounts | None = None
        if metrics is not None:
            self._counts = RequestCounts()
            self._counts.hook = metrics.attach(MetricsSource(self._counts, store, self.audit))
            if self._verified is not None:
                accept = self._counts.counting(accept)
        self.accept_verified: AcceptVerified = accept
        """The fast path (see :mod:`nowramp_auth._fast_path`): ``(key bytes, peer address,
        required scopes=())`` to the principal of a key already verified in full, or ``None``
        for the general flow. Adapters call it first; the peer must be the client (no
        forwarding header applies)."""

    def __repr__(self) -> str:
        return f"Authenticator(store={self.store!r})"

    # -- public API ---------------------------------------------------------------------------
    def resolve_client_ip(
        self, peer: str | None, forwarded_for: Iterable[str] = ()
    ) -> IPAddress | None:
        """The client address from the peer and ``X-Forwarded-For`` (see ``trusted_proxies``)."""
        return resolve_client_ip(peer, list(forwarded_for), self.trusted_proxies)

    def authenticate(
        self,
        api_key: str | None,
        *,
        client_ip: ClientIp = None,
        required_scopes: Collection[str] = (),
        method: str | None = None,
        path: str | None = None,
    ) -> Principal:
        """The :class:`Principal` of a valid API key; else raise :class:`AuthError`."""
        principal = self._fast(api_key, client_ip, required_scopes)
        if isinstance(principal, Principal):
            return principal
        if principal is not None:  # a rate-limited key: the one limiter call
            return self.charge(
                principal,
                client_ip=client_ip,
                required_scopes=required_scopes,
                method=method,
                path=path,
            )
        ip = _ip(client_ip)
        return self._run(self._key_flow(api_key, ip, required_scopes), ip, method, path)[0]

    async def authenticate_async(
        self,
        api_key: str | None,
        *,
        client_ip: ClientIp = None,
        required_scopes: Collection[str] = (),
        method: str | None = None,
        path: str | None = None,
    ) -> Principal:
        """Async twin of :meth:`authenticate`; never blocks the event loop on store I/O."""
        principal = self._fast(api_key, client_ip, required_scopes)
        if isinstance(principal, Principal):
            return principal
        if principal is not None:  # a rate-limited key: the one limiter call
            return await self.charge_async(
                principal,
                client_ip=client_ip,
                required_scopes=required_scopes,
                method=method,
                path=path,
            )
        ip = _ip(client_ip)
        flow = self._key_flow(api_key, ip, required_scopes)
        return (await self._run_async(flow, ip, method, path))[0]

    def _fast(
        self, api_key: object, client_ip: ClientIp, required: Collection[str]
    ) -> Principal | LimitedKey | None:
        # The fast path for direct callers; a scope check failing falls through, so the
        # general flow refuses (and audits) and the request is counted once, not twice.
        if type(api_key) is not str or not (client_ip is None or type(client_ip) is str):
            return None
        try:
            raw = api_key.encode("ascii")
        except UnicodeEncodeError:
            return None
        return self.accept_verified(raw, client_ip, required)

    def authenticate_session(
        self,
        token: str | None,
        *,
        required_scopes: Collection[str] = (),
        client_ip: ClientIp = None,
        method: str | None = None,
        path: str | None = None,
    ) -> Principal:
        """The :class:`Principal` (``kind="session"``) of a valid widget session token."""
        ip = _ip(client_ip)
        return self._run(self._session_flow(token, required_scopes), ip, method, path)[0]

    async def authenticate_session_async(
        self,
        token: str | None,
        *,
        required_scopes: Collection[str] = (),
        client_ip: ClientIp = None,
        method: str | None = None,
        path: str | None = None,
    ) -> Principal:
        """Async twin of :meth:`authenticate_session`."""
        ip = _ip(client_ip)
        flow = self._session_flow(token, required_scopes)
        return (await self._run_async(flow, ip, method, path))[0]

    def authenticate_request(
        self,
        api_keys: Sequence[str],
        authorizations: Sequence[str] = (),
        *,
        client_ip: ClientIp = None,
        required_scopes: Collection[str] = (),
        method: str | None = None,
        path: str | None = None,
    ) -> Principal:
        """Authenticate a request from its raw ``X-API-Key`` and ``Authorization`` values
        (what the adapters call): an API key, else a widget session bearer token."""
        ip = _ip(client_ip)
        flow = self._request_flow(api_keys, authorizations, ip, required_scopes, method, path)
        return self._run(flow, ip, method, path)[0]

    async def authenticate_request_async(
        self,
        api_keys: Sequence[str],
        authorizations: Sequence[str] = (),
        *,
        client_ip: ClientIp = None,
        required_scopes: Collection[str] = (),
        method: str | None = None,
        path: str | None = None,
    ) -> Principal:
        """Async twin of :meth:`authenticate_request`."""
        ip = _ip(client_ip)
        flow = self._request_flow(api_keys, authorizations, ip, required_scopes, method, path)
        return (await self._run_async(flow, ip, method, path))[0]

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
        counted = self._counts is not None  # refusals of made-up keys come here: no calls
        started = perf_counter() if counted else 0.0
        parsed = parse_key(api_key.decode("latin-1"))
        if parsed is not None:
            current = self._authoritative_key
            if current is None:
                return parsed
            stored = current(parsed.key_id)
            expected = stored.digest if stored is not None else _DUMMY_DIGEST
            digest = self.store.digest(api_key.decode("latin-1"))
            if compare_digest(expected, digest) and stored is not None:
                return parsed  # the right secret: the general flow checks the rest
            error = AuthError(ErrorCode.INVALID_API_KEY, key_id=parsed.key_id)
            if counted:
                self._note(error, parsed.key_type)
        else:
            error = AuthError(ErrorCode.INVALID_API_KEY)
        self._failed(error, _ip(client_ip), method, path, started)
        return error

    async def authenticate_parsed_async(
        self,
        api_key: str,
        parsed: ParsedKey,
        *,
        client_ip: ClientIp = None,
        required_scopes: Collection[str] = (),
        method: str | None = None,
        path: str | None = None,
    ) -> Principal:
        """The key flow for a key :meth:`parse_presented` has parsed (not parsed again)."""
        ip = _ip(client_ip)
        flow = self._key_flow(api_key, ip, required_scopes, parsed)
        return (await self._run_async(flow, ip, method, path))[0]

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
        started: float | None = None  # counted already, unless below
        counts = self._counts
        if counts is not None:
            context = request_var.get()
            if context is not None and context[1] is self:
                counts.recount(context[0], error)  # counted (and timed) when accepted
            else:
                started = perf_counter()  # a request not counted yet: counted now
        self._failed(error, _ip(client_ip), method, path, started)

    def _refused_after_acceptance(self, principal: Principal, error: AuthError) -> None:
        # A request accepted (and counted) that is refused after all, e.g. a widget-session
        # request with a valid key and a bad body: it counts with that refusal instead.
        if self._counts is not None:
            self._counts.recount(principal, error)

    def create_session(
        self,
        api_key: str | Sequence[str] | None,
        *,
        project_id: str,
        client_ip: ClientIp = None,
        customer_id: str | None = None,
        scopes: Iterable[str] | None = None,
        method: str | None = None,
        path: str | None = None,
        actor: str | None = None,
    ) -> IssuedSession:
        """Create a widget session for ``project_id`` with an API key (its allowlist applies).

        ``api_key`` is the key, or every raw ``X-API-Key`` header value of a request;
        ``actor`` names a person who caused it (e.g. ``"cli"``) in the audit event.

        Raises :class:`AuthError`: the key's own refusals, or ``INSUFFICIENT_PERMISSIONS``
        when the key belongs to another project or lacks a scope asked for.
        """
        ip = _ip(client_ip)
        flow = self._create_session_flow(api_key, ip, project_id, customer_id, scopes, actor)
        return self._run(flow, ip, method, path)[0]

    async def create_session_async(
        self,
        api_key: str | Sequence[str] | None,
        *,
        project_id: str,
        client_ip: ClientIp = None,
        customer_id: str | None = None,
        scopes: Iterable[str] | None = None,
        method: str | None = None,
        path: str | None = None,
        actor: str | None = None,
    ) -> IssuedSession:
        """Async twin of :meth:`create_session`."""
        ip = _ip(client_ip)
        flow = self._create_session_flow(api_key, ip, project_id, customer_id, scopes, actor)
        return (await self._run_async(flow, ip, method, path))[0]

    def revoke_session(self, token: str, *, actor: str | None = None) -> SessionRecord:
        """Revoke a widget session (idempotent). ``AuthError(INVALID_SESSION_TOKEN)`` when the
        token is malformed or unknown. ``actor`` is named in the audit event."""
        parsed = parse_session_token(token)
        if parsed is None:
            raise AuthError(ErrorCode.INVALID_SESSION_TOKEN)
        session = verify_session_digest(
            self._store_call(lambda: self.store.get_session(parsed.session_id)),
            self.store.digest(token),
        )
        revoked = self._store_call(lambda: self.store.revoke_session(session.id, self._now()))
        if revoked is None:
            raise AuthError(ErrorCode.INVALID_SESSION_TOKEN)
        self._emit(
            "session.revoked",
            key_id=session.key_id,
            session_id=session.id,
            project_id=session.project_id,
            actor=actor,
        )
        return revoked

    # -- flows (pure but for the yielded store operations) -----------------------------------
    def _now(self) -> datetime:
        if self.clock is utc_now:
            return datetime.now(UTC)
        return require_aware(self.clock(), "clock()")

    def _key_flow(
        self,
        api_key: object,
        ip: IPAddress | None,
        required: Collection[str],
        parsed: ParsedKey | None = None,
    ) -> Flow[tuple[Principal, StoredKey | None]]:
        # One flat generator: every key not on the fast path comes through here.
        if api_key is None or api_key == "":
            raise AuthError(ErrorCode.MISSING_API_KEY)
        if not isinstance(api_key, str):
            raise AuthError(ErrorCode.INVALID_API_KEY)
        if parsed is None and (parsed := parse_key(api_key)) is None:
            raise AuthError(ErrorCode.INVALID_API_KEY)
        try:
            stored: StoredKey | None = yield ("get_key", (parsed.key_id,))
            now = self._now()
            digest = self.store.digest(api_key)
            principal = decide_key(stored, digest, now, ip, required)
            if self._verified is not None and stored is not None:
                self._verified.remember(
                    api_key.encode("latin-1"), stored, principal, derived(stored.record)[1]
                )
            limit = stored.record.rate_limit if stored is not None else None
            if limit is not None and stored is not None:
                principal = yield from self._limit(principal, stored.record.lineage, limit, now)
        except AuthError as error:
            # What the caller sent showed these (public): for the audit log and metrics.
            error.key_id = error.key_id or parsed.key_id
            self._note(error, parsed.key_type)
            raise
        self.store.record_usage(principal.key_id, now)
        return principal, stored

    def _limit(
        self, principal: Principal, lineage: str, limit: RateLimit, now: datetime
    ) -> Flow[Principal]:
        status: RateLimitStatus = yield ("hit_rate_limit", (lineage, limit, now))
        return _charged(principal, status)

    # -- the limiter call of a verified rate-limited key (see _fast_path.LimitedKey) ----------
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
        started = self._started()
        now = self._now()
        try:
            _check_route_scopes(key, required_scopes)
            status = self.store.hit_rate_limit(key.lineage, key.limit, now)
            principal = _charged(key.principal, status)
        except (AuthError, StoreUnavailable) as exc:
            raise self._charge_refused(exc, key, client_ip, method, path, started) from None
        self._count_charged(key, now.timestamp(), principal, started)
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
        if self._request_path_never_blocks:
            return self.charge(
                key, client_ip=client_ip, required_scopes=required_scopes, method=method, path=path
            )
        # Every request of a rate-limited key on Redis runs this: the scope check, the one
        # limiter call the key's LimitedKey holds (its future, shared with the requests in
        # flight: see the store's pipeline), the principal with the limit's state, one
        # usage append. The clock is read as a float: no datetime on this path.
        started = self._started()
        now = self._now_seconds()
        try:
            _check_route_scopes(key, required_scopes)
            status = await key.charge_async(now)
            principal = _charged(key.principal, status)
        except (AuthError, StoreUnavailable) as exc:
            raise self._charge_refused(exc, key, client_ip, method, path, started) from None
        self._count_charged(key, now, principal, started)
        return principal

    def _count_charged(
        self, key: LimitedKey, now: float, principal: Principal, started: float
    ) -> None:
        # Only the fast path makes a LimitedKey, so it exists; it counts into the key's cell
        # (usage) and, with metrics, as accepted.
        verified = self._verified
        assert verified is not None, "a LimitedKey comes from accept_verified"
        verified.count_charged(key, now)
        if self._counts is not None:
            self._counts.accepted(principal, started)

    def _charge_refused(
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
        self._note(error, key.principal.key_type)
        self._failed(error, ip, method, path, started)
        return error

    def _session_flow(
        self, token: object, required: Collection[str]
    ) -> Flow[tuple[Principal, StoredKey | None]]:
        parsed = parse_session_token(token) if isinstance(token, str) else None
        if parsed is None or not isinstance(token, str):
            raise AuthError(ErrorCode.INVALID_SESSION_TOKEN)
        parent: StoredKey | None = None
        try:
            found: SessionRecord | None = yield ("get_session", (parsed.session_id,))
            session = verify_session_digest(found, self.store.digest(token))
            parent = yield ("get_key", (session.key_id,))
            now = self._now()
            principal = decide_session(session, parent.record if parent else None, now, required)
            limit = parent.record.rate_limit if parent is not None else None
            if limit is not None and parent is not None:
                principal = yield from self._limit(principal, parent.record.lineage, limit, now)
        except AuthError as error:
            # A session's key type is its key's, known once its key is found.
            self._note(error, parent.record.key_type if parent else None, "session")
            raise
        self.store.record_usage(principal.key_id, now)
        return principal, parent

    def _request_flow(
        self,
        api_keys: Sequence[str],
        authorizations: Sequence[str],
        ip: IPAddress | None,
        required: Collection[str],
        method: str | None,
        path: str | None,
    ) -> Flow[tuple[Principal, StoredKey | None]]:
        started = perf_counter() if self._counts is not None else 0.0  # no call when off
        try:
            credential: Credential = read_credential(api_keys, authorizations)
        except AuthError as error:
            self._failed(error, ip, method, path, started)
            raise
        if credential.kind == "session":
            return self._session_flow(credential.value, required)
        return self._key_flow(credential.value, ip, required)

    def _create_session_flow(
        self,
        api_key: str | Sequence[str] | None,
        ip: IPAddress | None,
        project_id: str,
        customer_id: str | None,
        scopes: Iterable[str] | None,
        actor: str | None = None,
    ) -> Flow[tuple[IssuedSession, Principal]]:
        project_id = validate_project_id(project_id, optional=False) or ""
        if customer_id is not None and (not isinstance(customer_id, str) or len(customer_id) > 128):
            raise TypeError("customer_id must be a str of at most 128 characters")
        if api_key is None or isinstance(api_key, str):
            api_key = [api_key] if api_key else []
        credential = read_credential(api_key, ())
        principal, stored = yield from self._key_flow(credential.value, ip, ())
        try:
            if principal.project_id is not None and principal.project_id != project_id:
                raise AuthError(
                    ErrorCode.INSUFFICIENT_PERMISSIONS,
                    detail="The key does not belong to this project.",
                    key_id=principal.key_id,
                    project_id=principal.project_id,
                    verified=True,
                )
            if scopes is None:
                granted = principal.scopes & self.widget_scopes
            else:
                granted = frozenset(scopes)
                if not principal.scopes.issuperset(granted):
                    raise AuthError(
                        ErrorCode.INSUFFICIENT_PERMISSIONS,
                        detail="A session can only get scopes its key holds.",
                        required_scopes=granted - principal.scopes,
                        key_id=principal.key_id,
                        project_id=principal.project_id,
                        verified=True,
                    )
            now = self._now()
            expires_at = now + self.session_ttl
            if stored is not None and stored.record.expires_at is not None:
                expires_at = min(expires_at, stored.record.expires_at)
            token, session_id = generate_session_token(key_family(principal.key_id))
            session = SessionRecord(
                id=session_id,
                key_id=principal.key_id,
                project_id=project_id,
                customer_id=customer_id,
                scopes=granted,
                created_at=now,
                expires_at=expires_at,
                revoked_at=None,
                digest=self.store.digest(token),
            )
            yield ("insert_session", (session,))
        except AuthError as error:
            self._note(error, principal.key_type)  # a refusal of this key: its type
            raise
        self._emit(
            "session.created",
            key_id=principal.key_id,
            session_id=session_id,
            project_id=project_id,
            client_ip=ip,
            actor=actor,
        )
        issued = IssuedSession(token, session_id, expires_at, project_id, granted, customer_id)
        return issued, principal

    # -- drivers ------------------------------------------------------------------------------
    def _run(
        self, flow: Flow[Accepted], ip: IPAddress | None, method: str | None, path: str | None
    ) -> Accepted:
        started = self._started()
        try:
            op = next(flow)
            while True:
                name, args = op
                try:
                    result = getattr(self.store, name)(*args)
                except StoreUnavailable:
                    result = _UNAVAILABLE
                op = flow.send(result) if result is not _UNAVAILABLE else _unavailable(flow)
        except StopIteration as stop:
            value: Accepted = stop.value
            self._accepted(value, ip, method, path, started)
            return value
        except AuthError as error:
            self._failed(error, ip, method, path, started)
            raise

    async def _run_async(
        self, flow: Flow[Accepted], ip: IPAddress | None, method: str | None, path: str | None
    ) -> Accepted:
        if self._request_path_never_blocks:
            # An in-process store has nothing to await: skip the coroutine machinery.
            return self._run(flow, ip, method, path)
        peek = self._peek
        started = self._started()
        try:
            op = next(flow)
            while True:
                name, args = op
                # A cached answer needs no await (and no coroutine) at all.
                result = peek(name, args) if peek is not None else NOT_CACHED
                if result is NOT_CACHED:
                    call: Callable[..., Awaitable[Any]] = getattr(self.store, name + "_async")
                    try:
                        result = await call(*args)
                    except StoreUnavailable:
                        result = _UNAVAILABLE
                op = flow.send(result) if result is not _UNAVAILABLE else _unavailable(flow)
        except StopIteration as stop:
            value: Accepted = stop.value
            self._accepted(value, ip, method, path, started)
            return value
        except AuthError as error:
            self._failed(error, ip, method, path, started)
            raise

    def _note(self, error: AuthError, key_type: str | None, credential: str | None = None) -> None:
        # What the request presented, on its refusal, for metrics: only when they are on (an
        # attribute more on every refusal would cost it about 0.1 µs otherwise).
        if self._counts is not None:
            error.key_type = key_type
            if credential is not None:
                error.credential = credential

    def _started(self) -> float:
        # When a request's authentication began, for metrics (no clock read when they are off).
        return perf_counter() if self._counts is not None else 0.0

    def _store_call(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except StoreUnavailable:
            raise AuthError(ErrorCode.AUTH_UNAVAILABLE, retry_after=1) from None

    # -- audit --------------------------------------------------------------------------------
    def _emit(self, type_: str, *, client_ip: IPAddress | None = None, **fields: Any) -> None:
        if self.audit:
            ip = ip_text(client_ip)
            self.audit.emit(AuditEvent(type_, self._now(), client_ip=ip, **fields))

    def _accepted(
        self,
        value: Accepted,
        ip: IPAddress | None,
        method: str | None,
        path: str | None,
        started: float,
    ) -> None:
        # The end of every accepted flow: counted (metrics), audited when asked.
        if self._counts is not None:
            self._counts.accepted(value[0] if type(value[0]) is Principal else value[1], started)
        if self.audit_successes:
            self._succeeded(value, ip, method, path)

    def _failed(
        self,
        error: AuthError,
        ip: IPAddress | str | None,
        method: str | None,
        path: str | None,
        started: float | None,
    ) -> None:
        # Every refused request ends here once: counted with its time when metrics are on
        # (``started`` is None when it was counted already: see audit_refusal), and audited:
        # auth.failed is the event of every refused request, raw fields, no event object
        # unless a sink needs one (see AuditEmitter.emit_failure).
        if started is not None and self._counts is not None:
            self._counts.refused(error, started)
        if error.verified and error.key_id is not None and self._count_refusal is not None:
            self._count_refusal(error.key_id, error.code.value, self._now())
        if self.audit:
            self.audit.emit_failure(
                self._now_seconds(),
                error.key_id,
                error.code.value,
                ip_text(ip),
                method,
                path,
                error.project_id,
            )

    def _succeeded(
        self, value: object, ip: IPAddress | None, method: str | None, path: str | None
    ) -> None:
        if isinstance(value, tuple):
            value = value[0]
        if isinstance(value, Principal):
            self._emit(
                "auth.succeeded",
                key_id=value.key_id,
                client_ip=ip,
                method=method,
                path=path,
                session_id=value.session_id,
                project_id=value.project_id,
            )


_FAST_PATH_HOOKS = ("current_key", "usage_cell", "fold_usage")


def _check_route_scopes(key: LimitedKey, required: Collection[str]) -> None:
    # Before the limiter call: a request refused for scopes spends nothing.
    if required and not key.principal.scopes.issuperset(required):
        raise AuthError(
            ErrorCode.INSUFFICIENT_PERMISSIONS,
            required_scopes=required,
            key_id=key.principal.key_id,
            project_id=key.principal.project_id,
            verified=True,
        )


def _charged(principal: Principal, status: RateLimitStatus) -> Principal:
    # The principal with its limit's state, or the refusal when the limit is used up.
    if not status.allowed:
        raise AuthError(
            ErrorCode.RATE_LIMITED,
            retry_after=ceil_seconds(timedelta(seconds=status.retry_after_seconds)),
            key_id=principal.key_id,
            rate_limit=status,
            project_id=principal.project_id,
            verified=True,
        )
    return with_rate_limit(principal, status)


def _verified_keys(
    store: KeyStore, clock: Clock | None, audit_successes: bool
) -> VerifiedKeys | None:
    # The fast path needs the store's no-I/O hooks; a store without them (or audited
    # successes, which the general flow emits) always takes the general flow.
    hooks: list[Any] = [getattr(store, name, None) for name in _FAST_PATH_HOOKS]
    if audit_successes or not all(callable(hook) for hook in hooks):
        return None
    current, cell, fold = hooks
    charger = getattr(store, "rate_charger", None)
    return VerifiedKeys(current, seconds_clock(clock), cell, fold, charger or _charger_of(store))


def _charger_of(store: KeyStore) -> Callable[[str, RateLimit], Charger]:
    # A store without its own ``rate_charger``: each call goes through hit_rate_limit_async.
    def charger(lineage: str, limit: RateLimit) -> Charger:
        def charge(now: float) -> Awaitable[RateLimitStatus]:
            hit = store.hit_rate_limit_async  # type: ignore[attr-defined]
            status: Awaitable[RateLimitStatus] = hit(
                lineage, limit, datetime.fromtimestamp(now, UTC)
            )
            return status

        return charge

    return charger


def _general_flow_only(*_args: object) -> None:
    return None


_UNAVAILABLE = object()
"""What a driver hands on when a store operation failed (see :func:`_unavailable`)."""


def _unavailable(flow: Flow[Any]) -> Op:
    # The store could not answer: AUTH_UNAVAILABLE, raised inside the flow (which adds what it
    # knows of the credential) and outside the driver's except block (no chained cause).
    return flow.throw(AuthError(ErrorCode.AUTH_UNAVAILABLE, retry_after=1))


def _ip(client_ip: ClientIp) -> IPAddress | None:
    if client_ip is None or not isinstance(client_ip, str):
        return client_ip
    return parse_ip(client_ip)
