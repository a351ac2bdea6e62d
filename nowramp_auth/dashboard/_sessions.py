"""Dashboard sign-in sessions kept in the key store, so every instance serves every user.

The cookie holds an opaque random value (256 bits); the store keeps the session under the
SHA-256 of that value (never the value itself), with the user, its CSRF token and the times
it started and was last seen. A session ends after ``idle`` seconds without a request, at
``absolute`` seconds after sign-in whatever happens, or when the user signs out (on every
instance at once). No per-process signing secret is involved.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass

from .._accounts import DashboardStateStore, DashboardUser

__all__ = ["SESSION_KIND", "DashboardSession", "StoreSessions"]

SESSION_KIND = "session"
_TOUCH_EVERY = 60.0  # seconds: how often a request refreshes the idle deadline in the store


@dataclass(frozen=True, slots=True)
class DashboardSession:
    """A signed-in user's session."""

    user: DashboardUser
    csrf_token: str
    created: float  # epoch seconds
    seen: float
    account_epoch: str = ""  # the account's session epoch at sign-in (see _accounts)


class StoreSessions:
    """Sessions of one dashboard, in a key store."""

    def __init__(self, store: DashboardStateStore, *, idle: float, absolute: float) -> None:
        if not 0 < idle <= absolute:
            raise ValueError("session idle timeout must be positive and at most the maximum age")
        self.store = store
        self.idle = idle
        self.absolute = absolute

    @staticmethod
    def _id(cookie: str) -> str:
        return hashlib.sha256(cookie.encode()).hexdigest()

    def _save(self, session_id: str, session: DashboardSession) -> None:
        user = session.user
        data = {
            "user": user.id,
            "name": user.name,
            "projects": sorted(user.project_ids) if user.project_ids is not None else None,
            "csrf": session.csrf_token,
            "created": session.created,
            "seen": session.seen,
            "epoch": session.account_epoch,
        }
        ttl = min(self.idle, session.created + self.absolute - session.seen)
        self.store.put_dashboard_item(SESSION_KIND, session_id, json.dumps(data), max(ttl, 0.001))

    def start(self, user: DashboardUser, account_epoch: str = "") -> tuple[DashboardSession, str]:
        """A new session for ``user`` (signed in under ``account_epoch``) and its cookie
        value."""
        cookie = secrets.token_urlsafe(32)
        now = time.time()
        session = DashboardSession(user, secrets.token_urlsafe(24), now, now, account_epoch)
        self._save(self._id(cookie), session)
        return session, cookie

    def find(self, cookie: str | None) -> DashboardSession | None:
        """The live session a cookie names, or ``None``; refreshes its idle deadline."""
        if not cookie or len(cookie) > 128:
            return None
        session_id = self._id(cookie)
        raw = self.store.get_dashboard_item(SESSION_KIND, session_id)
        if raw is None:
            return None
        data = json.loads(raw)
        now = time.time()
        if now >= data["created"] + self.absolute or now >= data["seen"] + self.idle:
            self.store.delete_dashboard_item(SESSION_KIND, session_id)
            return None
        projects = data["projects"]
        user = DashboardUser(
            data["user"], data["name"], frozenset(projects) if projects is not None else None
        )
        epoch = str(data.get("epoch", ""))
        session = DashboardSession(user, data["csrf"], data["created"], data["seen"], epoch)
        if now - session.seen >= _TOUCH_EVERY:
            session = DashboardSession(user, session.csrf_token, session.created, now, epoch)
            self._save(session_id, session)
        return session

    def end(self, cookie: str | None) -> None:
        """Sign out: the session ends on every instance."""
        if cookie and len(cookie) <= 128:
            self.store.delete_dashboard_item(SESSION_KIND, self._id(cookie))
