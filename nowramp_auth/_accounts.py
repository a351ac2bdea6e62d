"""Dashboard users and the built-in sign-in accounts kept in the key store.

A partner (``DashboardUser.project_ids`` a set) manages its projects' keys; an operator
(``None``) every project. Accounts hold an argon2id hash of the password (``argon2-cffi``),
never the password; an unknown name is checked against a dummy hash, so a sign-in takes as
long whether the account exists or not.

Each account carries a session epoch, a random value replaced by every password change: a
dashboard session remembers the epoch it signed in under and ends when it no longer matches,
so a password change (like ``disable`` and ``remove``) signs the account out everywhere.
Names are unique regardless of case, and none may be the operator shortcut's ``admin``.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ._clock import utc_now
from ._manager import validate_project_id

__all__ = [
    "ACCOUNT_KIND",
    "MIN_PASSWORD_LENGTH",
    "OPERATOR_ADMIN",
    "Account",
    "Accounts",
    "DashboardUser",
]

ACCOUNT_KIND = "account"
MIN_PASSWORD_LENGTH = 12
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


@dataclass(frozen=True, slots=True)
class DashboardUser:
    """A person using the dashboard.

    Parameters:
        id: a stable identifier (named in audit events as ``AuditEvent.actor``).
        name: what the dashboard shows.
        project_ids: the projects whose keys the user manages, or ``None`` for an operator
            (every project, and keys without a project).
    """

    id: str
    name: str
    project_ids: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id or len(self.id) > 200:
            raise TypeError("DashboardUser.id must be a non-empty str of at most 200 characters")
        if not isinstance(self.name, str):
            raise TypeError("DashboardUser.name must be a str")
        projects = self.project_ids
        if projects is not None:
            if isinstance(projects, str) or not all(isinstance(p, str) for p in projects):
                raise TypeError("DashboardUser.project_ids must be a frozenset of str, or None")
            object.__setattr__(self, "project_ids", frozenset(projects))

    @property
    def is_operator(self) -> bool:
        """True for an operator (every project)."""
        return self.project_ids is None

    def manages(self, project_id: str | None) -> bool:
        """Whether the user may see and change keys (and events) of ``project_id``."""
        return self.project_ids is None or (
            project_id is not None and project_id in self.project_ids
        )


OPERATOR_ADMIN = DashboardUser("admin", "Administrator", None)
"""The operator signed in with ``admin_password=``."""


class DashboardStateStore(Protocol):
    """What accounts, dashboard sessions and the sign-in throttle need of a key store (the
    memory, Redis and PostgreSQL stores have it)."""

    def put_dashboard_item(self, kind: str, item_id: str, value: str, ttl: float | None) -> None:
        """Store a value (for ``ttl`` seconds, or kept)."""

    def get_dashboard_item(self, kind: str, item_id: str) -> str | None:
        """A stored value, or ``None``."""

    def delete_dashboard_item(self, kind: str, item_id: str) -> bool:
        """Remove a value; whether it was there."""

    def dashboard_item_ids(self, kind: str) -> list[str]:
        """The ids of the kept items of a kind."""

    def take_attempt(self, bucket: str, limit: int, window: float) -> str | None:
        """Take one of ``limit`` slots per ``window`` seconds of ``bucket`` atomically (the
        sign-in throttle): a ticket naming it, or ``None`` when all are taken."""

    def return_attempt(self, bucket: str, ticket: str) -> None:
        """Give back the slot ``ticket`` names."""


@dataclass(frozen=True, slots=True)
class Account:
    """A built-in dashboard account (what ``accounts list`` shows; no hash)."""

    name: str
    project_ids: frozenset[str] | None
    disabled: bool
    created_at: datetime

    def user(self) -> DashboardUser:
        """The dashboard user this account signs in as."""
        return DashboardUser(self.name, self.name, self.project_ids)


def _hasher() -> Any:
    try:
        from argon2 import PasswordHasher
    except ImportError:  # pragma: no cover - the dashboard and cli extras install it
        raise ImportError("dashboard accounts need argon2-cffi: pip install argon2-cffi") from None
    return PasswordHasher()  # argon2id, the library's recommended parameters


class Accounts:
    """The built-in accounts of a key store: add, list, change password, disable, remove,
    and verify a sign-in."""

    def __init__(self, store: DashboardStateStore) -> None:
        for method in ("put_dashboard_item", "get_dashboard_item", "dashboard_item_ids"):
            if not callable(getattr(store, method, None)):
                raise TypeError(f"store {type(store).__name__} cannot keep dashboard accounts")
        self.store = store
        self._hash = _hasher()
        self._dummy = self._hash.hash("not a password of anyone")

    @staticmethod
    def _check_name(name: str) -> str:
        if (
            not isinstance(name, str)
            or not _NAME.fullmatch(name)
            or name.casefold() == OPERATOR_ADMIN.id
        ):
            raise ValueError(
                "account name must be 1-64 letters, digits or _.@- (and not 'admin', the "
                "admin_password sign-in)"
            )
        return name

    @staticmethod
    def _check_password(password: str) -> str:
        if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
            raise ValueError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
        return password

    def _load(self, name: str) -> dict[str, Any] | None:
        raw = self.store.get_dashboard_item(ACCOUNT_KIND, name)
        return json.loads(raw) if raw is not None else None

    def _save(self, data: dict[str, Any]) -> None:
        self.store.put_dashboard_item(ACCOUNT_KIND, data["name"], json.dumps(data), None)

    @staticmethod
    def _account(data: dict[str, Any]) -> Account:
        projects = data["projects"]
        return Account(
            data["name"],
            frozenset(projects) if projects is not None else None,
            bool(data["disabled"]),
            datetime.fromisoformat(data["created"]),
        )

    def add(self, name: str, password: str, project_ids: frozenset[str] | None) -> Account:
        """A new account: a partner of ``project_ids`` (at least one), or an operator
        (``None``). ``ValueError`` when the name is taken or a value is invalid."""
        self._check_name(name)
        self._check_password(password)
        if project_ids is not None:
            project_ids = frozenset(project_ids)
            if not project_ids:
                raise ValueError("a partner account needs at least one project")
            for project_id in project_ids:  # as keys' project ids are checked
                validate_project_id(project_id, optional=False)
        taken = {n.casefold() for n in self.store.dashboard_item_ids(ACCOUNT_KIND)}
        if name.casefold() in taken:
            raise ValueError(f"account {name} already exists (names ignore case)")
        data = {
            "name": name,
            "hash": self._hash.hash(password),
            "projects": sorted(project_ids) if project_ids is not None else None,
            "disabled": False,
            "created": utc_now().isoformat(),
            "epoch": secrets.token_hex(8),
        }
        self._save(data)
        return self._account(data)

    def list(self) -> list[Account]:
        """Every account, by name."""
        found = (self._load(name) for name in self.store.dashboard_item_ids(ACCOUNT_KIND))
        return [self._account(data) for data in found if data is not None]

    def _require(self, name: str) -> dict[str, Any]:
        data = self._load(name) if isinstance(name, str) else None
        if data is None:
            raise KeyError(name)
        return data

    def set_password(self, name: str, password: str) -> None:
        """Change an account's password; every session of the account ends (on every
        instance, at its next request). ``KeyError`` for an unknown name."""
        data = self._require(name)
        data["hash"] = self._hash.hash(self._check_password(password))
        data["epoch"] = secrets.token_hex(8)
        self._save(data)

    def disable(self, name: str) -> None:
        """Refuse every later sign-in of the account (its data stays)."""
        data = self._require(name)
        data["disabled"] = True
        self._save(data)

    def remove(self, name: str) -> None:
        """Delete the account. ``KeyError`` for an unknown name."""
        self._require(name)
        self.store.delete_dashboard_item(ACCOUNT_KIND, name)

    def enabled(self, name: str) -> bool:
        """Whether ``name`` is an account that may sign in."""
        data = self._load(name) if isinstance(name, str) and _NAME.fullmatch(name) else None
        return data is not None and not data["disabled"]

    def session_epoch(self, name: str) -> str | None:
        """The epoch a session of ``name`` must carry to stay valid, or ``None`` when the
        account cannot sign in (unknown or disabled)."""
        data = self._load(name) if isinstance(name, str) and _NAME.fullmatch(name) else None
        if data is None or data["disabled"]:
            return None
        return str(data.get("epoch", ""))

    def verify(self, name: object, password: object) -> DashboardUser | None:
        """The user of a correct sign-in of an enabled account, else ``None`` (the same work
        whether or not the account exists)."""
        signed_in = self.sign_in(name, password)
        return signed_in[0] if signed_in is not None else None

    def sign_in(self, name: object, password: object) -> tuple[DashboardUser, str] | None:
        """Like :meth:`verify`, with the account's session epoch read in the same load."""
        from argon2.exceptions import InvalidHashError, VerificationError

        data = self._load(name) if isinstance(name, str) and _NAME.fullmatch(name) else None
        secret = password if isinstance(password, str) else ""
        try:
            self._hash.verify(data["hash"] if data else self._dummy, secret)
        except (VerificationError, InvalidHashError):
            return None
        if data is None or data["disabled"]:
            return None
        return self._account(data).user(), str(data.get("epoch", ""))
