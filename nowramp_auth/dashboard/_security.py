"""Dashboard sign-in checks: the operator password and CSRF tokens, in constant time.

Security model: the operator's ``admin_password`` has no default and is compared as a
digest in constant time; built-in accounts are argon2id hashes (:mod:`nowramp_auth._accounts`).
Sign-in is throttled per client address in the key store, counted before the password is
checked. Sessions live in the key store behind an opaque random cookie (HttpOnly,
SameSite=Strict; :mod:`._sessions`). Every state-changing form carries a CSRF token. No
secret ever travels in a URL.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["check_password", "csrf_matches"]


def check_password(configured: str, presented: str) -> bool:
    """Constant-time comparison of the presented password with the configured one."""
    a = hashlib.sha256(configured.encode()).digest()
    b = hashlib.sha256(presented.encode("utf-8", "replace")).digest()
    return hmac.compare_digest(a, b)


def csrf_matches(expected: str, presented: object) -> bool:
    """The form's CSRF token matches ``expected`` (constant time)."""
    if not isinstance(presented, str):
        return False
    return hmac.compare_digest(expected.encode(), presented.encode("utf-8", "replace"))
