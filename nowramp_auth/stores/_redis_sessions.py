"""Widget sessions in Redis: cached reads, an insert that expires with the session, and an
atomic revocation that invalidates every instance's cache.

Security model: Redis holds the session's digest, never its token; the session's lifetime is
decided from its stored timestamps on the injected clock (Redis' TTL only cleans up).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .._models import SessionRecord
from ._redis_cache import LocalCache
from ._redis_clients import RedisClients
from ._redis_codec import KeyNames, as_dict, decode_session, encode_session, flat_pairs, to_us
from ._stats import StoreStats, counts_failures

__all__ = ["RedisSessions"]


class RedisSessions:
    """The widget-session methods of :class:`~nowramp_auth.RedisKeyStore` (a mixin)."""

    names: KeyNames
    stats: StoreStats
    sessions_cache: LocalCache[SessionRecord]
    _clients: RedisClients

    def _start_threads(self) -> None:
        raise NotImplementedError  # pragma: no cover - provided by the store

    def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        raise NotImplementedError  # pragma: no cover - provided by the store

    async def _script_async(self, name: str, keys: list[str], args: list[Any]) -> Any:
        raise NotImplementedError  # pragma: no cover - provided by the store

    @counts_failures("get_session")
    def get_session(self, session_id: str) -> SessionRecord | None:
        """The session (cached), or ``None``."""
        self._start_threads()
        return self.sessions_cache.get(session_id, lambda: self._load_session(session_id))

    def _load_session(self, session_id: str) -> SessionRecord | None:
        name = self.names.session(session_id)
        return decode_session(self._clients.read(lambda client: client.hgetall(name)))

    @counts_failures("get_session")
    async def get_session_async(self, session_id: str) -> SessionRecord | None:
        """Async twin of :meth:`get_session`."""
        self._start_threads()
        return await self.sessions_cache.get_async(
            session_id, lambda: self._load_session_async(session_id)
        )

    async def _load_session_async(self, session_id: str) -> SessionRecord | None:
        name = self.names.session(session_id)
        return decode_session(await self._clients.read_async(lambda client: client.hgetall(name)))

    def _session_args(self, session: SessionRecord) -> list[str]:
        # The Redis TTL is the session's lifetime (plus a second of slack); expiry itself is
        # decided from the stored timestamp, on the injected clock.
        lifetime_ms = (session.expires_at - session.created_at) // timedelta(milliseconds=1)
        return [str(max(1, lifetime_ms) + 1000), *flat_pairs(encode_session(session))]

    @counts_failures("insert_session")
    def insert_session(self, session: SessionRecord) -> None:
        """Add a widget session; Redis drops it after its lifetime."""
        keys = [self.names.session(session.id)]
        result = self._script("INSERT_SESSION", keys, self._session_args(session))
        if result != "ok":
            raise ValueError(f"session id {session.id} already exists")

    async def insert_session_async(self, session: SessionRecord) -> None:
        """Async twin of :meth:`insert_session`."""
        keys = [self.names.session(session.id)]
        result = await self._script_async("INSERT_SESSION", keys, self._session_args(session))
        if result != "ok":
            raise ValueError(f"session id {session.id} already exists")

    @counts_failures("revoke_session")
    def revoke_session(self, session_id: str, at: datetime) -> SessionRecord | None:
        """Revoke a session in one atomic step; ``None`` when unknown."""
        result = self._script(
            "REVOKE",
            [self.names.session(session_id)],
            [self.names.channel, session_id, to_us(at)],
        )
        self.sessions_cache.invalidate(session_id)
        if result == "missing":
            return None
        return decode_session(as_dict(result))
