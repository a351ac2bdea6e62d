"""Who uses the dashboard: partners (their projects' keys) and operators (every project).

In ``identify=`` mode the host app says who is signed in; the dashboard then binds its CSRF
tokens to that user with a double-submit cookie, so any instance can check a form another
instance rendered (no per-process secret).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from .._accounts import DashboardUser

__all__ = ["IdentityCsrf", "Viewer"]


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in user of one request, as pages see it."""

    user: DashboardUser
    csrf_token: str
    signs_out: bool  # a sign-out button (built-in sign-in only)


class IdentityCsrf:
    """CSRF tokens for ``identify=`` mode: a random token in an HttpOnly, SameSite=Strict
    cookie, echoed by every form, and bound to the user it was issued for."""

    cookie = "nowramp_dashboard_csrf"

    def __init__(self, secret: bytes | None = None) -> None:
        # With a secret shared by every instance (``secret_key=``), a token cannot even be
        # computed by someone who knows the user's id; without one it is a plain hash.
        self._secret = secret

    def _binding(self, nonce: str, user: DashboardUser) -> str:
        message = f"{nonce}\0{user.id}".encode()
        if self._secret is not None:
            return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]
        return hashlib.sha256(message).hexdigest()[:32]

    def token_for(self, user: DashboardUser, cookie: str | None) -> tuple[str, bool]:
        """The user's token: the cookie's when it was issued to this user, else a new one
        (``True``: set the cookie)."""
        if cookie and self.valid(user, cookie):
            return cookie, False
        nonce = secrets.token_urlsafe(24)
        return f"{nonce}.{self._binding(nonce, user)}", True

    def valid(self, user: DashboardUser, token: str) -> bool:
        """The token was issued to ``user`` (its binding matches)."""
        if not isinstance(token, str) or len(token) > 200 or "." not in token:
            return False
        nonce, _, binding = token.partition(".")
        return hmac.compare_digest(binding.encode(), self._binding(nonce, user).encode())

    def check(self, user: DashboardUser, cookie: str | None, presented: object) -> bool:
        """A form's token equals the cookie's, and both were issued to ``user``."""
        if not cookie or not isinstance(presented, str) or not self.valid(user, cookie):
            return False
        return hmac.compare_digest(cookie.encode(), presented.encode("utf-8", "replace"))
