"""Dashboard sign-in, sessions and CSRF (framework-light, testable).

Security model: the operator configures the admin password (there is no default). Sign-in
compares digests in constant time and is throttled per client address. A session is a random
id kept server-side (so sign-out really ends it) and sent as a signed, HttpOnly,
SameSite=Strict cookie. Every state-changing form carries the session's CSRF token, compared
in constant time. No secret ever travels in a URL.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, TimestampSigner

__all__ = ["AdminSessions", "DashboardSession", "LoginThrottle", "check_password"]

MIN_PASSWORD_LENGTH = 12


def check_password(configured: str, presented: str) -> bool:
    """Constant-time comparison of the presented password with the configured one."""
    a = hashlib.sha256(configured.encode()).digest()
    b = hashlib.sha256(presented.encode("utf-8", "replace")).digest()
    return hmac.compare_digest(a, b)


@dataclass(frozen=True, slots=True)
class DashboardSession:
    """A signed-in admin session."""

    id: str
    csrf_token: str
    expires: float


class AdminSessions:
    """Server-side sessions behind signed cookies."""

    def __init__(self, secret_key: str | bytes, max_age: float) -> None:
        self._signer = TimestampSigner(secret_key, salt="nowramp-dashboard-session")
        self._max_age = max_age
        self._sessions: dict[str, DashboardSession] = {}
        self._lock = threading.Lock()

    def start(self) -> tuple[DashboardSession, str]:
        """A new session and its cookie value."""
        session = DashboardSession(
            secrets.token_urlsafe(24), secrets.token_urlsafe(24), time.monotonic() + self._max_age
        )
        with self._lock:
            now = time.monotonic()
            for sid in [s for s, v in self._sessions.items() if v.expires < now]:
                del self._sessions[sid]
            self._sessions[session.id] = session
        return session, self._signer.sign(session.id).decode()

    def find(self, cookie: str | None) -> DashboardSession | None:
        """The live session a cookie names, or ``None``."""
        if not cookie or len(cookie) > 512:
            return None
        try:
            sid = self._signer.unsign(cookie, max_age=int(self._max_age)).decode()
        except (BadSignature, UnicodeDecodeError):
            return None
        session = self._sessions.get(sid)
        if session is None or session.expires < time.monotonic():
            return None
        return session

    def end(self, session: DashboardSession) -> None:
        """Sign out."""
        with self._lock:
            self._sessions.pop(session.id, None)

    @staticmethod
    def csrf_ok_token(expected: str, presented: object) -> bool:
        """The form's CSRF token matches ``expected`` (constant time)."""
        if not isinstance(presented, str):
            return False
        return hmac.compare_digest(expected.encode(), presented.encode())

    @staticmethod
    def csrf_ok(session: DashboardSession, presented: object) -> bool:
        """The form's CSRF token matches the session's (constant time)."""
        if not isinstance(presented, str):
            return False
        return hmac.compare_digest(session.csrf_token.encode(), presented.encode())


class LoginThrottle:
    """At most ``attempts`` failed sign-ins per client address per ``window`` seconds.

    An attempt is counted when it is made, before the password is checked (:meth:`attempt`),
    and handed back only when the password was right (:meth:`succeeded`). So requests that
    all arrive at once, or that send their bodies after every header, cannot all be checked:
    the sixth concurrent attempt is refused like the sixth failed one.
    """

    def __init__(self, attempts: int = 5, window: float = 60.0) -> None:
        self.attempts = attempts
        self.window = window
        self._attempts: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def attempt(self, client: str) -> bool:
        """Count an attempt from ``client``; ``False`` (and nothing counted) when it is over
        its allowance."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._attempts.get(client, ()) if t > now - self.window]
            if len(recent) >= self.attempts:
                self._attempts[client] = recent
                return False
            if len(self._attempts) > 10_000:
                self._attempts.clear()
            recent.append(now)
            self._attempts[client] = recent
            return True

    def succeeded(self, client: str) -> None:
        """The attempt just counted for ``client`` had the right password: hand it back."""
        with self._lock:
            recent = self._attempts.get(client)
            if recent:
                recent.pop()
