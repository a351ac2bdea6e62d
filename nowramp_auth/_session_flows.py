"""Widget session flows: create a session with an API key, authenticate its bearer token,
revoke it.

Security model: a session token is checked like a key (format, digest in constant time, then
state); a session dies with its lifetime, its revocation, and its parent key's revocation or
expiry; its calls count against its parent key's rate limit. The parent key's IP allowlist
applies to creating a session, not to the session's own calls (they come from browsers).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import timedelta

from ._budgets import limits_to_charge, with_cost
from ._client_ip import IPAddress
from ._credentials import read_credential
from ._decision import decide_session, verify_session_digest
from ._errors import AuthError, ErrorCode
from ._flow_driver import Flow, store_call
from ._key_flows import KeyFlows, limit_step
from ._keys import generate_session_token, key_family, parse_session_token
from ._manager import validate_project_id
from ._models import IssuedSession, Principal, SessionRecord, StoredKey
from ._outcomes import Outcomes
from ._route_scopes import cost_of
from .stores._protocol import KeyStore

__all__ = ["SessionFlows"]


class SessionFlows:
    """The widget-session flows of one authenticator."""

    def __init__(
        self,
        store: KeyStore,
        outcomes: Outcomes,
        keys: KeyFlows,
        *,
        widget_scopes: frozenset[str],
        ttl: timedelta,
    ) -> None:
        self.store = store
        self.outcomes = outcomes
        self._keys = keys
        self.widget_scopes = widget_scopes
        self.session_ttl = ttl

    def request_flow(
        self,
        api_keys: Sequence[str],
        authorizations: Sequence[str],
        ip: IPAddress | None,
        required: Collection[str],
        method: str | None,
        path: str | None,
    ) -> Flow[tuple[Principal, StoredKey | None]]:
        """A request's flow from its raw ``X-API-Key`` and ``Authorization`` values: an API
        key, else a widget session's bearer token."""
        started = self.outcomes.started()
        try:
            credential = read_credential(api_keys, authorizations)
        except AuthError as error:
            self.outcomes.failed(error, ip, method, path, started)
            raise
        if credential.kind == "session":
            return self.session_flow(credential.value, required)
        return self._keys.key_flow(credential.value, ip, required)

    def session_flow(
        self, token: object, required: Collection[str]
    ) -> Flow[tuple[Principal, StoredKey | None]]:
        """A bearer token's flow: the session, its parent key, the decision, the limit."""
        parsed = parse_session_token(token) if isinstance(token, str) else None
        if parsed is None or not isinstance(token, str):
            raise AuthError(ErrorCode.INVALID_SESSION_TOKEN)
        parent: StoredKey | None = None
        try:
            found: SessionRecord | None = yield ("get_session", (parsed.session_id,))
            session = verify_session_digest(found, self.store.digest(token))
            parent = yield ("get_key", (session.key_id,))
            now = self.outcomes.now()
            principal = decide_session(session, parent.record if parent else None, now, required)
            limit = limits_to_charge(parent.record) if parent is not None else None
            if limit is not None and parent is not None:
                limit = with_cost(limit, cost_of(required))
                principal = yield from limit_step(principal, parent.record.lineage, limit, now)
        except AuthError as error:
            # A session's key type is its key's, known once its key is found.
            self.outcomes.note(error, parent.record.key_type if parent else None, "session")
            raise
        self.store.record_usage(principal.key_id, now)
        return principal, parent

    def create_flow(
        self,
        api_key: str | Sequence[str] | None,
        ip: IPAddress | None,
        project_id: str,
        customer_id: str | None,
        scopes: Iterable[str] | None,
        actor: str | None = None,
    ) -> Flow[tuple[IssuedSession, Principal]]:
        """Verify the key (its allowlist applies), then issue a session of its project."""
        project_id = validate_project_id(project_id, optional=False) or ""
        if customer_id is not None and (not isinstance(customer_id, str) or len(customer_id) > 128):
            raise TypeError("customer_id must be a str of at most 128 characters")
        if api_key is None or isinstance(api_key, str):
            api_key = [api_key] if api_key else []
        credential = read_credential(api_key, ())
        principal, stored = yield from self._keys.key_flow(credential.value, ip, ())
        try:
            granted = self._granted(principal, project_id, scopes)
            now = self.outcomes.now()
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
            self.outcomes.note(error, principal.key_type)  # a refusal of this key: its type
            raise
        self.outcomes.emit(
            "session.created",
            key_id=principal.key_id,
            session_id=session_id,
            project_id=project_id,
            client_ip=ip,
            actor=actor,
        )
        issued = IssuedSession(token, session_id, expires_at, project_id, granted, customer_id)
        return issued, principal

    def _granted(
        self, principal: Principal, project_id: str, scopes: Iterable[str] | None
    ) -> frozenset[str]:
        # The scopes a session of this key gets in this project, or the refusal.
        if principal.project_id is not None and principal.project_id != project_id:
            raise _refusal(principal, "The key does not belong to this project.")
        if scopes is None:
            return principal.scopes & self.widget_scopes
        granted = frozenset(scopes)
        if not principal.scopes.issuperset(granted):
            missing = granted - principal.scopes
            raise _refusal(principal, "A session can only get scopes its key holds.", missing)
        return granted

    def revoke(self, token: str, *, actor: str | None = None) -> SessionRecord:
        """Revoke a widget session (idempotent); ``INVALID_SESSION_TOKEN`` when unknown."""
        parsed = parse_session_token(token)
        if parsed is None:
            raise AuthError(ErrorCode.INVALID_SESSION_TOKEN)
        session = verify_session_digest(
            store_call(lambda: self.store.get_session(parsed.session_id)),
            self.store.digest(token),
        )
        now = self.outcomes.now()
        revoked = store_call(lambda: self.store.revoke_session(session.id, now))
        if revoked is None:
            raise AuthError(ErrorCode.INVALID_SESSION_TOKEN)
        self.outcomes.emit(
            "session.revoked",
            key_id=session.key_id,
            session_id=session.id,
            project_id=session.project_id,
            actor=actor,
        )
        return revoked


def _refusal(
    principal: Principal, detail: str, missing: Collection[str] | None = None
) -> AuthError:
    # INSUFFICIENT_PERMISSIONS for a session its (verified) key may not create.
    return AuthError(
        ErrorCode.INSUFFICIENT_PERMISSIONS,
        detail=detail,
        required_scopes=missing,
        key_id=principal.key_id,
        project_id=principal.project_id,
        verified=True,
    )
