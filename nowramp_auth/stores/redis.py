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
  same Lua step that changes it. Each instance's listener drops the entry; pub/sub is
  at-most-once, so the cache is flushed at every (re)subscription and nothing is cached while
  the subscription is down.
* Rate limits use Redis' own clock (one time line for every instance); usage counters are
  written behind, at most once per ``usage_flush_interval`` per process.

Sync callers (WSGI, CLI) use ``redis.Redis`` / ``redis.cluster.RedisCluster``; async callers
(ASGI) use ``redis.asyncio`` clients, one per event loop, created lazily. The event loop never
blocks on network I/O.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import secrets
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry

from .._clock import from_epoch_us
from .._keys import make_hasher
from .._models import KeyRecord, RateLimit, RateLimitStatus, SessionRecord, StoredKey
from . import _redis_scripts as scripts
from ._errors import StoreUnavailable
from ._protocol import NOT_CACHED, UPDATABLE_FIELDS, Usage, rotation_refused
from ._redis_cache import LocalCache
from ._redis_codec import (
    KeyNames,
    decode_key,
    decode_session,
    encode_changes,
    encode_key,
    encode_session,
    to_us,
)
from ._usage import UsageLog

__all__ = ["RedisKeyStore"]

_log = logging.getLogger("nowramp_auth.redis")

DEFAULT_CACHE_TTL = 10.0
DEFAULT_CACHE_SIZE = 10_000
DEFAULT_SOCKET_TIMEOUT = 0.5
DEFAULT_CONNECT_TIMEOUT = 0.25
DEFAULT_USAGE_FLUSH_INTERVAL = 1.0


@contextlib.contextmanager
def _io() -> Iterator[None]:
    """Turn every way Redis can fail into :class:`StoreUnavailable` (fail closed)."""
    try:
        yield
    except (TimeoutError, RedisError, RedisClusterException, OSError) as exc:
        raise StoreUnavailable(f"Redis unavailable: {type(exc).__name__}") from exc


def _pairs(fields: Mapping[str, str]) -> list[str]:
    return [item for pair in fields.items() for item in pair]


