"""``RedisKeyStore``: keys in Redis or Redis Cluster, for many app instances sharing one truth.

Security model
--------------
* Redis holds digests (SHA-256, or HMAC-SHA256 with ``pepper``), never a plaintext key; key
  names hold public ids only. Plaintext never travels to Redis, so it cannot show up in
  ``SLOWLOG`` or ``MONITOR``.
* Fail closed: when Redis cannot be reached within the timeouts, lookups raise
  :class:`~nowramp_auth.stores.StoreUnavailable` and the request gets ``AUTH_UNAVAILABLE``
  (503), never a success and never "unknown key". The one exception is a fresh cached answer:
  a record read from Redis less than ``cache_ttl`` seconds ago still serves (so a Redis blip
  does not take hot keys down); revocations reach every instance through pub/sub within
  milliseconds, and within ``cache_ttl`` in any case.
* Invalidation: every mutation publishes the record id on ``<namespace>:invalidate`` in the
  same Lua step that changes it; each instance drops the entry (see ``_cache_sync``).

One store object serves sync callers (WSGI, CLI) and async ones (ASGI: one client per event
loop, never blocking it). This class holds the operations on key records; the rest lives
beside it: clients and failure policy (``_redis_clients``, ``_redis_errors``), scripts
(``_redis_scripts``, ``_redis_scripting``, ``_redis_pipeline``), cache and invalidation
(``_redis_cache``, ``_cache_sync``, ``_redis_invalidation``), the limiter (``redis_limiter``),
sessions, usage, dashboard state (``_redis_sessions``, ``_redis_usage``, ``_redis_dashboard``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from .._budgets import Limits, decode_limits, encode_limits
from .._keys import make_hasher
from .._models import KeyRecord, RateLimit, RateLimitStatus, SessionRecord, StoredKey
from ._cache_sync import CachedReads, CacheSync, close_at_exit_and_reset_after_fork
from ._protocol import UPDATABLE_FIELDS, grace_cap_refused, rotation_refused
from ._redis_cache import LocalCache
from ._redis_clients import DEFAULT_MAX_CONNECTIONS, DEFAULT_QUEUE_TIMEOUT, RedisClients
from ._redis_codec import (
    KeyNames,
    as_dict,
    decode_key,
    encode_changes,
    encode_key,
    flat_pairs,
    from_us,
    to_us,
)
from ._redis_dashboard import RedisDashboardState
from ._redis_invalidation import listener_factory
from ._redis_scripting import loop_pipeline, run_script
from ._redis_sessions import RedisSessions
from ._redis_usage import RedisUsage
from ._stats import StoreStats, counts_failures
from .redis_limiter import RedisRateLimiter

__all__ = ["RedisKeyStore"]

DEFAULT_CACHE_TTL = 10.0
DEFAULT_CACHE_SIZE = 10_000
DEFAULT_SOCKET_TIMEOUT = 0.5
DEFAULT_CONNECT_TIMEOUT = 0.25
DEFAULT_USAGE_FLUSH_INTERVAL = 1.0
# The store operation each script pipeline serves (its failures count under that name).
_OPERATIONS = {"INSERT_SESSION": "insert_session"}


class RedisKeyStore(CachedReads, RedisSessions, RedisUsage, RedisDashboardState):
    """Key store on Redis (single node) or Redis Cluster; serves sync and async callers.

    Parameters:
        url: ``redis://host:port/db`` (``rediss://`` for TLS); for a cluster, any node.
        cluster: use the Redis Cluster protocol.
        pepper: server-side secret; digests become HMAC-SHA256 keyed with it. Every instance
            (and the CLI) must use the same pepper.
        namespace: prefix of every Redis key (default ``"nowramp"``).
        cache_size: records kept in the local cache (default 10,000, plus as many negative
            answers).
        cache_ttl: seconds a cached answer may serve, 0 to 30 (default 10; 0 disables the
            cache).
        socket_timeout: seconds to wait for a Redis reply once a command is sent (default 0.5).
        connect_timeout: seconds to wait for a connection to be made (default 0.25).
        max_connections: connections per client (per node on a cluster; default 50). More
            concurrent calls than that wait for one instead of failing.
        queue_timeout: seconds a call may wait for a free connection (default 5); only then
            is the store reported unavailable.
        usage_flush_interval: seconds between usage write-backs (default 1).
        invalidation: listen for other instances' mutations (default ``True``).
    """

    def __init__(
        self,
        url: str,
        *,
        cluster: bool = False,
        pepper: bytes | str | None = None,
        namespace: str = "nowramp",
        cache_size: int = DEFAULT_CACHE_SIZE,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        queue_timeout: float = DEFAULT_QUEUE_TIMEOUT,
        usage_flush_interval: float = DEFAULT_USAGE_FLUSH_INTERVAL,
        invalidation: bool = True,
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("url must start with redis://, rediss:// or unix://")
        if not usage_flush_interval > 0:
            raise ValueError(f"usage_flush_interval must be positive, got {usage_flush_interval}")
        self._url = url
        self._cluster = cluster
        self._pepper = pepper.encode() if isinstance(pepper, str) else pepper
        self.hasher = make_hasher(self._pepper)
        """The hash of the bytes of a presented key; its ``hexdigest()`` is :meth:`digest`."""
        self.names = KeyNames(namespace)
        self.keys_cache: LocalCache[StoredKey] = LocalCache(cache_size, cache_ttl)
        self.current_key = self.keys_cache.current
        """The cached record of a key id while it is fresh, without I/O (the fast path's
        version check); ``None`` when the cache cannot vouch for one."""
        self.sessions_cache: LocalCache[SessionRecord] = LocalCache(cache_size, cache_ttl)
        self._clients = RedisClients.connect(
            url,
            cluster=cluster,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
            queue_timeout=queue_timeout,
        )
        self.stats = StoreStats()
        """Failures, script calls and invalidation traffic, for :meth:`store_counts`."""
        self.limiter = RedisRateLimiter.sharing(self._clients, self.names, self.stats)
        """The store's rate limiter (on its connections)."""
        self._setup_usage()
        self._sync = CacheSync(
            (self.keys_cache, self.sessions_cache),
            self.stats,
            make_listener=listener_factory(self._clients, self.names.channel)
            if invalidation
            else None,
            flush=self.flush_usage,
            flush_interval=usage_flush_interval,
        )
        close_at_exit_and_reset_after_fork(self)

    def _after_fork(self) -> None:
        # Threads and sockets do not survive fork (e.g. gunicorn --preload): start fresh.
        self.stats = StoreStats()  # the child counts its own work
        self.limiter.stats = self.stats
        self.limiter.after_fork()  # the child is another process
        self._clients.after_fork()
        self._usage.reset()
        self._sync.after_fork(self.stats)

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False, **options: Any) -> RedisKeyStore:
        """A store for ``url``; ``cluster=True`` for Redis Cluster. Options as for the class."""
        return cls(url, cluster=cluster, **options)

    def __repr__(self) -> str:
        parsed = urlparse(self._url)
        where = f"{parsed.scheme}://{parsed.hostname}:{parsed.port or 6379}"  # no password
        return f"RedisKeyStore({where!r}, cluster={self._cluster}, namespace={self.names.ns!r})"

    def digest(self, token: str) -> str:
        """Digest of a plaintext key or token."""
        return self.hasher(token.encode("ascii")).hexdigest()

    def _client(self) -> Any:
        """The sync redis-py client (tests and tools)."""
        return self._clients.client()

    # -- scripts ------------------------------------------------------------------------------
    def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script once (see :func:`._redis_scripting.run_script`)."""
        return run_script(self._clients, name, keys, args)

    async def _script_async(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script once from the running event loop, in a shared pipeline."""
        pipeline = loop_pipeline(self._clients, name, self.stats, _OPERATIONS[name])
        return await pipeline.call(keys, args)

    # -- rate limits (RedisRateLimiter, on this store's connections) --------------------------
    def hit_rate_limit(self, lineage: str, limit: Limits, now: datetime) -> RateLimitStatus:
        """One atomic step of the lineage's budget (see :class:`RedisRateLimiter`)."""
        return self.limiter.hit_rate_limit(lineage, limit, now)

    def hit_rate_limit_async(
        self, lineage: str, limit: Limits, now: datetime
    ) -> Awaitable[RateLimitStatus]:
        """Async twin of :meth:`hit_rate_limit` (the future of the status)."""
        return self.limiter.hit_rate_limit_async(lineage, limit, now)

    def rate_charger(
        self, lineage: str, limit: Limits
    ) -> Callable[[float], Awaitable[RateLimitStatus]]:
        """The lineage's async limiter call, built once per record version."""
        return self.limiter.rate_charger(lineage, limit)

    # -- request path -------------------------------------------------------------------------
    def _load_key(self, key_id: str) -> StoredKey | None:
        name = self.names.record(key_id)
        return decode_key(self._clients.read(lambda client: client.hgetall(name)))

    @counts_failures("get_key")
    async def get_key_async(self, key_id: str) -> StoredKey | None:
        """Async twin of :meth:`get_key`."""
        self._start_threads()
        return await self.keys_cache.get_async(key_id, lambda: self._load_key_async(key_id))

    async def _load_key_async(self, key_id: str) -> StoredKey | None:
        name = self.names.record(key_id)
        return decode_key(await self._clients.read_async(lambda client: client.hgetall(name)))

    # -- management ---------------------------------------------------------------------------
    @counts_failures("insert_key")
    def insert_key(self, stored: StoredKey) -> None:
        """Add a new key; ``ValueError`` when the id exists."""
        record = stored.record
        self._clients.write(_indexing(self.names, record.id, record.project_id))
        result = self._script(
            "INSERT",
            [self.names.record(record.id)],
            [self.names.channel, record.id, *flat_pairs(encode_key(stored))],
        )
        self.keys_cache.invalidate(record.id)
        if result != "ok":
            raise ValueError(f"key id {record.id} already exists")

    def _record_result(self, key_id: str, result: Any) -> KeyRecord:
        self.keys_cache.invalidate(key_id)
        if result == "missing":
            raise KeyError(key_id)
        stored = decode_key(as_dict(result))
        if stored is None:  # pragma: no cover - the script returned the hash it just wrote
            raise KeyError(key_id)
        return stored.record

    @counts_failures("update_key")
    def update_key(self, key_id: str, changes: Mapping[str, Any]) -> KeyRecord:
        """Set fields of a key in one atomic step; ``KeyError`` when unknown. A new rate
        limit applies to the lineage's existing budget (nothing is reset)."""
        unknown = set(changes) - UPDATABLE_FIELDS
        if unknown:
            raise ValueError(f"fields cannot be updated: {', '.join(sorted(unknown))}")
        to_set, to_delete = encode_changes(dict(changes))
        args = [self.names.channel, key_id, len(to_set), *flat_pairs(to_set), *to_delete]
        result = self._script("UPDATE", [self.names.record(key_id)], args)
        if isinstance(result, str) and result.startswith("capped:"):
            raise grace_cap_refused(key_id, from_us(result.removeprefix("capped:")))
        return self._record_result(key_id, result)

    @counts_failures("revoke_key")
    def revoke_key(self, key_id: str, at: datetime) -> KeyRecord:
        """Revoke a key in one atomic step (the first revocation time stays)."""
        result = self._script(
            "REVOKE", [self.names.record(key_id)], [self.names.channel, key_id, to_us(at)]
        )
        return self._record_result(key_id, result)

    @counts_failures("rotate_key")
    def rotate_key(
        self,
        old_id: str,
        *,
        new_id: str,
        new_digest: str,
        new_hint: str,
        now: datetime,
        grace_end: datetime,
    ) -> tuple[KeyRecord, KeyRecord]:
        """Create the successor and shorten the old key's life in one atomic Lua step."""
        old = self._load_key(old_id)
        if old is None:
            raise KeyError(old_id)
        self._clients.write(_indexing(self.names, new_id, old.record.project_id))
        args = [
            self.names.channel,
            old_id,
            new_id,
            new_digest,
            new_hint,
            to_us(now),
            to_us(grace_end),
        ]
        result = self._script(
            "ROTATE", [self.names.record(old_id), self.names.record(new_id)], args
        )
        self.keys_cache.invalidate(old_id)
        return _rotated(old_id, new_id, result)

    def set_project_limits(self, project_id: str, limits: tuple[RateLimit, ...]) -> None:
        """Keep ``limits`` as the project's budgets (empty: none)."""
        name = self.names.project_limits(project_id)
        if limits:
            self._clients.write(lambda client: client.set(name, encode_limits(limits)))
        else:
            self._clients.write(lambda client: client.delete(name))

    def set_credits(self, record: KeyRecord, remaining: int, at: datetime) -> None:
        """Start the credits of ``record``'s lineage (see :class:`RedisRateLimiter`)."""
        self.limiter.set_credits(record, remaining, at)

    def add_credits(self, record: KeyRecord, count: int, at: datetime) -> int:
        """Add ``count`` credits (see :class:`RedisRateLimiter`); the count left."""
        return self.limiter.add_credits(record, count, at)

    def get_credits(self, record: KeyRecord, at: datetime) -> int | None:
        """The credits ``record``'s lineage has left at ``at`` (due refills counted)."""
        return self.limiter.get_credits(record, at)

    def peek_rate_limits(self, lineage: str, limits: Limits, now: datetime) -> list[int]:
        """What each counter of ``limits`` holds now (see :class:`RedisRateLimiter`)."""
        return self.limiter.peek_rate_limits(lineage, limits, now)

    def get_project_limits(self, project_id: str) -> tuple[RateLimit, ...]:
        """The project's budgets."""
        name = self.names.project_limits(project_id)
        return decode_limits(self._clients.read(lambda client: client.get(name)))

    @counts_failures("list_keys")
    def list_keys(self, project_id: str | None = None) -> list[KeyRecord]:
        """Every key (of one project when given), oldest first."""
        index = self.names.all_keys if project_id is None else self.names.project(project_id)

        def load(client: Any) -> list[dict[str, str]]:
            ids = sorted(client.smembers(index))
            if not ids:
                return []
            pipe = client.pipeline(transaction=False)
            for key_id in ids:
                pipe.hgetall(self.names.record(key_id))
            rows: list[dict[str, str]] = pipe.execute()
            return rows

        rows = self._clients.read(load)
        records = [s.record for row in rows if (s := decode_key(row)) is not None]
        if project_id is not None:
            records = [r for r in records if r.project_id == project_id]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        """Flush usage, stop the background threads and close the sync client."""
        if self._sync.closing.is_set():
            return
        with contextlib.suppress(Exception):
            self.flush_usage()
        self._sync.stop()
        self._clients.close()

    async def aclose(self) -> None:
        """Close the async client of the running event loop."""
        await self._clients.aclose()


def _indexing(names: KeyNames, key_id: str, project_id: str | None) -> Callable[[Any], None]:
    # Indexes are written before records: a stale index entry is harmless (records are the
    # truth), a missing one would hide a key from listings.
    def add(client: Any) -> None:
        pipe = client.pipeline(transaction=False)
        pipe.sadd(names.all_keys, key_id)
        if project_id is not None:
            pipe.sadd(names.project(project_id), key_id)
        pipe.execute()

    return add


def _rotated(old_id: str, new_id: str, result: Any) -> tuple[KeyRecord, KeyRecord]:
    # The ROTATE script's answer: both records, or the refusal it names.
    if result == "missing":
        raise KeyError(old_id)
    if result == "exists":
        raise ValueError(f"key id {new_id} already exists")
    if isinstance(result, str):  # 'revoked', 'expired' or 'rotated:<successor id>'
        reason, _, successor = result.partition(":")
        raise rotation_refused(old_id, reason, successor or None)
    old_stored, new_stored = decode_key(as_dict(result[0])), decode_key(as_dict(result[1]))
    if old_stored is None or new_stored is None:  # pragma: no cover - written just now
        raise KeyError(old_id)
    return old_stored.record, new_stored.record
