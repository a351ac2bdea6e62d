"""Dashboard state in Redis: accounts, sign-in sessions and sign-in throttle slots.

Security model: values are what the dashboard hands over (argon2id hashes, session records
keyed by the SHA-256 of the cookie); nothing here sees a password or a cookie value. The
throttle's slot check and take are one Lua step, so concurrent sign-ins on any number of
instances cannot overrun it.
"""

from __future__ import annotations

import secrets
from typing import Any

from ._redis_clients import RedisClients
from ._redis_codec import KeyNames
from ._stats import StoreStats, counts_failures

__all__ = ["RedisDashboardState"]


class RedisDashboardState:
    """The dashboard-state methods of :class:`~nowramp_auth.RedisKeyStore` (a mixin: the
    store provides the clients, the key names and the script runner)."""

    names: KeyNames
    stats: StoreStats
    _clients: RedisClients

    def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        raise NotImplementedError  # pragma: no cover - provided by the store

    def _dashboard_name(self, kind: str, item_id: str) -> str:
        return f"{self.names.ns}:dash:{kind}:{item_id}"

    @counts_failures("put_dashboard_item")
    def put_dashboard_item(self, kind: str, item_id: str, value: str, ttl: float | None) -> None:
        """Store ``value`` under ``(kind, item_id)``, for ``ttl`` seconds (``None``: kept)."""
        name, index = self._dashboard_name(kind, item_id), f"{self.names.ns}:dash:{kind}"
        px = max(1, int(ttl * 1000)) if ttl is not None else None

        def put(client: Any) -> None:
            if px is None:  # listed items: the index first (a stale entry is harmless)
                client.sadd(index, item_id)
            client.set(name, value, px=px)

        self._clients.write(put)

    @counts_failures("get_dashboard_item")
    def get_dashboard_item(self, kind: str, item_id: str) -> str | None:
        """The value under ``(kind, item_id)``, or ``None`` (absent or expired)."""
        name = self._dashboard_name(kind, item_id)
        value: str | None = self._clients.read(lambda client: client.get(name))
        return value

    @counts_failures("delete_dashboard_item")
    def delete_dashboard_item(self, kind: str, item_id: str) -> bool:
        """Remove ``(kind, item_id)``; whether it was there."""
        name, index = self._dashboard_name(kind, item_id), f"{self.names.ns}:dash:{kind}"

        def delete(client: Any) -> bool:
            removed = bool(client.delete(name))
            client.srem(index, item_id)
            return removed

        return bool(self._clients.write(delete))

    @counts_failures("dashboard_item_ids")
    def dashboard_item_ids(self, kind: str) -> list[str]:
        """The ids of the kept (TTL-less) items of ``kind``, sorted."""
        index = f"{self.names.ns}:dash:{kind}"
        ids = self._clients.read(lambda client: client.smembers(index))
        return sorted(ids)

    @counts_failures("take_attempt")
    def take_attempt(self, bucket: str, limit: int, window: float) -> str | None:
        """Take one of ``limit`` slots per ``window`` seconds of ``bucket``, in one atomic
        step: a ticket naming the slot, or ``None`` when all are taken."""
        ticket = secrets.token_hex(8)
        name = self._dashboard_name("attempts", bucket)
        taken = self._script("ATTEMPT", [name], [limit, max(1, int(window * 1000)), ticket])
        return ticket if int(taken) == 1 else None

    @counts_failures("return_attempt")
    def return_attempt(self, bucket: str, ticket: str) -> None:
        """Give back the slot ``ticket`` names (it no longer counts)."""
        name = self._dashboard_name("attempts", bucket)
        self._clients.write(lambda client: client.zrem(name, ticket))