def _as_dict(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _rate_status(result: list[Any], limit: RateLimit) -> RateLimitStatus:
    allowed, remaining, retry_ms, reset_ms = (int(x) for x in result)
    return RateLimitStatus(
        limit=limit.requests,
        remaining=remaining,
        reset_seconds=reset_ms / 1000,
        allowed=bool(allowed),
        retry_after_seconds=retry_ms / 1000,
    )


class RedisKeyStore:
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
        socket_timeout: seconds to wait for a Redis reply (default 0.5).
        connect_timeout: seconds to wait for a connection (default 0.25).
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
        usage_flush_interval: float = DEFAULT_USAGE_FLUSH_INTERVAL,
        invalidation: bool = True,
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("url must start with redis://, rediss:// or unix://")
        for name, value in (
            ("socket_timeout", socket_timeout),
            ("connect_timeout", connect_timeout),
            ("usage_flush_interval", usage_flush_interval),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
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
        self._options: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
        }
        self._flush_interval = usage_flush_interval
        self._invalidation = invalidation
        self._lock = threading.Lock()
        self._sync: Any = None
        self._sync_scripts: dict[str, Any] = {}
        self._async: dict[int, tuple[asyncio.AbstractEventLoop, Any, dict[str, Any]]] = {}
        self._closing = threading.Event()
        self.subscribed = threading.Event()
        """Set while the invalidation listener is subscribed (tests wait on it)."""
        self._listener: threading.Thread | None = None
        self._flusher: threading.Thread | None = None
        self._usage = UsageLog()
        self.count_request = self._usage.count
        """Count one request of a key at a time in epoch seconds (no lock, no I/O); a
        background thread writes the counts behind to Redis."""
        self.usage_cell = self._usage.cell
        self.fold_usage = self._usage.fold
        if invalidation:
            self.keys_cache.accepting = self.sessions_cache.accepting = False
        atexit.register(_close_at_exit, weakref.ref(self))
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _reset_after_fork(ref))

    def _after_fork(self) -> None:
        # Threads do not survive fork (e.g. gunicorn --preload): start fresh in the child.
        self._lock = threading.Lock()
        self._usage.reset()
        self._listener = None
        self._flusher = None
        self._async = {}
        self.subscribed = threading.Event()
        self.keys_cache.reset_after_fork()
        self.sessions_cache.reset_after_fork()
        self._set_subscribed(False)
        if not self._invalidation:
            self.keys_cache.accepting = self.sessions_cache.accepting = True

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

    # -- clients ------------------------------------------------------------------------------
    def _make_sync(self) -> Any:
        if self._cluster:
            return redis.cluster.RedisCluster.from_url(self._url, **self._options)
        retry = Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,))
        return redis.Redis.from_url(self._url, retry=retry, **self._options)

    def _client(self) -> Any:
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    with _io():
                        self._sync = self._make_sync()
        return self._sync

    def _script(self, name: str) -> Any:
        script = self._sync_scripts.get(name)
        if script is None:
            script = self._sync_scripts[name] = self._client().register_script(
                getattr(scripts, name)
            )
        return script

    def _async_state(self) -> tuple[Any, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        state = self._async.get(id(loop))
        if state is None or state[0] is not loop:
            for key, (other, _, _) in list(self._async.items()):
                if other.is_closed():
                    del self._async[key]
            client: Any
            if self._cluster:
                client = redis.asyncio.cluster.RedisCluster.from_url(self._url, **self._options)
            else:
                retry = redis.asyncio.retry.Retry(
                    NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)
                )
                client = redis.asyncio.Redis.from_url(self._url, retry=retry, **self._options)
            state = self._async[id(loop)] = (loop, client, {})
        return state[1], state[2]

    def _async_script(self, name: str) -> Any:
        client, cache = self._async_state()
        script = cache.get(name)
        if script is None:
            script = cache[name] = client.register_script(getattr(scripts, name))
        return script

    # -- request path -------------------------------------------------------------------------
    def peek(self, operation: str, args: tuple[Any, ...]) -> Any:
        """A cached answer for a request-path operation without any I/O, or ``NOT_CACHED``.

        Lets async callers skip the coroutine machinery on cache hits."""
        if operation == "get_key":
            self._start_listener()
            return self.keys_cache.peek(args[0], NOT_CACHED)
        if operation == "get_session":
            self._start_listener()
            return self.sessions_cache.peek(args[0], NOT_CACHED)
        return NOT_CACHED

    def get_key(self, key_id: str) -> StoredKey | None:
        """The stored key (cached), or ``None``. ``StoreUnavailable`` when Redis is down."""
        self._start_listener()
        return self.keys_cache.get(key_id, lambda: self._load_key(key_id))

    def _load_key(self, key_id: str) -> StoredKey | None:
        with _io():
            return decode_key(self._client().hgetall(self.names.record(key_id)))

    async def get_key_async(self, key_id: str) -> StoredKey | None:
        """Async twin of :meth:`get_key`."""
        self._start_listener()
        return await self.keys_cache.get_async(key_id, lambda: self._load_key_async(key_id))

    async def _load_key_async(self, key_id: str) -> StoredKey | None:
        client, _ = self._async_state()
        with _io():
            return decode_key(await client.hgetall(self.names.record(key_id)))

    def get_session(self, session_id: str) -> SessionRecord | None:
        """The session (cached), or ``None``."""
        self._start_listener()
        return self.sessions_cache.get(session_id, lambda: self._load_session(session_id))

    def _load_session(self, session_id: str) -> SessionRecord | None:
        with _io():
            return decode_session(self._client().hgetall(self.names.session(session_id)))

    async def get_session_async(self, session_id: str) -> SessionRecord | None:
        """Async twin of :meth:`get_session`."""
        self._start_listener()
        return await self.sessions_cache.get_async(
            session_id, lambda: self._load_session_async(session_id)
        )

    async def _load_session_async(self, session_id: str) -> SessionRecord | None:
        client, _ = self._async_state()
        with _io():
            return decode_session(await client.hgetall(self.names.session(session_id)))

    def _session_args(self, session: SessionRecord) -> list[str]:
        # The Redis TTL is the session's lifetime (plus a second of slack); expiry itself is
        # decided from the stored timestamp, on the injected clock.
        lifetime_ms = (session.expires_at - session.created_at) // timedelta(milliseconds=1)
        return [str(max(1, lifetime_ms) + 1000), *_pairs(encode_session(session))]

    def insert_session(self, session: SessionRecord) -> None:
        """Add a widget session; Redis drops it after its lifetime."""
        with _io():
            result = self._script("INSERT_SESSION")(
                keys=[self.names.session(session.id)], args=self._session_args(session)
            )
        if result != "ok":
            raise ValueError(f"session id {session.id} already exists")

    async def insert_session_async(self, session: SessionRecord) -> None:
        """Async twin of :meth:`insert_session`."""
        with _io():
            result = await self._async_script("INSERT_SESSION")(
                keys=[self.names.session(session.id)], args=self._session_args(session)
            )
        if result != "ok":
            raise ValueError(f"session id {session.id} already exists")

    def _rate_args(self, limit: RateLimit) -> list[Any]:
        return [limit.requests, limit.window_ms, secrets.token_hex(8)]

    def hit_rate_limit(self, key_id: str, limit: RateLimit, now: datetime) -> RateLimitStatus:
        """One atomic sliding-log step on Redis' clock (``now`` is not used)."""
        with _io():
            result = self._script("RATE_LIMIT")(
                keys=[self.names.rate_log(key_id)], args=self._rate_args(limit)
            )
        return _rate_status(result, limit)

    async def hit_rate_limit_async(
        self, key_id: str, limit: RateLimit, now: datetime
    ) -> RateLimitStatus:
        """Async twin of :meth:`hit_rate_limit`."""
        with _io():
            result = await self._async_script("RATE_LIMIT")(
                keys=[self.names.rate_log(key_id)], args=self._rate_args(limit)
            )
        return _rate_status(result, limit)

    # -- management ---------------------------------------------------------------------------
    def _index(self, key_id: str, project_id: str | None) -> None:
        # Indexes first: a stale index entry is harmless (records are the truth), a missing
        # one would hide a key from listings.
        pipe = self._client().pipeline(transaction=False)
        pipe.sadd(self.names.all_keys, key_id)
        if project_id is not None:
            pipe.sadd(self.names.project(project_id), key_id)
        pipe.execute()

    def insert_key(self, stored: StoredKey) -> None:
        """Add a new key; ``ValueError`` when the id exists."""
        record = stored.record
        with _io():
            self._index(record.id, record.project_id)
            result = self._script("INSERT")(
                keys=[self.names.record(record.id)],
                args=[self.names.channel, record.id, *_pairs(encode_key(stored))],
            )
        self.keys_cache.invalidate(record.id)
        if result != "ok":
            raise ValueError(f"key id {record.id} already exists")

    def _record_result(self, key_id: str, result: Any) -> KeyRecord:
        self.keys_cache.invalidate(key_id)
        if result == "missing":
            raise KeyError(key_id)
        stored = decode_key(_as_dict(result))
        if stored is None:  # pragma: no cover - the script returned the hash it just wrote
            raise KeyError(key_id)
        return stored.record

    def update_key(self, key_id: str, changes: Mapping[str, Any]) -> KeyRecord:
        """Set fields of a key in one atomic step; ``KeyError`` when unknown."""
        unknown = set(changes) - UPDATABLE_FIELDS
        if unknown:
            raise ValueError(f"fields cannot be updated: {', '.join(sorted(unknown))}")
        to_set, to_delete = encode_changes(dict(changes))
        args = [self.names.channel, key_id, len(to_set), *_pairs(to_set), *to_delete]
        with _io():
            result = self._script("UPDATE")(keys=[self.names.record(key_id)], args=args)
            if "rate_limit" in changes:
                self._client().delete(self.names.rate_log(key_id))
        return self._record_result(key_id, result)

    def revoke_key(self, key_id: str, at: datetime) -> KeyRecord:
        """Revoke a key in one atomic step (the first revocation time stays)."""
        with _io():
            result = self._script("REVOKE")(
                keys=[self.names.record(key_id)], args=[self.names.channel, key_id, to_us(at)]
            )
        return self._record_result(key_id, result)

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
        with _io():
            old = self._load_key(old_id)
            if old is None:
                raise KeyError(old_id)
            self._index(new_id, old.record.project_id)
            args = [
                self.names.channel,
                old_id,
                new_id,
                new_digest,
                new_hint,
                to_us(now),
                to_us(grace_end),
            ]
            result = self._script("ROTATE")(
                keys=[self.names.record(old_id), self.names.record(new_id)], args=args
            )
        self.keys_cache.invalidate(old_id)
        if result == "missing":
            raise KeyError(old_id)
        if result == "exists":
            raise ValueError(f"key id {new_id} already exists")
        if isinstance(result, str):  # 'revoked', 'expired' or 'rotated:<successor id>'
            reason, _, successor = result.partition(":")
            raise rotation_refused(old_id, reason, successor or None)
        old_stored, new_stored = decode_key(_as_dict(result[0])), decode_key(_as_dict(result[1]))
        if old_stored is None or new_stored is None:  # pragma: no cover - written just now
            raise KeyError(old_id)
        return old_stored.record, new_stored.record

    def list_keys(self, project_id: str | None = None) -> list[KeyRecord]:
        """Every key (of one project when given), oldest first."""
        index = self.names.all_keys if project_id is None else self.names.project(project_id)
        with _io():
            client = self._client()
            ids = sorted(client.smembers(index))
            pipe = client.pipeline(transaction=False)
            for key_id in ids:
                pipe.hgetall(self.names.record(key_id))
            rows = pipe.execute() if ids else []
        records = [s.record for row in rows if (s := decode_key(row)) is not None]
        if project_id is not None:
            records = [r for r in records if r.project_id == project_id]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    def revoke_session(self, session_id: str, at: datetime) -> SessionRecord | None:
        """Revoke a session in one atomic step; ``None`` when unknown."""
        with _io():
            result = self._script("REVOKE")(
                keys=[self.names.session(session_id)],
                args=[self.names.channel, session_id, to_us(at)],
            )
        self.sessions_cache.invalidate(session_id)
        if result == "missing":
            return None
        return decode_session(_as_dict(result))

    # -- usage (write behind) -------------------------------------------------------------------
    def record_usage(self, key_id: str, at: datetime) -> None:
        """Count one request in memory; a background thread writes counts to Redis."""
        self._start_listener()
        self.count_request(key_id, at.timestamp())

    def flush_usage(self) -> None:
        """Write buffered usage to Redis now (kept for a later try when Redis is down)."""
        batch = self._usage.take()
        if not batch:
            return
        try:
            with _io():
                pipe = self._client().pipeline(transaction=False)
                for key_id, (count, last) in batch.items():
                    name = self.names.usage(key_id)
                    pipe.hincrby(name, "count", int(count))
                    pipe.hset(name, "last", str(round(last * 1_000_000)))
                pipe.execute()
        except StoreUnavailable:
            self._usage.give_back(batch)

    def get_usage(self, key_ids: Iterable[str]) -> dict[str, Usage]:
        """Usage of the given keys: Redis' counts plus this process' unflushed ones."""
        ids = list(key_ids)
        if not ids:
            return {}
        with _io():
            pipe = self._client().pipeline(transaction=False)
            for key_id in ids:
                pipe.hmget(self.names.usage(key_id), "count", "last")
            rows = pipe.execute()
        pending = self._usage.totals(ids)
        result: dict[str, Usage] = {}
        for key_id, (count, last) in zip(ids, rows, strict=True):
            total = int(count or 0)
            last_us = int(last) if last else None
            if key_id in pending:
                total += pending[key_id][0]
                last_us = max(last_us or 0, round(pending[key_id][1] * 1_000_000))
            if total or last_us:
                result[key_id] = (total, from_epoch_us(last_us) if last_us else None)
        return result

    def _flush_loop(self) -> None:
        while not self._closing.wait(self._flush_interval):
            try:
                self.flush_usage()
            except Exception:  # pragma: no cover - never let the thread die
                _log.exception("usage flush failed")

    # -- invalidation -------------------------------------------------------------------------
    def _start_listener(self) -> None:
        # The background threads: invalidation listener and usage write-behind. Started by
        # the first request-path call (not at construction, so a forked child starts its own).
        if self._flusher is not None and (self._listener is not None or not self._invalidation):
            return
        with self._lock:
            if self._closing.is_set():
                return
            if self._listener is None and self._invalidation:
                self._listener = threading.Thread(
                    target=self._listen_loop, name="nowramp-invalidation", daemon=True
                )
                self._listener.start()
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_loop, name="nowramp-usage", daemon=True
                )
                self._flusher.start()

    def _pubsub_nodes(self) -> list[Any]:
        if not self._cluster:
            return [self._client()]
        nodes = self._client().get_nodes()
        return [redis.Redis(host=n.host, port=n.port, **self._options) for n in nodes]

    def _listen_loop(self) -> None:
        delay = 0.05
        attempt = 0
        while not self._closing.is_set():
            pubsub = None
            try:
                with _io():
                    nodes = self._pubsub_nodes()
                node = nodes[attempt % len(nodes)]
                pubsub = node.pubsub()
                pubsub.subscribe(self.names.channel)
                while not self._closing.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._on_message(message)
                        delay = 0.05
            except Exception as exc:
                _log.warning(
                    "invalidation channel down (%s); cache fills paused", type(exc).__name__
                )
            finally:
                self._set_subscribed(False)
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
            attempt += 1
            self._closing.wait(delay)
            delay = min(delay * 2, 1.0)

    def _on_message(self, message: Mapping[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            # Messages published while we were not subscribed are lost: start clean.
            self.keys_cache.clear()
            self.sessions_cache.clear()
            self._set_subscribed(True)
        elif kind == "message":
            target = str(message.get("data"))
            if target == "*":
                self.keys_cache.clear()
                self.sessions_cache.clear()
            elif target.startswith("sess_"):
                self.sessions_cache.invalidate(target)
            else:
                self.keys_cache.invalidate(target)

    def _set_subscribed(self, value: bool) -> None:
        self.keys_cache.accepting = self.sessions_cache.accepting = value
        if value:
            self.subscribed.set()
        else:
            self.subscribed.clear()

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        """Flush usage, stop the background threads and close the sync client."""
        if self._closing.is_set():
            return
        with contextlib.suppress(Exception):
            self.flush_usage()
        self._closing.set()
        for thread in (self._listener, self._flusher):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=2)
        if self._sync is not None:
            with contextlib.suppress(Exception):
                self._sync.close()

    async def aclose(self) -> None:
        """Close the async client of the running event loop."""
        state = self._async.pop(id(asyncio.get_running_loop()), None)
        if state is not None:
            with contextlib.suppress(Exception):
                await state[1].aclose()


def _reset_after_fork(ref: weakref.ref[RedisKeyStore]) -> None:
    store = ref()
    if store is not None:
        store._after_fork()


def _close_at_exit(ref: weakref.ref[RedisKeyStore]) -> None:
    store = ref()
    if store is not None:
        store.close()
