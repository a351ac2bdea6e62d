"""Scope registry and checks (pure).

A scope is ``resource:action``. ``write`` does not imply ``read``: a request passes only when
the credential holds every required scope, compared as exact strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["KNOWN_SCOPES", "SERVER_SIDE_SCOPES", "ScopeRegistry", "check_scope_name"]

KNOWN_SCOPES: frozenset[str] = frozenset(
    f"{resource}:{action}"
    for resource in ("quotes", "orders", "customers", "wallets", "kyc", "webhooks")
    for action in ("read", "write")
)
"""The twelve NowRamp partner-API scopes."""

SERVER_SIDE_SCOPES: frozenset[str] = frozenset({"webhooks:read", "webhooks:write"})
"""Scopes a widget session never gets unless asked for explicitly."""

_SCOPE_RE = re.compile(r"[a-z][a-z0-9_.-]{0,63}:[a-z][a-z0-9_.-]{0,63}")


def check_scope_name(scope: object) -> str:
    """Return ``scope`` if it is a well-formed name; else ``ValueError`` (or ``TypeError``)."""
    if not isinstance(scope, str):
        raise TypeError(f"scope must be a str, got {type(scope).__name__}")
    if not _SCOPE_RE.fullmatch(scope):
        raise ValueError(f"malformed scope {scope!r}: expected 'resource:action'")
    return scope


class ScopeRegistry:
    """The set of scopes keys may hold. Starts with :data:`KNOWN_SCOPES` unless given others.

    Example::

        registry = ScopeRegistry()
        registry.register("reports:read")
    """

    def __init__(self, scopes: Iterable[str] | None = None) -> None:
        self._scopes: set[str] = set()
        self.register(*(KNOWN_SCOPES if scopes is None else scopes))

    def register(self, *scopes: str) -> None:
        """Allow more scopes (for an application's own routes)."""
        for scope in scopes:
            self._scopes.add(check_scope_name(scope))

    @property
    def scopes(self) -> frozenset[str]:
        """Every registered scope."""
        return frozenset(self._scopes)

    def validate(self, scopes: Iterable[str]) -> frozenset[str]:
        """Return ``scopes`` as a frozenset; ``ValueError`` naming the first unknown scope."""
        if isinstance(scopes, str):
            raise TypeError("scopes must be a list of strings, not one string")
        result = frozenset(scopes)
        for scope in sorted(result, key=str):
            check_scope_name(scope)
            if scope not in self._scopes:
                raise ValueError(
                    f"unknown scope {scope!r}; known scopes: {' '.join(sorted(self._scopes))}"
                )
        return result

    def __contains__(self, scope: object) -> bool:
        return scope in self._scopes
